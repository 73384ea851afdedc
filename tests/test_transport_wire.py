"""The transport's own HTTP/1.1 framing against what urllib3 and http.client do.

``Urllib3Transport`` writes a prebuilt request head on the pooled connection and splits
well-formed response header lines itself (``_transport._exchange``, ``_http1``). These
tests hold both to the byte and to the value against the libraries they stand in for,
and check the unusual heads over a real socket.
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
from typing import Any, Optional

import pytest
import urllib3
from _servers import RawRequest, RawServer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from textstack_sdk._http import Request
from textstack_sdk._http1 import HeaderSet, parse_head, read_head_lines, request_head
from textstack_sdk._transport import Urllib3Transport, _target


class _Recorder:
    """A connected socket as far as urllib3's ``HTTPConnection.request`` can tell."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def settimeout(self, value: Optional[float]) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))


def _urllib3_wrote(
    url: str, host: str, port: int, method: str, fields: dict[str, str], body: Optional[bytes]
) -> bytes:
    tls = url.startswith("https")
    cls = urllib3.connection.HTTPSConnection if tls else urllib3.connection.HTTPConnection
    conn = cls(host, port)
    target = _target(url)[1]
    recorder = _Recorder()
    conn.sock = recorder  # type: ignore[assignment]
    conn.request(method, target, body=body, headers=fields)
    return b"".join(recorder.sent)


@pytest.mark.parametrize(
    ("method", "headers", "body"),
    [
        pytest.param("GET", (("Accept", "application/json"),), None, id="get-no-host"),
        pytest.param(
            "GET", (("Host", "site.example"), ("Authorization", "Bearer t")), None, id="get"
        ),
        pytest.param("POST", (("Host", "site.example"),), None, id="post-no-body"),
        pytest.param("DELETE", (("Host", "site.example"),), None, id="delete-no-body"),
        pytest.param("POST", (("Content-Type", "application/json"),), b'{"k":"v"}', id="post"),
        pytest.param("PUT", (("Content-Length", "3"),), b"abc", id="put-length-given"),
        pytest.param("POST", (("Content-Length", "0"),), None, id="post-length-given-no-body"),
        pytest.param("POST", (("Transfer-Encoding", "chunked"),), b"abc", id="post-chunked"),
        pytest.param("POST", (("Transfer-Encoding", "chunked"),), b"", id="post-chunked-empty"),
        pytest.param("POST", (("Transfer-Encoding", "chunked"),), None, id="post-chunked-no-body"),
        pytest.param("GET", (("Transfer-Encoding", "chunked"),), None, id="get-chunked-no-body"),
        pytest.param(
            "PUT",
            (("Content-Length", "3"), ("Transfer-Encoding", "chunked")),
            b"abc",
            id="put-length-and-chunked",
        ),
        pytest.param(
            "POST",
            (("Transfer-Encoding", "chunked"), ("Content-Length", "0")),
            None,
            id="post-chunked-and-length-no-body",
        ),
        pytest.param("PATCH", (("User-Agent", "mine/1"),), b"", id="patch-empty-body"),
    ],
)
@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://127.0.0.1:8080/a/b?c=d%20e", "127.0.0.1", 8080),
        ("http://localhost/x", "localhost", 80),
        ("http://[::1]:9/y", "::1", 9),
        ("https://books.example/z", "books.example", 443),
    ],
)
def test_request_head_is_byte_for_byte_what_urllib3_writes(
    method: str,
    headers: tuple[tuple[str, str], ...],
    body: Optional[bytes],
    url: str,
    host: str,
    port: int,
) -> None:
    transport = Urllib3Transport()
    try:
        fields = transport._headers(Request(method, url, headers, body))
    finally:
        transport.close()
    origin, target = _target(url)
    ours = request_head(method, target, origin, HeaderSet(fields), body)
    assert ours == _urllib3_wrote(url, host, port, method, fields, body)


def _stdlib(lines: list[bytes]) -> http.client.HTTPMessage:
    return http.client.parse_headers(io.BytesIO(b"".join(lines)))  # type: ignore[arg-type]


_NAMES = ["Content-Length", "content-type", "Connection", "Transfer-Encoding", "X-A", "x-a"]
_line_text = st.one_of(
    st.sampled_from(
        [
            "Content-Type: application/json\r\n",
            "X-A: 1\r\n",
            "x-a:2\r\n",
            "X-A:\t \tspaced  \r\n",
            "Connection: close\r\n",
            "Content-Length: 5\r\n",
            " folded continuation\r\n",
            "\tfolded by tab\r\n",
            "no colon here\r\n",
            "Bad Name: v\r\n",
            ": empty name\r\n",
            "X-Bare-LF: v\n",
            "X-CR: a\rb\r\n",
            "From someone\r\n",
            "X-Empty:\r\n",
            "X-Latin: caf\xe9\r\n",
        ]
    ),
    st.builds(
        lambda name, value: f"{name}:{value}\r\n",
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8),
        # Any Latin-1 but LF, which ends a line before the parser sees it.
        st.text(
            st.characters(min_codepoint=0x00, max_codepoint=0xFF, blacklist_characters="\n"),
            max_size=12,
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line_text, max_size=8), st.sampled_from(["\r\n", "\n", ""]))
@example(["X-Fold: a\r\n", " b\r\n"], "\r\n")
@example(["a:b: c\r\n", "X-VT: a\x0bb\r\n"], "\r\n")
@example(["Transfer-Encoding: chunked\r\n", "transfer-encoding: gzip\r\n"], "\r\n")
def test_response_head_reads_as_the_email_parser_reads_it(lines: list[str], end: str) -> None:
    raw = [line.encode("latin-1") for line in lines] + [end.encode()]
    ours = parse_head(list(raw))
    theirs = _stdlib(raw)
    assert ours.items() == theirs.items()
    for name in _NAMES:
        assert ours.get(name) == theirs.get(name)
        assert (name in ours) == (name in theirs)
        assert ours.get_all(name) == theirs.get_all(name)


def test_response_head_lines_keep_http_clients_limits() -> None:
    too_many = b"X-A: 1\r\n" * 101 + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        read_head_lines(io.BytesIO(too_many))
    with pytest.raises(http.client.LineTooLong):
        read_head_lines(io.BytesIO(b"X-A: " + b"a" * 70000 + b"\r\n\r\n"))
    assert read_head_lines(io.BytesIO(b"X-A: 1\r\n\r\nbody")) == [b"X-A: 1\r\n", b"\r\n"]


def _answer(head: bytes, body: bytes = b"{}") -> Any:
    def handler(request: RawRequest, sock: socket.socket, stop: threading.Event) -> bool:
        sock.sendall(head + body)
        return True

    return handler


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
            {"content-length": "2", "x-a": "2"},
            id="last-value-wins",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Fold: a\r\n  b\r\n\r\n",
            {"content-length": "2", "x-fold": "a b"},
            id="folded",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Tab:\tv \r\n\r\n",
            {"content-length": "2", "x-tab": "v "},
            id="value-spacing",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\nX-Skip: 1\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            {"content-length": "2"},
            id="after-100-continue",
        ),
    ],
)
def test_response_headers_over_the_wire(head: bytes, expected: dict[str, str]) -> None:
    server = RawServer(_answer(head))
    transport = Urllib3Transport(timeout=5.0)
    try:
        for _ in range(2):  # the second on the kept-alive connection
            response = transport.handle_request(Request("GET", server.origin + "/x"))
            assert (response.status, response.body) == (200, b"{}")
            assert dict(response.headers) == expected
    finally:
        transport.close()
        server.close()


@pytest.mark.parametrize(
    ("method", "head", "body", "expected"),
    [
        pytest.param(
            "HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"", b"", id="head-has-no-body"
        ),
        pytest.param(
            "GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", b"", b"", id="204"
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 2\r\n\r\n",
            b"{}",
            b"{}",
            id="identity-encoding",
        ),
    ],
)
def test_body_framing_on_a_kept_alive_connection(
    method: str, head: bytes, body: bytes, expected: bytes
) -> None:
    # Each answer twice on one connection: a framing read wrong would leave bytes behind
    # (or wait for bytes that never come) and break the second exchange.
    server = RawServer(_answer(head, body))
    transport = Urllib3Transport(timeout=2.0)
    try:
        for _ in range(2):
            response = transport.handle_request(Request(method, server.origin + "/x"))
            assert response.body == expected
    finally:
        transport.close()
        server.close()
    assert len(server.requests) == 2
