"""HTTP/1.1 framing for the transport: the request head it writes, the response head it reads.

Pure functions over bytes (``read_head_lines`` takes any buffered reader). Each stands in
for what urllib3 or http.client would do for the same request or response, and
tests/test_transport_wire.py holds them to it byte for byte and value for value:
``request_head`` writes what urllib3's ``HTTPConnection.request`` writes; ``parse_head``
gives what ``http.client.parse_headers`` gives, splitting well-formed lines itself and
handing anything unusual to the email parser. One departs from http.client on purpose:
``framing`` decides where a body ends by RFC 9112 section 6.3 (tests/test_transport_review.py),
refusing what http.client would read one way and another reader of the stream another.
"""

from __future__ import annotations

import functools
import http.client
import io
import re
from typing import Optional

from ._errors import ConfigurationError

__all__ = [
    "BadFraming",
    "HeadMessage",
    "HeaderSet",
    "framing",
    "header_dict",
    "header_pairs",
    "parse_head",
    "read_head_lines",
    "request_head",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_MAX_HEAD_LINE = 65536
_MAX_HEADERS = 100
# A header line the email parser reads as name and value and nothing else: a name of
# what it accepts (printable, no ':' or space), the value's leading blanks dropped, no
# character it could take for a line break (CR, LF, VT, FF, FS, GS, RS, NEL) or other
# control character in the value, CRLF at the end.
_HEAD_LINE = re.compile(rb"([!-9;-~]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f\x85]*)\r\n")


def read_head_lines(fp: io.BufferedIOBase) -> list[bytes]:
    """The header lines up to and including the blank line, with http.client's limits."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(_MAX_HEAD_LINE + 1)
        if len(line) > _MAX_HEAD_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


class HeadMessage(http.client.HTTPMessage):
    """The headers of one response, split by ``parse_head``. One thread at a time."""

    def items(self) -> list[tuple[str, str]]:
        return list(self._headers)  # type: ignore[attr-defined]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get(self, name: str, failobj: object = None) -> object:  # type: ignore[override]
        # Message.get runs each value through the policy, a no-op for header values
        # decoded from Latin-1 (no surrogates): the first match, as Message.get.
        lowered = name.lower()
        for key, value in self._headers:  # type: ignore[attr-defined]
            if key.lower() == lowered:
                return value
        return failobj


def parse_head(lines: list[bytes]) -> http.client.HTTPMessage:
    """The header lines as an ``HTTPMessage``, as ``http.client.parse_headers`` gives it.

    A line is split here only when the email parser would read it the same way
    (``_HEAD_LINE``). Anything else (folded lines, a line with no colon, bare LF or CR,
    control characters) sends the whole head to the email parser, so unusual heads are
    read exactly as before.
    """
    pairs: list[tuple[str, str]] = []
    match = _HEAD_LINE.fullmatch
    for line in lines[:-1]:
        split = match(line)
        if split is None:
            return http.client.parse_headers(io.BytesIO(b"".join(lines)))
        name, value = split.groups()
        pairs.append((name.decode("iso-8859-1"), value.decode("iso-8859-1")))
    message = HeadMessage()
    message._headers = pairs  # type: ignore[attr-defined]
    return message


# urllib3's framing rule: these methods send no Content-Length when they have no body.
_METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD", "DELETE", "TRACE", "OPTIONS", "CONNECT"})
_OBSOLETE_FOLD = re.compile(r"(?:(?<![ \t])[ \t]+)?\r\n[ \t]+")


class HeaderSet:
    """Validated request headers and their encoded lines. Immutable once built."""

    __slots__ = ("chunked", "fields", "has_authorization", "has_host", "length_given", "lines")

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        names = {name.lower() for name in fields}
        self.has_authorization = "authorization" in names
        self.has_host = "host" in names
        # urllib3's rule: a Content-Length the caller gave wins over a Transfer-Encoding.
        self.chunked = "transfer-encoding" in names and "content-length" not in names
        self.length_given = "content-length" in names or self.chunked
        # Names and values passed the transport's checks (token names, printable ASCII
        # values), stricter than http.client's putheader: encoding them once is safe.
        self.lines = b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in fields.items()
        )


@functools.lru_cache(maxsize=256)
def _request_line(method: str, target: str, origin: tuple[str, str, int]) -> bytes:
    """The request line, plus ``Host`` from the origin for requests that carry none."""
    if not _TOKEN.fullmatch(method):
        raise ConfigurationError("request method must be an HTTP token")
    try:
        line = f"{method} {target} HTTP/1.1\r\n".encode("ascii")
        scheme, host, port = origin
        host_bytes = host.encode("ascii")
    except UnicodeEncodeError:
        raise ConfigurationError("request target must be ASCII") from None
    if port != _DEFAULT_PORTS.get(scheme):
        host_bytes += b":%d" % port
    return line + b"Host: " + host_bytes + b"\r\n"


def request_head(
    method: str,
    target: str,
    origin: tuple[str, str, int],
    headers: HeaderSet,
    body: Optional[bytes],
) -> bytes:
    """The request as sent: what urllib3's ``HTTPConnection.request`` writes, prebuilt."""
    line = _request_line(method, target, origin)
    if headers.has_host:
        line = line[: line.index(b"\r\n") + 2]
    if body is None:
        if headers.chunked:
            # Chunked framing announced: the last-chunk still ends the (empty) body, or
            # the server waits for it.
            return line + headers.lines + b"\r\n0\r\n\r\n"
        if headers.length_given or method.upper() in _METHODS_WITHOUT_BODY:
            framing = b""
        else:
            framing = b"Content-Length: 0\r\n"
        return line + framing + headers.lines + b"\r\n"
    if headers.chunked:
        # The caller asked for chunked framing: one chunk, then the last-chunk.
        payload = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        return line + headers.lines + b"\r\n" + payload
    framing = b"" if headers.length_given else b"Content-Length: %d\r\n" % len(body)
    return line + framing + headers.lines + b"\r\n" + bytes(body)


def header_pairs(message: http.client.HTTPMessage) -> list[tuple[str, str]]:
    """The response's header fields in order, as urllib3 hands them on."""
    if type(message) is HeadMessage:
        return message._headers  # type: ignore[attr-defined,no-any-return]
    # Folded values (only the email parser yields them) unfolded, as urllib3 does.
    return [
        (name, _OBSOLETE_FOLD.sub(" ", value) if "\r\n" in value else value)
        for name, value in message.items()
    ]


class BadFraming(http.client.HTTPException):
    """The response's Content-Length or Transfer-Encoding leaves its end unknown."""


_DIGITS = re.compile(r"[0-9]{1,30}")
_FRAMING_FIELD = re.compile(r"^[ \t]*(?:content-length|transfer-encoding)[ \t]*:", re.I | re.M)


def framing(
    message: http.client.HTTPMessage, status: int, method: Optional[str], version: int
) -> tuple[bool, Optional[int], bool]:
    """(chunked, length, close) of a response body, by RFC 9112 section 6.3.

    ``length`` None with ``chunked`` False means the body runs to the end of the
    connection. ``close`` says the connection must not carry another request even when
    the body ends on its own: its framing was ambiguous, or a Connection field said
    ``close`` (http.client reads only the first Connection field). Content-Length must
    be digits (a list of one value repeated is that value); anything else is
    ``BadFraming``, as the RFC asks of a user agent, instead of http.client's reading to
    the end of the connection or taking the first of two lengths, either of which hands
    the caller bytes another reader of the stream would frame differently.
    """
    no_reuse = False
    if type(message) is not HeadMessage:
        # The email parser stops at a line it cannot read as a field and keeps the
        # rest as a payload. A framing field there would go unseen (a lenient peer
        # may frame by it): refused. Other unread lines still leave the stream
        # untrusted after this answer.
        rest = message.get_payload()
        no_reuse = bool(rest)
        if isinstance(rest, str) and _FRAMING_FIELD.search(rest):
            raise BadFraming("a framing field in an unreadable header block")
    codings: Optional[str] = None
    lengths: list[str] = []
    for name, value in header_pairs(message):
        lowered = name.lower()
        if lowered == "content-length":
            lengths.append(value)
        elif lowered == "transfer-encoding":
            codings = value if codings is None else f"{codings},{value}"
        elif lowered == "connection" and "close" in value.lower():
            no_reuse = True
    if status < 200 or status in (204, 304) or method == "HEAD":
        # No body, whatever the fields say. A 204 must carry neither field (a HEAD
        # answer or a 304 may): one that announces a body may well send it, and the
        # next request on the connection would read it as its answer.
        announced = status == 204 and (
            codings is not None or any(v.strip(" \t") != "0" for v in lengths)
        )
        return False, 0, no_reuse or announced or status == 101
    if codings is not None:
        # Transfer-Encoding overrides Content-Length; chunked counts only as the last
        # coding, and an HTTP/1.0 answer with codings has faulty framing.
        last = codings.rsplit(",", 1)[-1].strip(" \t").lower()
        if last == "chunked":
            return True, None, no_reuse or bool(lengths) or version == 10
        # Otherwise RFC 9112 reads to the close. Old servers send "identity" with a
        # Content-Length on a kept-alive connection: the length still ends the body
        # (reading to a close that never comes would wait out the deadline), but the
        # connection is not trusted with another request.
        return False, _content_length(lengths) if lengths else None, True
    if not lengths:
        return False, None, True
    return False, _content_length(lengths), no_reuse


def _content_length(values: list[str]) -> int:
    """The body length said by the Content-Length field values, or ``BadFraming``."""
    if len(values) == 1:  # the usual answer: one plain number
        value = values[0].strip(" \t")
        if _DIGITS.fullmatch(value):
            return int(value)
    parts = {part.strip(" \t") for value in values for part in value.split(",")}
    if len(parts) != 1:
        raise BadFraming("Content-Length values differ")
    value = parts.pop()
    if not _DIGITS.fullmatch(value):
        raise BadFraming("Content-Length is not a number")
    return int(value)


def header_dict(message: http.client.HTTPMessage) -> dict[str, str]:
    """Header names lower-cased, the last value winning."""
    return {name.lower(): value for name, value in header_pairs(message)}
