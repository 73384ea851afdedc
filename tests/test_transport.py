"""Urllib3Transport against real sockets on 127.0.0.1, plus its pure policies."""

from __future__ import annotations

import datetime
import email.utils
import gzip
import logging
import math
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
import warnings
from typing import Any, Callable, Optional

import pytest
from _servers import RawRequest, RawServer, closed_port, respond

from textstack_sdk._errors import ConfigurationError, TransportError
from textstack_sdk._http import Request, Response, parse_retry_after
from textstack_sdk._transport import (
    Urllib3Transport,
    _HTTPConnection,
    backoff_delay,
    check_url,
    redirect_target,
    retry_delay,
)
from textstack_sdk._version import __version__

CANARY = "canary-Zq8xT3-secret"
SLACK = 0.6  # scheduling slack on a loaded 2-core machine

Handler = Callable[[RawRequest, socket.socket, threading.Event], bool]


# ---------------------------------------------------------------------------
# fixtures and handlers


@pytest.fixture
def serve() -> Any:
    servers: list[RawServer] = []

    def start(handler: Handler, tls: Optional[ssl.SSLContext] = None) -> RawServer:
        server = RawServer(handler, tls=tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture(params=["kernel", "reader"])
def deadline_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with plain-HTTP sockets in both deadline modes: kernel timeouts with
    the deadline checked by the socket (Linux), and ``_DeadlineReader`` (TLS, elsewhere)."""
    kernel = request.param == "kernel"
    if kernel and not _HTTPConnection.kernel_timeouts:
        pytest.skip("kernel socket timeouts are used on Linux only")
    monkeypatch.setattr(_HTTPConnection, "kernel_timeouts", kernel)
    return str(request.param)


@pytest.fixture
def make(sleeps: list[float]) -> Any:
    made: list[Urllib3Transport] = []

    def build(**options: Any) -> Urllib3Transport:
        options.setdefault("timeout", 5.0)
        options.setdefault("sleep", sleeps.append)
        transport = Urllib3Transport(**options)
        made.append(transport)
        return transport

    yield build
    for transport in made:
        transport.close()


def ok(body: bytes = b"{}", headers: Optional[list[tuple[str, str]]] = None) -> Handler:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        respond(sock, 200, body, headers)
        return True

    return handler


def echo(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
    respond(sock, 200, request.body, [("X-Method", request.method)])
    return True


def sequence(*steps: Handler) -> Handler:
    """Answers the n-th request with the n-th step (the last one repeats)."""
    counter = {"n": 0}
    lock = threading.Lock()

    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        with lock:
            index = min(counter["n"], len(steps) - 1)
            counter["n"] += 1
        return steps[index](request, sock, stop)

    return handler


def status(code: int, headers: Optional[list[tuple[str, str]]] = None) -> Handler:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        respond(sock, code, b"busy", headers)
        return True

    return handler


def hang(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
    stop.wait(30)
    return False


def drip(prefix: bytes, byte: bytes = b"a", every: float = 0.005) -> Handler:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(prefix)
        while not stop.wait(every):
            sock.sendall(byte)
        return False

    return handler


def get(url: str, **kw: Any) -> Request:
    kw.setdefault("route", "GET /things/{id}")
    kw.setdefault("retry_safe", True)
    return Request("GET", url, **kw)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    try:
        result: Any = call()
    except TransportError as exc:
        result = exc
    return result, time.monotonic() - start


# ---------------------------------------------------------------------------
# happy paths and exact headers


def test_get_returns_status_lowercased_headers_and_body(serve: Any, make: Any) -> None:
    server = serve(ok(b'{"a":1}', [("X-Thing", "one"), ("Content-Type", "application/json")]))
    response = make().handle_request(get(server.origin + "/things/1?q=x"))
    assert response.status == 200
    assert response.body == b'{"a":1}'
    assert response.headers["x-thing"] == "one"
    assert response.headers["content-type"] == "application/json"
    assert server.requests[0].target == "/things/1?q=x"


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_post_and_put_send_body_and_headers(serve: Any, make: Any, method: str) -> None:
    server = serve(echo)
    request = Request(
        method,
        server.origin + "/w",
        headers=(("Content-Type", "application/json"), ("X-Custom", "v")),
        body=b'{"k":"v"}',
        route=f"{method} /w",
    )
    response = make().handle_request(request)
    seen = server.requests[0]
    assert response.status == 200
    assert response.body == b'{"k":"v"}'
    assert seen.method == method
    assert seen.values("Content-Type") == ["application/json"]
    assert seen.values("X-Custom") == ["v"]
    assert seen.values("Content-Length") == ["9"]


def test_exactly_one_host_header_with_the_exact_value(serve: Any, make: Any) -> None:
    server = serve(ok())
    make().handle_request(get(server.origin + "/x", headers=(("Host", "books.example.com"),)))
    head = server.requests[0].raw_head.decode("latin-1").lower()
    assert head.count("\r\nhost:") == 1
    assert server.requests[0].values("Host") == ["books.example.com"]


def test_duplicate_header_names_are_sent_once_last_wins(serve: Any, make: Any) -> None:
    server = serve(ok())
    headers = (("Host", "a.example"), ("host", "b.example"), ("X-A", "1"))
    make().handle_request(get(server.origin + "/x", headers=headers))
    assert server.requests[0].values("Host") == ["b.example"]


def test_without_a_host_header_urllib3_sends_one_for_the_url(serve: Any, make: Any) -> None:
    server = serve(ok())
    make().handle_request(get(server.origin + "/x"))
    assert server.requests[0].values("Host") == [f"127.0.0.1:{server.port}"]


def test_user_agent_default_and_override(serve: Any, make: Any) -> None:
    server = serve(ok())
    make().handle_request(get(server.origin + "/x"))
    make(user_agent="custom/1").handle_request(get(server.origin + "/x"))
    make().handle_request(get(server.origin + "/x", headers=(("User-Agent", "mine/2"),)))
    v = os.sys.version_info  # type: ignore[attr-defined]
    expected = f"textstack-sdk/{__version__} Python/{v.major}.{v.minor}.{v.micro}"
    assert [r.values("User-Agent") for r in server.requests] == [
        [expected],
        ["custom/1"],
        ["mine/2"],
    ]


def test_asks_for_identity_encoding(serve: Any, make: Any) -> None:
    server = serve(ok())
    make().handle_request(get(server.origin + "/x"))
    assert server.requests[0].values("Accept-Encoding") == ["identity"]


def test_keep_alive_connection_is_reused(serve: Any, make: Any) -> None:
    server = serve(ok())
    transport = make()
    for _ in range(3):
        transport.handle_request(get(server.origin + "/x"))
    assert server.connections == 1


@pytest.mark.parametrize("value", [f"Bearer {CANARY}\r\nX-Evil: 1", f"Bearer {CANARY}\u20ac"])
def test_unsafe_header_value_refused_without_echo(serve: Any, make: Any, value: str) -> None:
    server = serve(ok())
    with pytest.raises(ConfigurationError) as info:
        make().handle_request(get(server.origin + "/x", headers=(("Authorization", value),)))
    assert CANARY not in str(info.value) and CANARY not in repr(info.value)
    assert "Authorization" in str(info.value)
    assert server.requests == []


# ---------------------------------------------------------------------------
# connect failures


@pytest.mark.timeout(10)
def test_connect_refused_get_is_retried_then_fails(make: Any, sleeps: list[float]) -> None:
    transport = make(max_retries=2, backoff=0.1)
    with pytest.raises(TransportError) as info:
        transport.handle_request(get(f"http://127.0.0.1:{closed_port()}/x"))
    assert len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2
    assert "connection refused" in str(info.value)
    assert "GET /things/{id}" in str(info.value)
    assert info.value.route == "GET /things/{id}"
    assert info.value.retryable is True


def test_connect_refused_post_is_not_retried(make: Any, sleeps: list[float]) -> None:
    request = Request("POST", f"http://127.0.0.1:{closed_port()}/x", body=b"{}", route="POST /x")
    with pytest.raises(TransportError, match="connection refused"):
        make().handle_request(request)
    assert sleeps == []


def test_connect_retry_never_sleeps_past_the_deadline(make: Any, sleeps: list[float]) -> None:
    transport = make(timeout=0.5, backoff=5.0)
    with pytest.raises(TransportError):
        transport.handle_request(get(f"http://127.0.0.1:{closed_port()}/x"))
    assert sleeps == []


@pytest.mark.timeout(10)
def test_connect_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    probe = socket.socket()
    probe.settimeout(0.05)
    try:
        probe.connect(("127.0.0.1", port))
    except OSError:
        pass
    else:
        pytest.skip("this kernel accepts past a full backlog")
    finally:
        probe.close()
    transport = Urllib3Transport(timeout=2.0, connect_timeout=0.2, max_retries=0)
    try:
        error, elapsed = timed(lambda: transport.handle_request(get(f"http://127.0.0.1:{port}/")))
        assert isinstance(error, TransportError)
        assert "connect timed out" in str(error)
        assert elapsed < 0.2 + SLACK
    finally:
        transport.close()
        filler.close()
        listener.close()


def _close_without_answer(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
    return False


def test_get_retried_when_the_server_closes_without_answering(
    serve: Any, make: Any, sleeps: list[float]
) -> None:
    server = serve(sequence(_close_without_answer, ok(b"second")))
    assert make().handle_request(get(server.origin + "/x")).body == b"second"
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_post_not_replayed_when_the_server_closes_without_answering(
    serve: Any, make: Any, sleeps: list[float]
) -> None:
    server = serve(sequence(_close_without_answer, ok()))
    request = Request("POST", server.origin + "/x", body=b"{}", route="POST /x")
    with pytest.raises(TransportError, match="closed the connection without answering"):
        make().handle_request(request)
    assert len(server.requests) == 1 and sleeps == []


# ---------------------------------------------------------------------------
# deadlines


@pytest.mark.timeout(10)
def test_server_that_never_answers_times_out(
    serve: Any, make: Any, sleeps: list[float], deadline_path: str
) -> None:
    server = serve(hang)
    transport = make(timeout=0.3)
    error, elapsed = timed(lambda: transport.handle_request(get(server.origin + "/x")))
    assert isinstance(error, TransportError)
    assert "timed out" in str(error)
    assert elapsed < 0.3 + SLACK
    assert sleeps == []
    assert len(server.requests) == 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", id="body"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n", id="chunk"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Drip: ", id="headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", id="chunk-size"),
    ],
)
def test_slow_drip_is_bounded_by_the_overall_deadline(
    serve: Any, make: Any, prefix: bytes, deadline_path: str
) -> None:
    byte = b"1" if prefix.endswith(b"\r\n\r\n") and b"chunked" in prefix else b"a"
    server = serve(drip(prefix, byte))
    transport = make(timeout=0.3)
    error, elapsed = timed(lambda: transport.handle_request(get(server.origin + "/x")))
    assert isinstance(error, TransportError), error
    assert "timed out" in str(error)
    assert elapsed < 0.3 + SLACK


@pytest.mark.timeout(10)
def test_request_timeout_overrides_the_default(serve: Any, make: Any, deadline_path: str) -> None:
    server = serve(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n"))
    transport = make(timeout=30.0)
    error, elapsed = timed(
        lambda: transport.handle_request(get(server.origin + "/x", timeout=0.25))
    )
    assert isinstance(error, TransportError) and "deadline" in str(error)
    assert elapsed < 0.25 + SLACK


def test_connection_after_a_timeout_is_not_reused(
    serve: Any, make: Any, deadline_path: str
) -> None:
    server = serve(sequence(hang, ok(b"fine")))
    transport = make(timeout=0.2)
    with pytest.raises(TransportError):
        transport.handle_request(get(server.origin + "/x"))
    assert transport.handle_request(get(server.origin + "/x")).body == b"fine"
    assert server.connections == 2


# ---------------------------------------------------------------------------
# kernel-enforced socket timeouts (plain HTTP on Linux)


def _non_reader(read_every: Optional[float]) -> tuple[socket.socket, threading.Event]:
    """A listener whose one connection is never read (or read 4 KiB per tick)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stop = threading.Event()

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            while not stop.wait(read_every or 30):
                if read_every is not None:
                    conn.recv(4096)

    threading.Thread(target=run, daemon=True).start()
    return listener, stop


@pytest.mark.timeout(10)
@pytest.mark.parametrize("read_every", [None, 0.01], ids=["never-reads", "reads-a-trickle"])
def test_a_send_the_server_does_not_read_is_bounded_by_the_deadline(
    make: Any, read_every: Optional[float], deadline_path: str
) -> None:
    listener, stop = _non_reader(read_every)
    try:
        port = listener.getsockname()[1]
        body = b"x" * (32 * 1024 * 1024)  # more than any loopback socket buffers hold
        request = Request("POST", f"http://127.0.0.1:{port}/x", body=body, route="POST /x")
        transport = make(timeout=0.3)
        error, elapsed = timed(lambda: transport.handle_request(request))
        assert isinstance(error, TransportError), error
        assert "timed out" in str(error)
        assert elapsed < 0.3 + SLACK
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("cut", [b"HTTP/1.1 200 OK\r\nContent-Type: a", b"HTTP/1.1 200 OK\r\n"])
def test_a_head_cut_before_the_blank_line_is_a_transport_error(
    serve: Any, make: Any, cut: bytes, deadline_path: str
) -> None:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(cut)
        return False

    server = serve(handler)
    request = get(server.origin + "/x", retry_safe=False)
    with pytest.raises(TransportError, match="closed in the middle of the response headers"):
        make(timeout=2.0).handle_request(request)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel timeouts: Linux only")
def test_plain_http_sockets_block_in_the_kernel_with_its_timeouts(serve: Any, make: Any) -> None:
    server = serve(ok(b"hi"))
    transport = make(timeout=7.5)
    assert transport.handle_request(get(server.origin + "/x")).body == b"hi"
    (pool,) = transport._pool._by_origin.values()
    conn = pool.pool.get_nowait()
    try:
        sock = conn.sock
        # No Python-level timeout (which would poll() before every call) ...
        assert socket.socket.gettimeout(sock) is None
        # ... but the kernel's, for receives and sends.
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            seconds, micros = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
            assert 7.4 < seconds + micros / 1e6 <= 7.5
    finally:
        pool.pool.put_nowait(conn)


# ---------------------------------------------------------------------------
# broken bodies and the size cap


def _cut_body(rst: bool) -> Handler:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    return handler


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_connection_dropped_mid_body_is_a_transport_error(
    serve: Any, make: Any, sleeps: list[float], rst: bool
) -> None:
    server = serve(_cut_body(rst))
    with pytest.raises(TransportError) as info:
        make().handle_request(get(server.origin + "/x"))
    message = str(info.value)
    assert "incomplete body" in message or "reset" in message
    assert "0123456789" not in repr(info.value.__cause__)
    assert sleeps == []


def test_chunked_body_cut_short_is_a_transport_error(serve: Any, make: Any) -> None:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nabc")
        return False

    server = serve(handler)
    with pytest.raises(TransportError, match=r"incomplete body|connection"):
        make().handle_request(get(server.origin + "/x"))


@pytest.mark.timeout(10)
def test_content_length_above_the_cap_is_refused_before_reading(serve: Any, make: Any) -> None:
    server = serve(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n", every=1.0))
    transport = make(max_response_bytes=1000, timeout=5.0)
    error, elapsed = timed(lambda: transport.handle_request(get(server.origin + "/x")))
    assert isinstance(error, TransportError)
    assert "1000 bytes" in str(error) and "1000000000" in str(error)
    assert error.retryable is False
    assert elapsed < 0.5


def _endless(framing: str) -> Handler:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        if framing == "chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
        else:
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            piece = b"x" * 0x4000
        sent = 0
        while not stop.is_set() and sent < 64 * 1024 * 1024:
            sock.sendall(piece)
            sent += len(piece)
        return False

    return handler


@pytest.mark.timeout(10)
@pytest.mark.parametrize("framing", ["chunked", "close-delimited"])
def test_endless_body_stops_at_the_cap(serve: Any, make: Any, framing: str) -> None:
    server = serve(_endless(framing))
    with pytest.raises(TransportError, match="exceeds the limit of 100000 bytes"):
        make(max_response_bytes=100_000).handle_request(get(server.origin + "/x"))


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_body_exactly_at_the_cap_is_accepted(serve: Any, make: Any, framing: str) -> None:
    body = b"y" * 5000

    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        if framing == "length":
            respond(sock, 200, body)
        else:
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(body)
                + body
                + b"\r\n0\r\n\r\n"
            )
        return True

    server = serve(handler)
    assert make(max_response_bytes=5000).handle_request(get(server.origin + "/x")).body == body


def test_unwanted_gzip_is_decoded_and_a_bomb_stops_at_the_cap(serve: Any, make: Any) -> None:
    small = gzip.compress(b'{"ok":true}')
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    server = serve(
        sequence(
            ok(small, [("Content-Encoding", "gzip")]),
            ok(bomb, [("Content-Encoding", "gzip")]),
        )
    )
    transport = make(max_response_bytes=1024 * 1024)
    assert transport.handle_request(get(server.origin + "/x")).body == b'{"ok":true}'
    assert len(bomb) < 1024 * 1024
    with pytest.raises(TransportError, match="exceeds the limit"):
        transport.handle_request(get(server.origin + "/x"))


def test_refused_body_does_not_poison_the_pool(serve: Any, make: Any) -> None:
    server = serve(sequence(ok(b"z" * 2000), ok(b"small")))
    transport = make(max_response_bytes=1000)
    with pytest.raises(TransportError):
        transport.handle_request(get(server.origin + "/x"))
    assert transport.handle_request(get(server.origin + "/x")).body == b"small"


def test_malformed_status_line_is_a_transport_error(serve: Any, make: Any) -> None:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(b"NONSENSE\r\n\r\n")
        return False

    server = serve(handler)
    with pytest.raises(TransportError, match="malformed response"):
        make(max_retries=0).handle_request(get(server.origin + "/x"))


# ---------------------------------------------------------------------------
# retries


def test_get_503_then_200_is_retried(serve: Any, make: Any, sleeps: list[float]) -> None:
    server = serve(sequence(status(503), ok(b"done")))
    response = make().handle_request(get(server.origin + "/x"))
    assert response.status == 200 and response.body == b"done"
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_post_503_is_not_retried(serve: Any, make: Any, sleeps: list[float]) -> None:
    server = serve(sequence(status(503), ok()))
    request = Request("POST", server.origin + "/x", body=b"{}", route="POST /x")
    assert make().handle_request(request).status == 503
    assert len(server.requests) == 1 and sleeps == []


@pytest.mark.parametrize("code", [502, 503, 504])
def test_retries_stop_at_max_retries(serve: Any, make: Any, sleeps: list[float], code: int) -> None:
    server = serve(status(code))
    response = make(max_retries=2, backoff=0.2).handle_request(get(server.origin + "/x"))
    assert response.status == code
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4


def test_no_retry_when_max_retries_is_zero(serve: Any, make: Any, sleeps: list[float]) -> None:
    server = serve(status(503))
    assert make(max_retries=0).handle_request(get(server.origin + "/x")).status == 503
    assert len(server.requests) == 1 and sleeps == []


def test_other_statuses_are_not_retried(serve: Any, make: Any, sleeps: list[float]) -> None:
    server = serve(status(500))
    assert make().handle_request(get(server.origin + "/x")).status == 500
    assert sleeps == []


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("2", 2.0, 2.0),
        ("when", 2.0, 3.5),  # an HTTP-date about 3 s ahead
        ("soon, maybe", 0.1, 0.2),  # malformed: the backoff (base 0.2) applies
        ("-3", 0.1, 0.2),
        ("99999999999", 4.0, 4.0),  # huge: capped by max_retry_after
    ],
)
def test_503_retry_after(
    serve: Any, make: Any, sleeps: list[float], header: str, low: float, high: float
) -> None:
    if header == "when":
        header = email.utils.formatdate(time.time() + 3, usegmt=True)
    server = serve(sequence(status(503, [("Retry-After", header)]), ok()))
    transport = make(timeout=10.0, backoff=0.2, max_retry_after=4.0)
    assert transport.handle_request(get(server.origin + "/x")).status == 200
    assert len(sleeps) == 1 and low <= sleeps[0] <= high


def test_retry_after_beyond_the_deadline_returns_the_answer_at_once(
    serve: Any, make: Any, sleeps: list[float]
) -> None:
    server = serve(sequence(status(503, [("Retry-After", "20")]), ok()))
    response = make(timeout=2.0, max_retry_after=30.0).handle_request(get(server.origin + "/x"))
    assert response.status == 503 and response.headers["retry-after"] == "20"
    assert sleeps == [] and len(server.requests) == 1


def test_429_is_retried_only_when_it_says_when(serve: Any, make: Any, sleeps: list[float]) -> None:
    server = serve(sequence(status(429), status(429, [("Retry-After", "1")]), ok()))
    transport = make()
    assert transport.handle_request(get(server.origin + "/x")).status == 429
    assert sleeps == []
    assert transport.handle_request(get(server.origin + "/x")).status == 200
    assert sleeps == [1.0]


@pytest.mark.timeout(10)
def test_default_sleep_is_real_and_bounded(serve: Any) -> None:
    server = serve(sequence(status(503, [("Retry-After", "0.05")]), ok()))
    transport = Urllib3Transport(timeout=2.0)
    try:
        response, elapsed = timed(lambda: transport.handle_request(get(server.origin + "/x")))
    finally:
        transport.close()
    assert response.status == 200
    assert 0.05 <= elapsed < 0.05 + SLACK


# ---------------------------------------------------------------------------
# redirects


def redirect(location: str, code: int = 302) -> Handler:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        respond(sock, code, b"", [("Location", location)])
        return True

    return handler


def test_same_origin_redirect_is_followed_with_host_kept(serve: Any, make: Any) -> None:
    server = serve(sequence(redirect("/final?x=1"), ok(b"there")))
    headers = (("Host", "site.example"), ("Authorization", "Bearer t"))
    response = make().handle_request(get(server.origin + "/start", headers=headers))
    assert response.status == 200 and response.body == b"there"
    assert server.requests[1].target == "/final?x=1"
    assert server.requests[1].values("Host") == ["site.example"]
    assert server.requests[1].values("Authorization") == ["Bearer t"]


def test_cross_origin_redirect_with_authorization_is_not_followed(serve: Any, make: Any) -> None:
    other = serve(ok(b"elsewhere"))
    server = serve(redirect(other.origin + "/steal"))
    request = get(server.origin + "/x", headers=(("Authorization", f"Bearer {CANARY}"),))
    response = make().handle_request(request)
    assert response.status == 302
    assert response.headers["location"] == other.origin + "/steal"
    assert other.requests == []


def test_cross_origin_redirect_without_authorization_drops_host(serve: Any, make: Any) -> None:
    other = serve(ok(b"elsewhere"))
    server = serve(redirect(other.origin + "/y"))
    response = make().handle_request(get(server.origin + "/x", headers=(("Host", "a.example"),)))
    assert response.body == b"elsewhere"
    assert other.requests[0].values("Host") == [f"127.0.0.1:{other.port}"]


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_post_redirect_is_not_followed(serve: Any, make: Any, code: int) -> None:
    server = serve(sequence(redirect("/next", code), ok()))
    request = Request("POST", server.origin + "/x", body=b"{}", route="POST /x")
    assert make().handle_request(request).status == code
    assert len(server.requests) == 1


def test_redirect_is_not_followed_for_a_get_with_a_body(serve: Any, make: Any) -> None:
    server = serve(sequence(redirect("/next"), ok()))
    assert make().handle_request(get(server.origin + "/x", body=b"q")).status == 302
    assert len(server.requests) == 1


def test_redirect_loop_stops_at_max_redirects(serve: Any, make: Any) -> None:
    server = serve(redirect("/again"))
    assert make(max_redirects=3).handle_request(get(server.origin + "/x")).status == 302
    assert len(server.requests) == 4


def test_redirect_to_a_refused_url_is_not_followed(serve: Any, make: Any) -> None:
    server = serve(redirect("http://example.com/"))
    assert make().handle_request(get(server.origin + "/x")).status == 302


# ---------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: Any) -> tuple[str, str]:
    x509 = pytest.importorskip("cryptography.x509")
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_server_context(tls_files: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


def test_https_with_ca_certs(
    serve: Any, make: Any, tls_files: Any, tls_server_context: Any
) -> None:
    server = serve(ok(b"secure"), tls=tls_server_context)
    response = make(ca_certs=tls_files[0]).handle_request(get(server.origin + "/x"))
    assert response.body == b"secure"


@pytest.mark.timeout(10)
def test_untrusted_certificate_fails_without_retry(
    serve: Any, make: Any, sleeps: list[float], tls_server_context: Any
) -> None:
    server = serve(ok(), tls=tls_server_context)
    with pytest.raises(TransportError, match="TLS certificate verification failed") as info:
        make().handle_request(get(server.origin + "/x"))
    assert info.value.retryable is False
    assert sleeps == []


def test_https_to_http_downgrade_is_not_followed(
    serve: Any, make: Any, tls_files: Any, tls_server_context: Any
) -> None:
    plain = serve(ok(b"plain"))
    server = serve(redirect(plain.origin + "/x"), tls=tls_server_context)
    response = make(ca_certs=tls_files[0]).handle_request(get(server.origin + "/x"))
    assert response.status == 302
    assert plain.requests == []


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Drip: ", id="headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", id="body"),
    ],
)
def test_https_drip_is_bounded_by_the_overall_deadline(
    serve: Any, make: Any, tls_files: Any, tls_server_context: Any, prefix: bytes
) -> None:
    server = serve(drip(prefix), tls=tls_server_context)
    transport = make(timeout=0.3, ca_certs=tls_files[0])
    error, elapsed = timed(lambda: transport.handle_request(get(server.origin + "/x")))
    assert isinstance(error, TransportError), error
    assert "timed out" in str(error)
    assert elapsed < 0.3 + SLACK


def test_https_connection_is_kept_alive_and_dropped_after_bad_framing(
    serve: Any, make: Any, tls_files: Any, tls_server_context: Any
) -> None:
    def bad_length(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}xyz")
        return True

    def early_hints(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        respond(sock, 200, b"hinted")
        return True

    server = serve(
        sequence(ok(b"one"), early_hints, bad_length, ok(b"fresh")), tls=tls_server_context
    )
    transport = make(ca_certs=tls_files[0], max_retries=0)
    assert transport.handle_request(get(server.origin + "/x")).body == b"one"
    assert transport.handle_request(get(server.origin + "/x")).body == b"hinted"
    assert server.connections == 1
    with pytest.raises(TransportError, match="malformed response"):
        transport.handle_request(get(server.origin + "/x"))
    assert transport.handle_request(get(server.origin + "/x")).body == b"fresh"
    assert server.connections == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_https_kept_alive_connection_dropped_unanswered_replays_only_a_get(
    serve: Any, make: Any, sleeps: list[float], tls_files: Any, tls_server_context: Any, method: str
) -> None:
    server = serve(sequence(ok(b"one"), _close_without_answer, ok(b"two")), tls=tls_server_context)
    transport = make(ca_certs=tls_files[0], max_retries=1)
    assert transport.handle_request(get(server.origin + "/x")).body == b"one"
    if method == "GET":
        assert transport.handle_request(get(server.origin + "/x")).body == b"two"
    else:
        request = Request("POST", server.origin + "/x", body=b"{}", route="POST /x")
        with pytest.raises(TransportError, match="closed the connection without answering"):
            transport.handle_request(request)
    assert [r.method for r in server.requests] == ["GET"] + [method] * (2 if method == "GET" else 1)
    assert server.requests[1].connection == 1  # sent on the kept-alive connection


@pytest.mark.timeout(10)
def test_endless_interim_answers_are_bounded_by_the_overall_deadline(
    serve: Any, make: Any, deadline_path: str
) -> None:
    server = serve(drip(b"", b"HTTP/1.1 103 Early Hints\r\n\r\n", every=0.001))
    transport = make(timeout=0.3)
    error, elapsed = timed(lambda: transport.handle_request(get(server.origin + "/x")))
    assert isinstance(error, TransportError), error
    assert "timed out" in str(error)
    assert elapsed < 0.3 + SLACK


# ---------------------------------------------------------------------------
# pure policies


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1",
        "HTTPS://API.example.com:8443/x?q=1#f",
        "http://127.0.0.1:8080/x",
        "http://127.9.9.9/",
        "http://localhost/",
        "http://LOCALHOST:1/",
        "http://[::1]:8000/",
    ],
)
def test_check_url_allows(url: str) -> None:
    assert check_url(url) is None
    # The same URL with a public host is refused, so the allowance above comes from the
    # https / loopback rule and not from a check that lets everything through.
    public = re.sub(r"//[^/]*", "//example.com", url, count=1)
    if public.lower().startswith("http://"):
        with pytest.raises(ConfigurationError, match="loopback"):
            check_url(public)
    else:
        assert check_url(public) is None
        with pytest.raises(ConfigurationError, match="credentials"):
            check_url(public.replace("//", "//user:pw@", 1))


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "http://10.0.0.1/",
        "http://127.1/",
        "http://localhost.example.com/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//example.com/x",
        "/relative",
        "",
        "https://",
        "https://exa mple.com/",
        "https://example.com/\r\nX: y",
        "https://user:pw@example.com/",
        "https://@example.com/",
        "http://127.0.0.1\\@example.com/",
        "https://example.com:99999/",
    ],
)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_url(url)
    assert "pw" not in str(info.value)


def test_every_request_url_is_checked(make: Any) -> None:
    transport = make()
    for _ in range(2):  # a refusal is never cached
        with pytest.raises(ConfigurationError, match="loopback"):
            transport.handle_request(get("http://example.com/x"))
    check_url("http://127.0.0.1/a")
    with pytest.raises(ConfigurationError):
        check_url("http://127.0.0.1/a b")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-1", None),
        ("+1", None),
        ("1e3", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("9" * 400, 1e9),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 +0100", 0.0),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: Optional[str], expected: Optional[float]) -> None:
    now = datetime.datetime(2015, 10, 21, 7, 28, 0, tzinfo=datetime.timezone.utc).timestamp()
    result = parse_retry_after(value, now)
    if expected is None:
        assert result is None
    else:
        assert result is not None and math.isclose(result, expected)


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    assert backoff_delay(0, 0.2, lambda: 0.0) == pytest.approx(0.1)
    assert backoff_delay(0, 0.2, lambda: 0.999) == pytest.approx(0.2, abs=1e-3)
    assert backoff_delay(3, 0.2, lambda: 0.0) == pytest.approx(0.8)
    assert backoff_delay(50, 0.2, lambda: 0.999) <= 10.0


def test_retry_delay_table() -> None:
    common: dict[str, Any] = {
        "now": 0.0,
        "backoff": 0.2,
        "max_retry_after": 5.0,
        "rand": lambda: 0.0,
    }
    assert retry_delay(500, None, attempt=0, remaining=9, **common) is None
    assert retry_delay(502, None, attempt=1, remaining=9, **common) == pytest.approx(0.2)
    assert retry_delay(503, "3", attempt=0, remaining=9, **common) == 3.0
    assert retry_delay(503, "3", attempt=0, remaining=2, **common) is None
    assert retry_delay(503, "100", attempt=0, remaining=9, **common) == 5.0
    assert retry_delay(429, None, attempt=0, remaining=9, **common) is None
    assert retry_delay(429, "1", attempt=0, remaining=9, **common) == 1.0


def test_redirect_target_table() -> None:
    base: dict[str, Any] = {
        "method": "GET",
        "has_body": False,
        "has_authorization": True,
        "url": "https://a.example/p/q",
        "status": 302,
    }
    assert redirect_target(**base, location="r") == "https://a.example/p/r"
    assert redirect_target(**base, location="https://a.example:443/z") == "https://a.example:443/z"
    assert redirect_target(**base, location="https://b.example/z") is None
    assert redirect_target(**base, location="https://a.example:444/z") is None
    assert redirect_target(**base, location="http://a.example/z") is None
    assert redirect_target(**{**base, "has_authorization": False}, location="//b.example/z") == (
        "https://b.example/z"
    )
    assert redirect_target(**{**base, "method": "HEAD"}, location="/h") == "https://a.example/h"
    assert redirect_target(**{**base, "method": "DELETE"}, location="/h") is None
    assert redirect_target(**{**base, "has_body": True}, location="/h") is None
    assert redirect_target(**{**base, "status": 304}, location="/h") is None
    assert redirect_target(**base, location=None) is None
    assert redirect_target(**base, location="https://u:p@a.example/") is None


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"timeout": 1e9},
        {"timeout": "5"},
        {"timeout": True},
        {"connect_timeout": 0},
        {"connect_timeout": float("nan")},
        {"max_response_bytes": 0},
        {"max_response_bytes": 2**40},
        {"max_response_bytes": 1.5},
        {"max_retries": -1},
        {"max_retries": 1000},
        {"max_retries": True},
        {"backoff": -0.1},
        {"backoff": float("nan")},
        {"backoff": 1e6},
        {"max_retry_after": -1},
        {"max_retry_after": 1e9},
        {"max_redirects": -1},
        {"max_redirects": 100},
        {"pool_maxsize": 0},
        {"pool_maxsize": 10**6},
        {"user_agent": ""},
        {"user_agent": "a\r\nb"},
        {"ca_certs": 5},
        {"ssl_context": "ctx"},
        {"sleep": 3},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Urllib3Transport(**options)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), 1e9])
def test_bad_request_timeout_is_refused(serve: Any, make: Any, value: float) -> None:
    server = serve(ok())
    with pytest.raises(ConfigurationError):
        make().handle_request(get(server.origin + "/x", timeout=value))
    assert server.requests == []


def test_first_docstring_line_states_thread_safety() -> None:
    assert (Urllib3Transport.__doc__ or "").startswith("Thread-safe")


# ---------------------------------------------------------------------------
# lifecycle: close, fork, threads


def test_closed_transport_refuses_requests(serve: Any) -> None:
    server = serve(ok())
    transport = Urllib3Transport()
    transport.handle_request(get(server.origin + "/x"))
    transport.close()
    transport.close()
    with pytest.raises(TransportError, match="transport is closed") as info:
        transport.handle_request(get(server.origin + "/x"))
    assert info.value.retryable is False
    assert "closed" in repr(transport)


def test_pid_change_builds_a_fresh_pool(serve: Any, make: Any) -> None:
    server = serve(ok())
    transport = make()
    transport.handle_request(get(server.origin + "/x"))
    inherited = transport._pool
    transport._pid = -1  # what a forked child sees
    transport.handle_request(get(server.origin + "/x"))
    assert transport._pool is not inherited
    assert transport._pid == os.getpid()
    assert server.connections == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.timeout(20)
def test_forked_child_never_uses_the_parents_connection(serve: Any, make: Any) -> None:
    server = serve(ok(b"hi"))
    transport = make()
    transport.handle_request(get(server.origin + "/x"))
    assert server.connections == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            response = transport.handle_request(get(server.origin + "/x"))
            code = 0 if response.body == b"hi" else 2
        finally:
            os._exit(code)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert server.connections == 2
    transport.handle_request(get(server.origin + "/x"))
    assert server.connections == 2  # the parent still reuses its own connection
    assert [r.connection for r in server.requests] == [1, 2, 1]


@pytest.mark.timeout(20)
def test_concurrent_requests_from_many_threads(serve: Any, make: Any) -> None:
    server = serve(echo)
    transport = make(pool_maxsize=4)
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []
    bodies: list[bytes] = []

    def worker(n: int) -> None:
        barrier.wait()
        try:
            for i in range(15):
                body = f"{n}-{i}".encode()
                request = Request("POST", server.origin + "/e", body=body, route="POST /e")
                response = transport.handle_request(request)
                assert response.body == body
                bodies.append(response.body)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(bodies) == 120


# ---------------------------------------------------------------------------
# secrets


def _texts_of(exc: BaseException) -> list[str]:
    texts: list[str] = []
    todo: list[Any] = [exc]
    seen: set[int] = set()
    while todo:
        item = todo.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        texts += [str(item), repr(item)]
        if isinstance(item, BaseException):
            todo += [item.__cause__, item.__context__, *item.args]
            todo += [getattr(item, "partial", None)]
    return texts


def _reset_after_secret(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
    sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{CANARY}".encode())
    return False


@pytest.mark.timeout(30)
def test_no_secret_in_logs_or_errors(
    serve: Any, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_headers = (("Authorization", f"Bearer {CANARY}"), ("Host", "site.example"))
    secret_body = f'{{"refreshToken":"{CANARY}"}}'.encode()
    servers = {
        "ok": serve(echo),
        "retry": serve(sequence(status(503), status(502), ok())),
        "redirect": serve(sequence(redirect("/b"), ok())),
        "reset": serve(_reset_after_secret),
        "hang": serve(hang),
        "big": serve(ok(CANARY.encode() * 100)),
    }
    transport = make(timeout=0.5, max_response_bytes=1000)
    errors: list[BaseException] = []
    urls = [s.origin + "/a?search=words" for s in servers.values()]
    urls.append(f"http://127.0.0.1:{closed_port()}/a")
    for url in urls:
        for method, body, safe in (("GET", None, True), ("POST", secret_body, False)):
            request = Request(
                method,
                url,
                headers=secret_headers,
                body=body,
                route=f"{method} /a",
                retry_safe=safe,
            )
            try:
                response = transport.handle_request(request)
                assert CANARY not in repr(response)
            except TransportError as exc:
                errors.append(exc)
            assert CANARY not in repr(request)
    assert len(errors) >= 6
    assert caplog.records, "DEBUG logging was expected"
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert "search=words" not in record.getMessage() or record.name.startswith("urllib3")
    ours = [r for r in caplog.records if r.name == "textstack_sdk.http"]
    assert any("GET /a -> 200" in r.getMessage() for r in ours)
    for error in errors:
        for text in _texts_of(error):
            assert CANARY not in text


def test_error_mapping_for_dns_failure() -> None:
    from urllib3.connection import HTTPSConnection
    from urllib3.exceptions import NameResolutionError

    from textstack_sdk._transport import _map_error

    cause = NameResolutionError("no.such.host", HTTPSConnection("no.such.host"), socket.gaierror())
    error = _map_error(cause, get("https://no.such.host/x"), deadline=time.monotonic() + 10)
    assert str(error) == "GET /things/{id}: DNS lookup failed for 'no.such.host'"


def test_response_values_are_plain(serve: Any, make: Any) -> None:
    server = serve(ok(b"[]"))
    response = make().handle_request(get(server.origin + "/x"))
    assert isinstance(response, Response)
    assert isinstance(response.body, bytes) and dict(response.headers)["content-length"] == "2"
