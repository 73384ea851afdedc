"""The socket side of the fake server: a threading HTTP/1.1 server that tracks its
connections so that ``stop()`` ends them promptly, and a handler that hands every
request to its owner."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

__all__ = ["BodyError", "HttpServer", "RequestSink", "read_body"]

MAX_REQUEST_BODY = 1024 * 1024
_IDLE_TIMEOUT = 30.0  # an idle keep-alive connection is closed after this long


class RequestSink(Protocol):
    """Whoever answers the requests (the FakeTextStackServer)."""

    def serve(self, handler: BaseHTTPRequestHandler) -> None: ...


class BodyError(Exception):
    """A request body that cannot be read: carries the status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Reads a Content-Length or chunked body, at most MAX_REQUEST_BODY bytes.

    Raises:
        BodyError: Malformed framing (400) or a body too large (413).
    """
    if handler.headers.get("Transfer-Encoding", "").strip().lower() == "chunked":
        return _read_chunked(handler)
    raw = handler.headers.get("Content-Length")
    if raw is None:
        return b""
    try:
        length = int(raw.strip())
    except ValueError:
        raise BodyError(400, "Content-Length is not a number.") from None
    if length < 0:
        raise BodyError(400, "Content-Length is negative.")
    if length > MAX_REQUEST_BODY:
        raise BodyError(413, "The request body is too large.")
    data = handler.rfile.read(length)
    if len(data) != length:
        raise BodyError(400, "The request body ended early.")
    return data


def _read_chunked(handler: BaseHTTPRequestHandler) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = handler.rfile.readline(1026)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError(400, "Malformed chunked body.") from None
        if size == 0:
            while handler.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        total += size
        if size < 0 or total > MAX_REQUEST_BODY:
            raise BodyError(413, "The request body is too large.")
        parts.append(handler.rfile.read(size))
        handler.rfile.readline(3)


class _Handler(BaseHTTPRequestHandler):
    """One connection; every method goes to the owner. One thread per connection."""

    protocol_version = "HTTP/1.1"
    server_version = "TextStackFake/1.0"
    sys_version = ""
    timeout = _IDLE_TIMEOUT
    # Headers and body go out in separate writes; with Nagle on, each answer would
    # wait for the peer's delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def _dispatch(self) -> None:
        server = self.server
        assert isinstance(server, HttpServer)
        server.sink.serve(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a test kit must not write request lines (or tokens) to stderr."""


class HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on daemon threads that can end its open connections.

    Thread-safe as ThreadingHTTPServer is; the connection registry has its own lock.
    """

    daemon_threads = True
    block_on_close = False
    # The default backlog of 5 drops SYNs under a burst of clients (each drop costs the
    # client a 1 s retransmit), which would turn concurrency tests into timing tests.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sink: RequestSink) -> None:
        self.sink = sink
        self._live_lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._live_lock:
            self._sockets.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        me = threading.current_thread()
        with self._live_lock:
            self._handler_threads.add(me)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._live_lock:
                self._handler_threads.discard(me)
                self._sockets.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (or times out) mid-exchange is normal in fault tests.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)

    def end_connections(self, timeout: float) -> None:
        """Shuts every open connection and waits (bounded) for their threads."""
        with self._live_lock:
            sockets, threads = list(self._sockets), list(self._handler_threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout)
