"""The one transport seam: plain request and response values and the Transport protocol.

Everything above this seam (the token manager, the client) speaks only these types;
``_transport.Urllib3Transport`` is the production implementation and
``textstack_sdk.testing.MockTransport`` the in-memory one.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

__all__ = ["Request", "Response", "Transport", "json_body", "parse_retry_after"]

_RETRY_AFTER_SECONDS = re.compile(r"\d+(?:\.\d+)?")
# parse_retry_after never returns more than this: "wait effectively forever", still finite.
_RETRY_AFTER_CEILING = 1e9


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


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Reads a ``Retry-After`` header: delay-seconds or an HTTP-date.

    Args:
        value: The header value, or None when absent.
        now: The current wall-clock time (epoch seconds), for HTTP-dates.

    Returns:
        Seconds to wait (at most 1e9; callers cap it by their own bound), 0.0 for a date
        in the past, or None when absent, malformed or negative.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _RETRY_AFTER_SECONDS.fullmatch(text):
        return min(float(text), _RETRY_AFTER_CEILING)
    if text[0] in "+-" or text[0].isdigit():
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
        target = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if not math.isfinite(target):
        return None
    return min(max(target - now, 0.0), _RETRY_AFTER_CEILING)
