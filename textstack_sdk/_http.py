"""The one transport seam: plain request and response values and the Transport protocol.

Everything above this seam (the token manager, the client) speaks only these types;
``_transport.Urllib3Transport`` is the production implementation and
``textstack_sdk.testing.MockTransport`` the in-memory one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

__all__ = ["Request", "Response", "Transport", "json_body"]


@dataclass(frozen=True)
class Request:
    """One HTTP request. Immutable. ``repr`` never shows headers or the body.

    Attributes:
        method: ``GET``, ``POST``, ``PUT``...
        url: The absolute URL (base URL path prefix already joined).
        headers: Header pairs to send, in order; ``Host`` included.
        body: The encoded body, or None.
        route: A template naming the call for errors and logs, e.g. ``GET /books/{slug}``.
        retry_safe: True when the request may be sent again after a connect error or a
            502/503/504 (idempotent reads). Writes and auth POSTs are never retried.
        timeout: The overall deadline for this request in seconds (None: transport default).
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    body: Optional[bytes] = field(default=None, repr=False)
    route: str = ""
    retry_safe: bool = False
    timeout: Optional[float] = None

    def header(self, name: str) -> Optional[str]:
        """Returns the first header with this name (case-insensitive), or None."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.route or '<unnamed route>'})"


@dataclass(frozen=True)
class Response:
    """One complete HTTP response. Immutable.

    Attributes:
        status: The status code.
        headers: Header names lower-cased; the last value wins.
        body: The whole body, already capped by the transport.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)

    def __repr__(self) -> str:
        return f"Response(status={self.status}, {len(self.body)} bytes)"


class Transport(Protocol):
    """Sends requests. Implementations must be thread-safe.

    ``handle_request`` returns every status (including 4xx/5xx and 3xx it chose not to
    follow) as a Response, and raises only ``TransportError`` (network failure,
    deadline, oversize body) or ``ConfigurationError`` (a URL it refuses to use).
    """

    def handle_request(self, request: Request) -> Response: ...

    def close(self) -> None: ...


def json_body(payload: Mapping[str, Any]) -> bytes:
    """Encodes a JSON request body compactly (UTF-8)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
