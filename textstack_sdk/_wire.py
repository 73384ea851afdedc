"""Request builders and response classifiers for the auth endpoints. Pure: no I/O.

Every classifier turns a ``Response`` into one outcome value; none of them raises for
anything a server can send. Outcomes never hold the raw body (it may contain secrets).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ._errors import ProtocolError
from ._http import Request, Response, json_body, parse_retry_after
from ._jwt import decode_exp, is_bearer_token
from ._models import DeviceAuthorization, TokenSet
from ._text import for_terminal

__all__ = [
    "DEVICE_GRANT",
    "Granted",
    "PollError",
    "RefreshDead",
    "Refreshed",
    "Transient",
    "build_device_code_request",
    "build_device_token_request",
    "build_refresh_request",
    "classify_device_token",
    "classify_refresh",
    "parse_device_authorization",
    "parse_json",
    "retry_after_seconds",
]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ROUTE_DEVICE_CODE = "POST /auth/device/code"
ROUTE_DEVICE_TOKEN = "POST /auth/device/token"
ROUTE_REFRESH = "POST /auth/refresh-mobile"

DEFAULT_INTERVAL = 5.0
MAX_INTERVAL = 300.0
MAX_CODE_LIFETIME = 1800.0
_MAX_FIELD = 2048


@dataclass(frozen=True)
class Granted:
    """The server issued tokens."""

    tokens: TokenSet


@dataclass(frozen=True)
class PollError:
    """An RFC 8628 error code (``authorization_pending``, ``slow_down``, ``access_denied``...)."""

    error: str


@dataclass(frozen=True)
class Transient:
    """Trouble that may pass: network, 5xx, 429, a proxy's HTML page.

    Attributes:
        reason: A short secret-free description for logs and ``Failed`` messages.
        retry_after: Seconds the server asked us to wait, when it said so.
    """

    reason: str
    retry_after: Optional[float] = None


@dataclass(frozen=True)
class Refreshed:
    """The refresh succeeded; ``tokens`` holds the new generation."""

    tokens: TokenSet


@dataclass(frozen=True)
class RefreshDead:
    """The server refused the refresh token: it is unknown, used or revoked."""

    reason: str = field(default="the refresh token was refused")


PollOutcome = Union[Granted, PollError, Transient]
RefreshOutcome = Union[Refreshed, RefreshDead, Transient]


def _headers(
    site_host: str, extra: tuple[tuple[str, str], ...] = ()
) -> tuple[tuple[str, str], ...]:
    return (("Host", site_host), ("Accept", "application/json"), *extra)


_JSON = (("Content-Type", "application/json"),)


def build_device_code_request(api_url: str, site_host: str, timeout: float) -> Request:
    """``POST /auth/device/code`` with no body."""
    return Request(
        "POST",
        api_url + "/auth/device/code",
        headers=_headers(site_host, (("Content-Length", "0"),)),
        body=b"",
        route=ROUTE_DEVICE_CODE,
        timeout=timeout,
    )


def build_device_token_request(
    api_url: str, site_host: str, device_code: str, timeout: float
) -> Request:
    """``POST /auth/device/token`` for one poll (snake_case body, RFC 8628 §3.4)."""
    body = json_body({"grant_type": DEVICE_GRANT, "device_code": device_code})
    return Request(
        "POST",
        api_url + "/auth/device/token",
        headers=_headers(site_host, _JSON),
        body=body,
        route=ROUTE_DEVICE_TOKEN,
        timeout=timeout,
    )


def build_refresh_request(
    api_url: str, site_host: str, refresh_token: str, timeout: float
) -> Request:
    """``POST /auth/refresh-mobile`` (camelCase body)."""
    return Request(
        "POST",
        api_url + "/auth/refresh-mobile",
        headers=_headers(site_host, _JSON),
        body=json_body({"refreshToken": refresh_token}),
        route=ROUTE_REFRESH,
        timeout=timeout,
    )


def parse_json(response: Response, route: str) -> Any:
    """Decodes a JSON body, or raises ProtocolError with a sanitised snippet.

    Raises:
        ProtocolError: The body is not UTF-8 JSON (an HTML error page, a truncated body,
            nesting deep enough to exhaust the parser).
    """
    try:
        return json.loads(response.body.decode("utf-8"))
    except (ValueError, RecursionError):
        # No excerpt of the body: an auth answer in another format (form-encoded) may
        # carry a device code or a token. Raised outside the handler so no chained
        # exception holds the body either.
        pass
    content_type = for_terminal(response.headers.get("content-type", "none"), 60)
    raise ProtocolError(
        response.status,
        f"expected a JSON body, got {len(response.body)} bytes of {content_type}",
        route=route,
    )


def retry_after_seconds(response: Response, now: float) -> Optional[float]:
    """The ``Retry-After`` of a response in seconds, or None when absent or malformed."""
    return parse_retry_after(response.headers.get("retry-after"), now)


def _text_field(data: Mapping[str, Any], name: str, route: str, status: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(status, f"the answer has no usable '{name}'", route=route)
    if len(value) > _MAX_FIELD:
        raise ProtocolError(status, f"the answer's '{name}' is too long", route=route)
    return value


def _seconds(value: object) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _interval(value: object) -> Optional[float]:
    # 0 means "no wait asked for": the RFC 8628 floor of 1 s, not the 5 s default of an
    # absent interval.
    if value == 0 and not isinstance(value, bool):
        return 1.0
    return _seconds(value)


def _is_web_url(value: str) -> bool:
    lowered = value.lower()
    return (lowered.startswith("https://") or lowered.startswith("http://")) and not any(
        ch.isspace() or ord(ch) < 32 for ch in value
    )


def parse_device_authorization(response: Response) -> DeviceAuthorization:
    """Reads a 200 answer of ``POST /auth/device/code``.

    Raises:
        ProtocolError: Not JSON, not an object, or a required field missing or unusable.
    """
    route = ROUTE_DEVICE_CODE
    data = parse_json(response, route)
    if not isinstance(data, dict):
        raise ProtocolError(response.status, "the answer is not a JSON object", route=route)
    device_code = _text_field(data, "device_code", route, response.status)
    if any(ord(ch) < 33 or ord(ch) > 126 for ch in device_code):
        raise ProtocolError(response.status, "the answer's 'device_code' is malformed", route=route)
    user_code = _text_field(data, "user_code", route, response.status)
    uri = _text_field(data, "verification_uri", route, response.status)
    if not _is_web_url(uri):
        raise ProtocolError(response.status, "'verification_uri' is not a web URL", route=route)
    complete = data.get("verification_uri_complete")
    if not (isinstance(complete, str) and len(complete) <= _MAX_FIELD and _is_web_url(complete)):
        complete = None
    expires_in = _seconds(data.get("expires_in"))
    if expires_in is None:
        raise ProtocolError(response.status, "the answer has no usable 'expires_in'", route=route)
    interval = _interval(data.get("interval"))
    return DeviceAuthorization(
        device_code=device_code,
        user_code=user_code,
        verification_uri=uri,
        verification_uri_complete=complete,
        expires_in=min(expires_in, MAX_CODE_LIFETIME),
        interval=DEFAULT_INTERVAL if interval is None else min(interval, MAX_INTERVAL),
    )


def _transient_for(response: Response, now: float, what: str) -> Transient:
    retry_after = retry_after_seconds(response, now) if response.status in (429, 503) else None
    return Transient(f"{what} answered HTTP {response.status}", retry_after)


def classify_device_token(response: Response, now: float) -> PollOutcome:
    """Turns one poll answer into Granted, PollError or Transient. Never raises."""
    status = response.status
    if status == 200:
        try:
            data = parse_json(response, ROUTE_DEVICE_TOKEN)
        except ProtocolError:
            return PollError("invalid_token_response")
        tokens = _tokens_from(data, "access_token", "refresh_token", None)
        if tokens is None or not _is_bearer_type(data):
            # The device code is single-use; a malformed grant cannot be polled again.
            return PollError("invalid_token_response")
        return Granted(tokens)
    if status == 400:
        try:
            data = parse_json(response, ROUTE_DEVICE_TOKEN)
        except ProtocolError:
            return Transient("the token endpoint answered HTTP 400 without JSON")
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, str) and error.strip():
            return PollError(_error_code(error))
        return Transient("the token endpoint answered HTTP 400 without an error code")
    if status in (408, 429) or status >= 500:
        return _transient_for(response, now, "the token endpoint")
    return PollError(f"http_{status}")


def classify_refresh(response: Response, previous: TokenSet, now: float) -> RefreshOutcome:
    """Turns a refresh answer into Refreshed, RefreshDead or Transient. Never raises.

    Args:
        response: The answer of ``POST /auth/refresh-mobile``.
        previous: The token set whose refresh token was sent; its refresh token is kept
            when the answer does not carry a new one.
        now: Wall-clock seconds, for Retry-After dates.
    """
    status = response.status
    if status == 200:
        try:
            data = parse_json(response, ROUTE_REFRESH)
        except ProtocolError:
            return Transient("the refresh endpoint answered HTTP 200 without JSON")
        tokens = _tokens_from(data, "accessToken", "refreshToken", previous.refresh_token)
        if tokens is None:
            return Transient("the refresh endpoint answered without a usable accessToken")
        return Refreshed(tokens)
    if status == 401:
        return RefreshDead()
    if status == 400:
        try:
            data = parse_json(response, ROUTE_REFRESH)
        except ProtocolError:
            data = None
        if isinstance(data, dict) and data.get("error") == "invalid_grant":
            return RefreshDead()
    return _transient_for(response, now, "the refresh endpoint")


def _is_bearer_type(data: Mapping[str, Any]) -> bool:
    token_type = data.get("token_type")
    return isinstance(token_type, str) and token_type.strip().lower() == "bearer"


def _tokens_from(
    data: object, access_key: str, refresh_key: str, fallback_refresh: Optional[str]
) -> Optional[TokenSet]:
    if not isinstance(data, dict):
        return None
    access = data.get(access_key)
    if not is_bearer_token(access):
        return None
    assert isinstance(access, str)
    refresh = data.get(refresh_key)
    if refresh is None or refresh == "":
        refresh = fallback_refresh
    elif not is_bearer_token(refresh):
        return None
    assert refresh is None or isinstance(refresh, str)
    return TokenSet(access_token=access, refresh_token=refresh, access_exp=decode_exp(access))


def _error_code(error: str) -> str:
    # Error codes are shown to people; keep them short and printable.
    cleaned = "".join(ch for ch in error.strip()[:64] if 32 < ord(ch) < 127)
    return cleaned or "unknown_error"
