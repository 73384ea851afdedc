"""The three auth calls over the transport, every failure turned into an outcome value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

from . import _wire as wire
from ._errors import ProtocolError, TransportError
from ._http import Request, Response, Transport
from ._models import DeviceAuthorization, TokenSet

__all__ = ["AuthEndpoints", "StartFailure"]


@dataclass(frozen=True)
class StartFailure:
    """Why a device code could not be obtained; secret-free."""

    reason: str
    retryable: bool
    retry_after: Optional[float] = None


class AuthEndpoints:
    """Device code, device token and refresh calls. Thread-safe (stateless over a transport).

    Nothing here raises for what the network or the server does: each call returns the
    classified outcome of ``_wire``, so the token manager deals in values only.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        api_url: str,
        site_host: str,
        timeout: float,
        wall_clock: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._api_url = api_url
        self._site_host = site_host
        self._timeout = timeout
        self._time = wall_clock

    def _send(self, request: Request) -> Union[Response, wire.Transient]:
        try:
            return self._transport.handle_request(request)
        except TransportError as exc:
            return wire.Transient(f"network: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - a custom transport broke its contract
            return wire.Transient(f"transport failure ({type(exc).__name__})")

    def device_code(self) -> Union[DeviceAuthorization, StartFailure]:
        """``POST /auth/device/code``: a new device authorization, or why not."""
        sent = self._send(
            wire.build_device_code_request(self._api_url, self._site_host, self._timeout)
        )
        if isinstance(sent, wire.Transient):
            return StartFailure(sent.reason, retryable=True)
        if sent.status != 200:
            retryable = sent.status == 429 or sent.status >= 500
            wait = wire.retry_after_seconds(sent, self._time()) if retryable else None
            return StartFailure(f"the server answered HTTP {sent.status}", retryable, wait)
        try:
            return wire.parse_device_authorization(sent)
        except ProtocolError as exc:
            return StartFailure(exc.message, retryable=True)

    def poll(self, device_code: str) -> wire.PollOutcome:
        """``POST /auth/device/token``: one poll of a pending device authorization."""
        sent = self._send(
            wire.build_device_token_request(
                self._api_url, self._site_host, device_code, self._timeout
            )
        )
        if isinstance(sent, wire.Transient):
            return sent
        return wire.classify_device_token(sent, self._time())

    def refresh(self, tokens: TokenSet, *, timeout: Optional[float] = None) -> wire.RefreshOutcome:
        """``POST /auth/refresh-mobile`` with ``tokens.refresh_token`` (rotates it).

        ``timeout`` overrides the whole request's deadline (the fleet cuts it to its lease).
        """
        assert tokens.refresh_token is not None
        sent = self._send(
            wire.build_refresh_request(
                self._api_url,
                self._site_host,
                tokens.refresh_token,
                self._timeout if timeout is None else timeout,
            )
        )
        if isinstance(sent, wire.Transient):
            return sent
        return wire.classify_refresh(sent, tokens, self._time())
