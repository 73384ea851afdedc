"""Response framing and connection reuse of ``Urllib3Transport`` against hostile servers.

The transport reads responses on urllib3's pooled connections itself (``_exchange``):
a response framed wrong either hands the caller the wrong bytes or leaves bytes behind
on a connection that goes back to the pool, where the next request reads them as its
own answer. Each case answers one request on a raw socket, then a second request shows
whether the connection was reused (it must be only when the framing was unambiguous).
Framing follows RFC 9112 section 6.3.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Union

import pytest
from _servers import RawRequest, RawServer

from textstack_sdk import _http1
from textstack_sdk._errors import TransportError
from textstack_sdk._http import Request, Response
from textstack_sdk._transport import Urllib3Transport, _DeadlineHTTPResponse

Handler = Callable[[RawRequest, socket.socket, threading.Event], bool]
SECOND = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"


def _first_then_second(*parts: bytes, keep: bool = True) -> Handler:
    """Answers the first request with ``parts`` (one send each), every later one with SECOND."""
    served = {"n": 0}

    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        served["n"] += 1
        if served["n"] > 1:
            sock.sendall(SECOND)
            return True
        for part in parts:
            sock.sendall(part)
        return keep

    return handler


def _refused(first: Union[Response, TransportError], server: RawServer) -> None:
    """The answer was refused as malformed, and its connection not reused."""
    assert isinstance(first, TransportError), first
    assert "malformed response" in str(first)
    assert server.connections == 2


def _framed(
    first: Union[Response, TransportError], server: RawServer, body: bytes, *, connections: int
) -> None:
    """The answer's body was framed right; ``connections`` 1 means it was reused."""
    assert isinstance(first, Response), first
    assert first.body == body
    assert server.connections == connections


@pytest.fixture
def exchange_twice() -> Any:
    servers: list[RawServer] = []
    transports: list[Urllib3Transport] = []

    def run(
        handler: Handler, method: str = "GET"
    ) -> tuple[Union[Response, TransportError], Response, RawServer]:
        server = RawServer(handler)
        servers.append(server)
        transport = Urllib3Transport(timeout=2.0, max_retries=0)
        transports.append(transport)
        first: Union[Response, TransportError]
        try:
            first = transport.handle_request(Request(method, server.origin + "/x"))
        except TransportError as exc:
            first = exc
        second = transport.handle_request(Request("GET", server.origin + "/y"))
        assert second.body == b"second"
        return first, second, server

    yield run
    for transport in transports:
        transport.close()
    for server in servers:
        server.close()


# ---------------------------------------------------------------------------
# Content-Length


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(b"Content-Length: 2\r\nContent-Length: 5\r\n", id="two-fields"),
        pytest.param(b"Content-Length: 2, 5\r\n", id="one-list"),
    ],
)
def test_content_lengths_that_differ_are_refused_and_the_connection_dropped(
    exchange_twice: Any, lines: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"{}xyz"))
    _refused(first, server)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(b"Content-Length: 2, 2\r\n", id="one-list"),
        pytest.param(b"Content-Length: 2\r\nContent-Length: 2\r\n", id="two-fields"),
        pytest.param(b"Content-Length:  2 \t\r\n", id="blanks"),
    ],
)
def test_one_content_length_said_more_than_once_frames_the_body(
    exchange_twice: Any, lines: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"{}"))
    _framed(first, server, b"{}", connections=1)


@pytest.mark.parametrize("value", [b"+2", b"0_2", b"-1", b"1 2", b"", b"0x2", b"\xb2", b"2."])
def test_a_content_length_that_is_not_digits_is_refused(exchange_twice: Any, value: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"{}"))
    _refused(first, server)


# ---------------------------------------------------------------------------
# Transfer-Encoding


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(b"Transfer-Encoding: chunked \r\n", id="trailing-blank"),
        pytest.param(b"Transfer-Encoding: identity, chunked\r\n", id="list"),
        pytest.param(b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n", id="fields"),
        pytest.param(b"Transfer-Encoding: CHUNKED\r\n", id="upper-case"),
    ],
)
def test_chunked_as_the_last_transfer_coding_frames_the_body(
    exchange_twice: Any, lines: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n"
    first, _, server = exchange_twice(
        _first_then_second(head, b"2;ext=1\r\n{}\r\n0\r\nX-T: 1\r\n\r\n")
    )
    _framed(first, server, b"{}", connections=1)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n", id="length-first"),
        pytest.param(b"Transfer-Encoding: chunked\r\nContent-Length: 1\r\n", id="coding-first"),
        pytest.param(b"Transfer-Encoding: chunked\r\nContent-Length: 1, 7\r\n", id="bad-length"),
    ],
)
def test_transfer_encoding_overrides_content_length_and_the_connection_is_dropped(
    exchange_twice: Any, lines: bytes
) -> None:
    # RFC 9112 6.3: chunked wins; the message may be a smuggling attempt, so the
    # connection it came on is not trusted with another request.
    head = b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"2\r\n{}\r\n0\r\n\r\n"))
    _framed(first, server, b"{}", connections=2)


@pytest.mark.parametrize(
    ("lines", "keep"),
    [
        pytest.param(b"Transfer-Encoding: identity\r\n", False, id="to-the-close"),
        pytest.param(
            b"Transfer-Encoding: identity\r\nContent-Length: 2\r\n", True, id="with-a-length"
        ),
    ],
)
def test_a_transfer_coding_other_than_chunked_is_read_and_its_connection_dropped(
    exchange_twice: Any, lines: bytes, keep: bool
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"{}", keep=keep))
    _framed(first, server, b"{}", connections=2)


def test_a_chunked_http10_answer_is_read_and_its_connection_dropped(exchange_twice: Any) -> None:
    head = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"2\r\n{}\r\n0\r\n\r\n"))
    _framed(first, server, b"{}", connections=2)


@pytest.mark.parametrize(
    ("method", "head", "connections"),
    [
        # A 204 must not announce a body: one that does may send it, so it is not reused.
        ("GET", b"204 No Content\r\nTransfer-Encoding: chunked", 2),
        ("GET", b"204 No Content\r\nContent-Length: 4", 2),
        ("GET", b"204 No Content\r\nContent-Length: 0", 1),
        ("GET", b"304 Not Modified\r\nTransfer-Encoding: chunked", 1),
        ("GET", b"304 Not Modified\r\nContent-Length: 4", 1),
        ("HEAD", b"200 OK\r\nTransfer-Encoding: chunked", 1),
        ("HEAD", b"200 OK\r\nContent-Length: 4", 1),
    ],
)
def test_an_answer_without_a_body_reads_none(
    exchange_twice: Any, method: str, head: bytes, connections: int
) -> None:
    first, _, server = exchange_twice(_first_then_second(b"HTTP/1.1 " + head + b"\r\n\r\n"), method)
    _framed(first, server, b"", connections=connections)


# ---------------------------------------------------------------------------
# Unusual but readable heads keep the connection; unreadable ones drop it


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\n", id="bare-lf"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\n", id="obs-fold"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: \xe9\xff\r\nContent-Length: 2\r\n\r\n", id="latin-1"
        ),
        pytest.param(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n", id="no-reason"),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
            id="http10-keep-alive",
        ),
    ],
)
def test_an_unusual_readable_head_keeps_the_connection(exchange_twice: Any, head: bytes) -> None:
    first, _, server = exchange_twice(_first_then_second(head, b"{}"))
    _framed(first, server, b"{}", connections=1)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"HTTX/1.1 200 OK\r\n\r\n", id="status-garbage"),
        pytest.param(b"HTTP/2.0 200 OK\r\n\r\n", id="unknown-version"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="status-out-of-range"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
            id="too-many-fields",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 65537 + b"\r\n\r\n", id="line-too-long"),
    ],
)
def test_an_unreadable_head_is_refused_and_the_connection_dropped(
    exchange_twice: Any, head: bytes
) -> None:
    first, _, server = exchange_twice(_first_then_second(head, b"{}"))
    _refused(first, server)


# ---------------------------------------------------------------------------
# Header lines the email parser cannot read (http.client hands it heads it cannot split)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(
            b"Content-Length: 3\r\nnot a header\r\nTransfer-Encoding: chunked\r\n",
            id="hidden-coding",
        ),
        pytest.param(
            b"Content-Length: 3\r\nTransfer-Encoding : chunked\r\n", id="blank-before-colon"
        ),
        pytest.param(b"X-A: 1\r\nnot a header\r\ncontent-length: 2\r\n", id="hidden-length"),
    ],
)
def test_a_framing_field_the_header_parser_cannot_read_is_refused(
    exchange_twice: Any, lines: bytes
) -> None:
    # The email parser stops at the unreadable line: the fields after it are not seen,
    # and framing by what it saw would hand the caller chunk framing as the body.
    head = b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"2\r\n{}\r\n0\r\n\r\n"))
    _refused(first, server)


def test_a_head_with_an_unreadable_line_never_returns_its_connection(exchange_twice: Any) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nnot a header\r\nX-B: 2\r\n\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"{}"))
    _framed(first, server, b"{}", connections=2)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(b"Connection: keep-alive\r\nConnection: close\r\n", id="second-field"),
        pytest.param(b"Connection: keep-alive, Close\r\n", id="in-a-list"),
    ],
)
def test_a_connection_close_in_any_connection_field_is_honoured(
    exchange_twice: Any, lines: bytes
) -> None:
    # Connection is a list: its fields add up. Reading only the first kept a connection
    # the server was closing, and a request sent on it in that moment was lost.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + lines + b"\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"{}"))
    _framed(first, server, b"{}", connections=2)


# ---------------------------------------------------------------------------
# Interim (1xx) answers


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param(
            [b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"], id="103"
        ),
        pytest.param([b"HTTP/1.1 102 Processing\r\n\r\n"], id="102"),
        pytest.param(
            [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </b>\r\n\r\n"],
            id="100-then-103",
        ),
    ],
)
def test_interim_answers_are_skipped_for_the_final_one(
    exchange_twice: Any, interim: list[bytes]
) -> None:
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    first, _, server = exchange_twice(_first_then_second(*interim, final))
    assert isinstance(first, Response), first
    assert (first.status, first.body) == (200, b"{}")
    assert "link" not in first.headers
    assert server.connections == 1


def test_a_switching_protocols_answer_never_returns_its_connection(exchange_twice: Any) -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
    first, _, server = exchange_twice(_first_then_second(head, b"\x00\x01 other protocol"))
    assert isinstance(first, Response), first
    assert first.status == 101
    assert server.connections == 2


# ---------------------------------------------------------------------------
# Anything raised mid-exchange, even a BaseException, drops the connection


class _Interrupt(BaseException):
    """Stands in for KeyboardInterrupt / SystemExit raised inside the exchange."""


@pytest.mark.parametrize("where", ["head", "body"])
def test_a_base_exception_mid_exchange_drops_the_connection(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    armed = {"on": True}

    def once(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if armed["on"]:
                armed["on"] = False
                raise _Interrupt
            return real(*args)

        return call

    if where == "head":
        monkeypatch.setattr(_http1, "parse_head", once(_http1.parse_head))
    else:
        monkeypatch.setattr(_DeadlineHTTPResponse, "read", once(_DeadlineHTTPResponse.read))
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    server = RawServer(_first_then_second(head, b"{}"))
    transport = Urllib3Transport(timeout=2.0, max_retries=0)
    try:
        with pytest.raises(_Interrupt):
            transport.handle_request(Request("GET", server.origin + "/x"))
        assert transport.handle_request(Request("GET", server.origin + "/y")).body == b"second"
        assert server.connections == 2
        pool = transport._pool.get(("http", "127.0.0.1", server.port))
        assert pool.pool is not None and pool.pool.full()  # every slot given back
    finally:
        transport.close()
        server.close()


# ---------------------------------------------------------------------------
# A kept-alive connection the server drops between requests


def _answer_then_drop(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
    if request.target == "/first":
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        return True
    # Read the next request, then close without a byte of answer (an idle timeout
    # that raced it): the client cannot tell whether the request was processed.
    return False


@pytest.mark.parametrize(("method", "sent"), [("GET", 3), ("POST", 2)])
def test_a_dropped_kept_alive_connection_retries_only_idempotent_requests(
    method: str, sent: int
) -> None:
    server = RawServer(_answer_then_drop)
    slept: list[float] = []
    transport = Urllib3Transport(timeout=2.0, max_retries=1, sleep=slept.append)
    try:
        transport.handle_request(Request("GET", server.origin + "/first", retry_safe=True))
        request = Request(
            method,
            server.origin + "/again",
            body=b"{}" if method == "POST" else None,
            retry_safe=method == "GET",
        )
        with pytest.raises(TransportError, match="closed the connection without answering"):
            transport.handle_request(request)
    finally:
        transport.close()
        server.close()
    assert [r.method for r in server.requests][1:] == [method] * (sent - 1)
    assert server.requests[1].connection == 1  # it went out on the kept-alive connection


def test_a_post_after_the_server_closed_the_idle_connection_goes_out_once_on_a_new_one() -> None:
    closed = threading.Event()

    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        if request.target == "/first":
            sock.shutdown(socket.SHUT_RDWR)  # an idle timeout: the FIN is on its way
            closed.set()
            return False
        return True

    server = RawServer(handler)
    transport = Urllib3Transport(timeout=2.0, max_retries=1)
    try:
        transport.handle_request(Request("GET", server.origin + "/first", retry_safe=True))
        assert closed.wait(5)
        post = Request("POST", server.origin + "/refresh", body=b"{}")
        assert transport.handle_request(post).body == b"{}"
    finally:
        transport.close()
        server.close()
    assert [(r.method, r.connection) for r in server.requests] == [("GET", 1), ("POST", 2)]
