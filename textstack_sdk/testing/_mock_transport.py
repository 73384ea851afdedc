"""An in-memory transport: a function answers each request. For unit tests."""

from __future__ import annotations

import threading
from typing import Callable

from .._http import Request, Response

__all__ = ["MockTransport"]


class MockTransport:
    """Calls ``handler(request)`` for each request and records it. Thread-safe.

    The handler may return a Response or raise a TransportError to simulate the network.
    """

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self.closed = False

    def handle_request(self, request: Request) -> Response:
        with self._lock:
            self._requests.append(request)
        return self._handler(request)

    @property
    def requests(self) -> list[Request]:
        """A copy of every request handled so far, in order."""
        with self._lock:
            return list(self._requests)

    def close(self) -> None:
        self.closed = True
