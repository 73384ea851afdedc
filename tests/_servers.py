"""Tiny raw-socket HTTP/1.1 servers on 127.0.0.1 for transport tests.

A handler sees the parsed request with its header lines exactly as sent and writes
whatever bytes it likes, so tests can misbehave on purpose (drip, reset, lie about
Content-Length, never answer).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["RawRequest", "RawServer", "closed_port", "respond"]


@dataclass
class RawRequest:
    """One request as the server saw it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int = 0
    raw_head: bytes = field(default=b"", repr=False)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


# handler(request, sock, stop) -> keep the connection open for another request?
Handler = Callable[[RawRequest, socket.socket, threading.Event], bool]


def respond(
    sock: socket.socket,
    status: int = 200,
    body: bytes = b"",
    headers: Optional[list[tuple[str, str]]] = None,
    *,
    length: bool = True,
) -> None:
    """Writes one complete response."""
    lines = [f"HTTP/1.1 {status} X"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if length:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sock.sendall(head + body)


def _read_request(sock: socket.socket, buffer: bytearray) -> Optional[tuple[RawRequest, bytes]]:
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    length = 0
    for name, value in headers:
        if name.lower() == "content-length":
            length = int(value)
    body = bytearray(rest)
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            return None
        body += data
    request = RawRequest(method, target, headers, bytes(body[:length]), raw_head=head)
    return request, bytes(body[length:])


class RawServer:
    """Serves connections on 127.0.0.1, one thread per connection. Thread-safe.

    Records every request and counts connections. ``close()`` stops the handlers
    (through ``stop``) and closes every socket.
    """

    def __init__(self, handler: Handler, *, tls: Optional[ssl.SSLContext] = None) -> None:
        self._handler = handler
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.requests: list[RawRequest] = []
        self.connections = 0
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def origin(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True)
                with self._lock:
                    self._socks.append(sock)
            buffer = bytearray()
            while not self.stop.is_set():
                parsed = _read_request(sock, buffer)
                if parsed is None:
                    return
                request, rest = parsed
                buffer = bytearray(rest)
                request.connection = number
                with self._lock:
                    self.requests.append(request)
                if not self._handler(request, sock, self.stop):
                    return
        except (OSError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.stop.set()
        # Wakes the thread blocked in accept() (closing alone does not, on Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._acceptor.join(5)
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
