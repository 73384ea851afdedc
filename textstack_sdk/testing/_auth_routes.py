"""The fake server's ``/auth`` routes, the bearer check and the ``/device`` page."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Union
from urllib.parse import parse_qsl

from ._auth_state import AuthState
from ._device_page import SECURITY_HEADERS, form_page, result_page
from ._reply import Call, Problem, Reply, json_reply

__all__ = ["DEVICE_GRANT", "AuthRoutes"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
_BEARER_CHALLENGE = (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
_HTML = "text/html; charset=utf-8"


def _seconds(value: float) -> Union[int, float]:
    return int(value) if float(value).is_integer() else value


class AuthRoutes:
    """Handlers for the device flow and refresh. Not thread-safe: called under the server's lock.

    Args:
        auth: The token and flow state.
        user: Returns the user object sent in token responses.
        base_url: Returns the site root (``verification_uri`` is built from it).
        on_new_flow: Called when a device code is issued (wakes ``wait_for_user_code``).
        monotonic: The monotonic clock that paces polls.
        site_host: The site's host name, shown on the approval page.
    """

    def __init__(
        self,
        *,
        auth: AuthState,
        user: Callable[[], dict[str, Any]],
        base_url: Callable[[], str],
        on_new_flow: Callable[[], None],
        monotonic: Callable[[], float],
        site_host: str,
    ) -> None:
        self._auth = auth
        self._user = user
        self._base_url = base_url
        self._on_new_flow = on_new_flow
        self._monotonic = monotonic
        self.site_host = site_host
        self.include_interval = True
        self.auto_approve = False
        self.approval_requires_auth = False

    def bearer(self, headers: Mapping[str, str], now: float) -> str:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        sub = (
            self._auth.verify_access(token.strip(), now)
            if scheme.lower() == "bearer" and token.strip()
            else None
        )
        if sub is None or sub != self._auth.user_id:
            raise Problem(401, "invalid_token", headers=_BEARER_CHALLENGE, bare=True)
        return sub

    def device_code(self, call: Call, now: float) -> Reply:
        device_code, flow = self._auth.start_flow(now)
        if self.auto_approve:
            flow.state = "approved"
        self._on_new_flow()
        base = self._base_url()
        payload: dict[str, Any] = {
            "device_code": device_code,
            "user_code": flow.user_code,
            "verification_uri": f"{base}/device",
            "verification_uri_complete": f"{base}/device?code={flow.user_code}",
            "expires_in": _seconds(self._auth.device_code_lifetime),
        }
        if self.include_interval:
            payload["interval"] = _seconds(flow.interval)
        return json_reply(payload, headers=_NO_STORE)

    def device_token(self, call: Call, now: float) -> Reply:
        body = call.body
        if not isinstance(body, dict):
            raise Problem(400, "invalid_request", headers=_NO_STORE)
        if body.get("grant_type") != DEVICE_GRANT:
            error = (
                "invalid_request" if body.get("grant_type") is None else "unsupported_grant_type"
            )
            raise Problem(400, error, headers=_NO_STORE)
        device_code = body.get("device_code")
        if not isinstance(device_code, str) or not device_code:
            raise Problem(400, "invalid_request", headers=_NO_STORE)
        outcome = self._auth.poll(device_code, now, self._monotonic())
        if outcome.error is not None:
            raise Problem(400, outcome.error, headers=_NO_STORE)
        return json_reply(
            {
                "access_token": outcome.access_token,
                "refresh_token": outcome.refresh_token,
                "token_type": "Bearer",
                "user": self._user(),
            },
            headers=_NO_STORE,
        )

    def refresh(self, call: Call, now: float) -> Reply:
        body = call.body
        token = body.get("refreshToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise Problem(400, "invalid_request", "'refreshToken' is required.", headers=_NO_STORE)
        outcome = self._auth.refresh(token, now)
        if outcome.error is not None:
            raise Problem(401, outcome.error, headers=_NO_STORE)
        payload: dict[str, Any] = {
            "user": self._user(),
            "accessToken": outcome.access_token,
        }
        mode = self._auth.refresh_token_mode
        if outcome.refresh_token is not None:
            payload["refreshToken"] = outcome.refresh_token
        elif mode != "missing":
            payload["refreshToken"] = None if mode == "null" else ""
        return json_reply(payload, headers=_NO_STORE)

    def _decide(self, call: Call, now: float, *, approve: bool) -> Reply:
        if self.approval_requires_auth:
            self.bearer(call.headers, now)
        code = call.body.get("user_code") if isinstance(call.body, dict) else None
        error = (
            self._auth.decide(code, approve, now) if isinstance(code, str) else "invalid_user_code"
        )
        if error is not None:
            raise Problem(400, error)
        return json_reply({"status": "ok"})

    def approve(self, call: Call, now: float) -> Reply:
        return self._decide(call, now, approve=True)

    def deny(self, call: Call, now: float) -> Reply:
        return self._decide(call, now, approve=False)

    def device_page(self, method: str, query: Mapping[str, str], body: bytes, now: float) -> Reply:
        """The HTML approval page at the site root (no Host check: browsers send host:port)."""
        if method == "GET":
            page = form_page(query.get("code", "")[:64], self.site_host)
            return Reply(200, page, _HTML, SECURITY_HEADERS)
        if method != "POST":
            return Reply(405, b"", None, (("Allow", "GET, POST"),))
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        code, action = form.get("user_code", "")[:64], form.get("action", "")
        if action not in ("approve", "deny"):
            outcome: Optional[str] = "invalid_action"
        else:
            outcome = self._auth.decide(code, action == "approve", now)
        status = 400 if outcome else 200
        return Reply(
            status, result_page(outcome or action, code, self.site_host), _HTML, SECURITY_HEADERS
        )

    def __repr__(self) -> str:
        return "AuthRoutes()"
