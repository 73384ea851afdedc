"""The production Transport: urllib3 behind the ``_http`` seam.

This is the only module that imports urllib3. urllib3's own retries and redirects are
off; the small policies that replace them are pure functions here (``check_url``,
``retry_delay``, ``redirect_target``) so they can be tested
without sockets. Every urllib3 / socket / ssl / http.client failure becomes a
``TransportError`` in one place, ``_map_error``.

Deadlines: besides the connect timeout, every request has an overall deadline. It is
enforced below http.client, at each ``recv``, so a server that drips its status line,
headers, chunk framing or body one byte at a time is cut off at the deadline just like
one that never answers. Plain-HTTP connections on Linux are blocking sockets whose
timeouts the kernel enforces (``_KernelTimeoutSocket``, which also checks the deadline
at each recv): no ``poll()`` before every send and receive, as CPython does for a socket
with a timeout. TLS connections keep Python's timeouts, read through ``_DeadlineReader``.

Per request, nothing is parsed or built that was the same last time: one connection
pool per origin in a dict (``_Pools``), accepted URLs and their split cached, validated
header sets cached with their encoded lines (``_h1.HeaderSet``). urllib3 provides the
pools, connections, TLS set-up and verification and the reader for chunked or encoded
bodies; a request itself runs on the pooled connection's own calls (``_exchange``):
the prebuilt head in one ``sendall``, http.client's response with its header lines
split without the email parser (``_h1.parse_head``), a known-length body in one read.

Known limit: DNS resolution (``getaddrinfo``) blocks without a timeout; the deadline is
checked again as soon as it returns.
"""

from __future__ import annotations

import errno
import functools
import http.client
import io
import ipaddress
import logging
import math
import os
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Callable, Optional, cast
from urllib.parse import urljoin

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    EmptyPoolError,
    InvalidChunkLength,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError as Urllib3ProtocolError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util import Retry, Timeout, parse_url
from urllib3.util.ssl_match_hostname import CertificateError

from . import _http1 as _h1
from ._errors import ConfigurationError, TransportError
from ._http import Request, Response, parse_retry_after
from ._version import __version__

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["Urllib3Transport", "check_url", "redirect_target", "retry_delay"]

_log = logging.getLogger("textstack_sdk.http")

_MIB = 1024 * 1024
_MAX_TIMEOUT = 600.0
_MAX_BACKOFF_DELAY = 10.0
_READ_CHUNK = 64 * 1024
_HEADER_CACHE_SIZE = 32
_DEADLINE_TOLERANCE = 0.05
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers that name or authenticate one origin; never carried to another.
_ORIGIN_BOUND_HEADERS = frozenset({"host", "authorization", "cookie", "proxy-authorization"})

_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://([^/\\?#]*)")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Printable ASCII and tab only: http.client would put an illegal value, or a value it
# cannot encode, into its exception text, and the value may be a bearer token.
_BAD_HEADER_VALUE = re.compile(r"[^\t\x20-\x7e]")

_DEFAULT_USER_AGENT = (
    f"textstack-sdk/{__version__} "
    f"Python/{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
)


# ---------------------------------------------------------------------------
# Pure policy


def check_url(url: str) -> None:
    """Refuses URLs the SDK must not talk to.

    Allowed: ``https://`` to any host, and ``http://`` only to a loopback host
    (127.0.0.0/8, ::1, ``localhost``) for local servers. Userinfo (``user:pw@``) is
    refused because credentials in URLs end up in logs; so are whitespace and control
    characters.

    Args:
        url: An absolute URL.

    Raises:
        ConfigurationError: The URL is refused; the message never repeats userinfo.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError("URL must be a non-empty string")
    if _UNSAFE_URL_CHARS.search(url):
        raise ConfigurationError(
            "URL must not contain whitespace, control characters or backslashes"
        )
    authority = _AUTHORITY.match(url)
    if authority is None:
        raise ConfigurationError("URL must be absolute (https://host/...)")
    if "@" in authority.group(1):
        raise ConfigurationError("URL must not contain credentials (user:password@host)")
    _check_origin(authority.group(0))


# The verdict depends only on scheme://authority, and a client talks to very few of those:
# caching keeps URL parsing and ipaddress off the per-request path. Refusals raise, so
# only accepted origins are cached.
@functools.lru_cache(maxsize=64)
def _check_origin(origin: str) -> None:
    try:
        parsed = parse_url(origin)
    except LocationParseError as exc:
        raise ConfigurationError("URL cannot be parsed") from exc
    scheme = (parsed.scheme or "").lower()
    host = parsed.host or ""
    if scheme not in _DEFAULT_PORTS:
        raise ConfigurationError(f"URL scheme {scheme!r} is not supported; use https")
    if not host:
        raise ConfigurationError("URL has no host")
    if scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"plain http:// is only allowed to a loopback host, not {host!r}; use https"
        )


# A client sends a handful of distinct URLs many times each; an accepted one needs no
# second look (refusals raise, so only accepted URLs are remembered).
_check_url_once = functools.lru_cache(maxsize=256)(check_url)


def _is_loopback(host: str) -> bool:
    name = host.lower()
    if name == "localhost":
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _origin(url: str) -> tuple[str, str, int]:
    parsed = parse_url(url)
    scheme = (parsed.scheme or "").lower()
    return scheme, (parsed.host or "").lower(), parsed.port or _DEFAULT_PORTS.get(scheme, 0)


def backoff_delay(attempt: int, base: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random.

    Args:
        attempt: 0 for the first retry.
        base: The delay before the first retry, before jitter.
        rand: A source of floats in [0, 1), for tests.

    Returns:
        Seconds, at most ``_MAX_BACKOFF_DELAY``.
    """
    ceiling = min(_MAX_BACKOFF_DELAY, base * float(2 ** min(attempt, 16)))
    return ceiling / 2 + ceiling / 2 * rand()


def retry_delay(
    status: int,
    retry_after: Optional[str],
    *,
    attempt: int,
    remaining: float,
    now: float,
    backoff: float,
    max_retry_after: float,
    rand: Callable[[], float] = random.random,
) -> Optional[float]:
    """Decides whether an idempotent request that got ``status`` is sent again.

    502/503/504 are retried after ``Retry-After`` when given, else after a backoff.
    429 is retried only when the server says when (``Retry-After``): without it the
    caller's own pacing decides. A delay is capped by ``max_retry_after``; if it still
    does not fit in the remaining deadline, the answer goes back to the caller at once
    rather than sleeping into a timeout.

    Args:
        status: The response status.
        retry_after: The ``Retry-After`` header value, or None.
        attempt: How many retries were already made.
        remaining: Seconds left before the overall deadline.
        now: Wall-clock time for HTTP-dates.
        backoff: The backoff base.
        max_retry_after: The longest wait honoured.
        rand: Jitter source.

    Returns:
        Seconds to sleep before retrying, or None to return the response as is.
    """
    if status not in _RETRY_STATUSES:
        return None
    delay = parse_retry_after(retry_after, now)
    if delay is None:
        if status == 429:
            return None
        delay = backoff_delay(attempt, backoff, rand)
    delay = min(delay, max_retry_after)
    return delay if delay < remaining else None


def redirect_target(
    *,
    method: str,
    has_body: bool,
    has_authorization: bool,
    url: str,
    status: int,
    location: Optional[str],
) -> Optional[str]:
    """Decides whether a 3xx answer is followed, and where to.

    Followed only for GET/HEAD without a body; never from https to http; never to
    another origin (scheme, host, port) when the request carries ``Authorization``;
    never to a URL ``check_url`` refuses. A relative ``Location`` is resolved against
    ``url``.

    Args:
        method: The request method.
        has_body: Whether the request carries a body.
        has_authorization: Whether the request carries an Authorization header.
        url: The URL that answered.
        status: The answer's status.
        location: Its ``Location`` header, or None.

    Returns:
        The absolute URL to request next, or None to return the 3xx answer as is.
    """
    if status not in _REDIRECT_STATUSES or not location:
        return None
    if method not in ("GET", "HEAD") or has_body:
        return None
    target = urljoin(url, location.strip())
    try:
        check_url(target)
        here, there = _origin(url), _origin(target)
    except (ConfigurationError, LocationParseError):
        return None
    if here[0] == "https" and there[0] != "https":
        return None
    if here != there and has_authorization:
        return None
    return target


# ---------------------------------------------------------------------------
# The overall deadline, enforced at every recv

_deadline_local = threading.local()


class _DeadlineReader(io.RawIOBase):
    """A socket reader that will not wait past a monotonic deadline. One thread at a time."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        # makefile() takes a reference on the socket that close() gives back, so the
        # socket's descriptor is released exactly as with http.client's own reader.
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline
        self.saw_eof = False

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def readinto(self, buffer: WriteableBuffer) -> Optional[int]:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("overall deadline exceeded")
        current = self._sock.gettimeout()
        # The socket starts at the read timeout, a hair above the time left: the
        # tolerance spares a syscall per response and overshoots by at most 50 ms.
        if current is None or remaining < current - _DEADLINE_TOLERANCE:
            self._sock.settimeout(remaining)
        count = self._raw.readinto(buffer)
        if count == 0:
            self.saw_eof = True
        return count

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """Hands http.client a deadline-bound reader instead of the socket's own file."""

    __slots__ = ("_deadline", "_sock", "reader")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self.reader: Optional[_DeadlineReader] = None

    def makefile(self, mode: str) -> io.BufferedReader:
        self.reader = _DeadlineReader(self._sock, self._deadline)
        return io.BufferedReader(self.reader)


class _HeadCutShort(http.client.HTTPException):
    """The connection ended before the blank line that closes the response headers."""


class _DeadlineHTTPResponse(http.client.HTTPResponse):
    """http.client's response reading through ``_DeadlineReader``. One thread at a time."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: Optional[str] = None,
        url: Optional[str] = None,
    ) -> None:
        deadline: Optional[float] = getattr(_deadline_local, "value", None)
        self._deadline_sock: Optional[_DeadlineSocket] = None
        self._kernel_sock: Optional[_KernelTimeoutSocket] = None
        if deadline is not None:
            if isinstance(sock, _KernelTimeoutSocket):
                # It checks the deadline at each recv itself: no reader in between.
                sock.arm(deadline)
                self._kernel_sock = sock
            else:
                self._deadline_sock = _DeadlineSocket(sock, deadline)
                sock = cast(socket.socket, self._deadline_sock)
        super().__init__(sock, 0, method, url)

    def begin(self) -> None:
        # http.client's begin() (identical in CPython 3.9-3.13) but for the headers:
        # well-formed header lines are split here, and only a head with anything
        # unusual in it goes to the email parser, which costs ~20 µs per response.
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            # Interim answers (100 Continue, 102, 103 Early Hints) come before the real
            # one; returned as final, they would leave it on the connection for the next
            # request to read. 101 ends HTTP on the connection: final, never reused.
            if not 100 <= status < 200 or status == http.client.SWITCHING_PROTOCOLS:
                break
            _h1.read_head_lines(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _h1.parse_head(_h1.read_head_lines(self.fp))
        # http.client takes end-of-stream for the end of the headers; with no
        # Content-Length yet, a head cut short would pass for a complete, empty answer.
        # A complete head never needs a read that meets EOF, so one that did is cut.
        kernel = self._kernel_sock
        holder = self._deadline_sock
        if (kernel is not None and kernel.saw_eof) or (
            holder is not None and holder.reader is not None and holder.reader.saw_eof
        ):
            raise _HeadCutShort("response headers cut short")
        # Framing by RFC 9112 rather than http.client's first-value reading (see framing).
        self.chunked, self.length, close = _h1.framing(self.msg, status, self._method, self.version)
        self.chunk_left = None
        self.will_close = close or self._check_close() or (not self.chunked and self.length is None)


_KERNEL_TIMEOUTS = hasattr(socket, "SO_RCVTIMEO") and sys.platform.startswith("linux")
# SO_RCVTIMEO of zero means "wait forever": a timeout is never set below this.
_MIN_KERNEL_TIMEOUT = 0.001
_KERNEL_TIMEOUT_SLACK = 0.001


class _KernelTimeoutSocket(socket.socket):
    """A blocking socket whose timeouts the kernel enforces. One thread at a time.

    ``SO_RCVTIMEO`` and ``SO_SNDTIMEO`` carry the timeout. CPython runs a ``poll()``
    before every send and receive on a socket with a timeout; a blocking socket with
    kernel timeouts needs none, and a ``settimeout`` to the value already set costs no
    system call either. A send or receive that runs out of time fails with EAGAIN,
    raised here as ``socket.timeout`` exactly as a Python-level timeout would be. Used
    for plain-HTTP connections once they are connected (the connect itself keeps
    Python's timeout); TLS sockets keep Python-level timeouts, because ``ssl`` retries a
    kernel timeout as a want-read and the deadline would not hold.
    """

    _kernel_timeout: Optional[float] = None
    # The overall deadline of the response being read (``arm``), checked at each recv
    # as ``_DeadlineReader`` does for TLS sockets; and whether a recv met end-of-stream.
    _deadline: Optional[float] = None
    saw_eof = False

    def arm(self, deadline: float) -> None:
        """Bounds every receive from now on by the monotonic ``deadline``."""
        self._deadline = deadline
        self.saw_eof = False

    @classmethod
    def adopt(cls, sock: socket.socket) -> socket.socket:
        """The same connected descriptor as a kernel-timeout socket (``sock`` is detached)."""
        timeout = sock.gettimeout()
        adopted = cls(sock.family, sock.type, sock.proto, sock.detach())
        socket.socket.settimeout(adopted, None)  # blocking: no poll() before each call
        adopted.settimeout(timeout)
        return adopted

    def settimeout(self, value: Optional[float]) -> None:
        current = self._kernel_timeout
        if value == current or (
            value is not None
            and current is not None
            and abs(value - current) <= _KERNEL_TIMEOUT_SLACK
        ):
            # urllib3 sets the time left before each request; a millisecond either way
            # is not worth two system calls.
            return
        self._set_kernel(socket.SO_RCVTIMEO, value)
        self._set_kernel(socket.SO_SNDTIMEO, value)
        self._kernel_timeout = value

    def gettimeout(self) -> Optional[float]:
        return self._kernel_timeout

    def _before_recv(self) -> None:
        deadline = self._deadline
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("overall deadline exceeded")
            current = self._kernel_timeout
            # As in _DeadlineReader: lowered only when the time left is clearly shorter.
            if current is None or remaining < current - _DEADLINE_TOLERANCE:
                self.settimeout(remaining)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        if self._deadline is not None:
            self._before_recv()
        try:
            count = super().recv_into(buffer, nbytes, flags)
        except BlockingIOError:
            raise socket.timeout("timed out") from None
        if count == 0:
            self.saw_eof = True
        return count

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._deadline is not None:
            self._before_recv()
        try:
            data = super().recv(bufsize, flags)
        except BlockingIOError:
            raise socket.timeout("timed out") from None
        if not data:
            self.saw_eof = True
        return data

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except BlockingIOError:
            raise socket.timeout("timed out") from None

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        # As CPython's sendall with a timeout: the timeout bounds the whole call, not
        # each send(), so a server that reads a trickle cannot stretch it.
        timeout = self._kernel_timeout
        end = None if timeout is None else time.monotonic() + timeout
        try:
            sent = super().send(data, flags)
        except BlockingIOError:
            raise socket.timeout("timed out") from None
        view = memoryview(data)
        total = view.nbytes
        if sent == total:  # the usual case: a request fits in the socket buffer
            return
        view = view.cast("B")
        try:
            while sent < total:
                if end is not None:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise socket.timeout("timed out")
                    self._set_kernel(socket.SO_SNDTIMEO, left)
                try:
                    sent += super().send(view[sent:], flags)
                except BlockingIOError:
                    raise socket.timeout("timed out") from None
        finally:
            if timeout is not None:
                self._set_kernel(socket.SO_SNDTIMEO, timeout)

    def _set_kernel(self, option: int, value: Optional[float]) -> None:
        if value is None:
            seconds, micros = 0, 0  # blocking without limit
        else:
            whole = max(float(value), _MIN_KERNEL_TIMEOUT)
            seconds, micros = int(whole), int(whole % 1 * 1e6)
        self.setsockopt(socket.SOL_SOCKET, option, struct.pack("@ll", seconds, micros))


class _HTTPConnection(HTTPConnection):
    """urllib3's connection with deadline-bound reads. One thread at a time."""

    response_class = _DeadlineHTTPResponse
    # A process-wide ``HTTPConnection.debuglevel = 1`` would print our headers to stdout.
    debuglevel = 0

    # Class-level so tests can run the same exchanges through ``_DeadlineReader``.
    kernel_timeouts = _KERNEL_TIMEOUTS

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        return _KernelTimeoutSocket.adopt(sock) if self.kernel_timeouts else sock


class _HTTPSConnection(HTTPSConnection):
    """urllib3's TLS connection with deadline-bound reads. One thread at a time."""

    response_class = _DeadlineHTTPResponse
    debuglevel = 0


class _HTTPPool(HTTPConnectionPool):
    """Thread-safe connection pool for one plain-HTTP host, using ``_HTTPConnection``."""

    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    """Thread-safe connection pool for one HTTPS host, using ``_HTTPSConnection``."""

    ConnectionCls = _HTTPSConnection


_MAX_POOLS = 10


@functools.lru_cache(maxsize=256)
def _target(url: str) -> tuple[tuple[str, str, int], str]:
    """((scheme, host, port), request target) of an absolute URL, as PoolManager splits it."""
    parsed = parse_url(url)
    scheme = (parsed.scheme or "http").lower()
    port = parsed.port or _DEFAULT_PORTS.get(scheme, 80)
    return (scheme, (parsed.host or "").lower(), port), parsed.request_uri


class _Pools:
    """Thread-safe: one urllib3 connection pool per origin, looked up by a plain dict.

    What ``PoolManager.urlopen`` does per request (parse the URL, build and normalise a
    pool key, an LRU lookup under a lock) happens once per distinct URL and origin here;
    the pools themselves are created by a PoolManager, so they are configured exactly as
    its own would be. At most ``_MAX_POOLS`` origins are kept; the oldest is closed.
    """

    def __init__(self, manager: urllib3.PoolManager) -> None:
        self._manager = manager
        self._by_origin: dict[tuple[str, str, int], HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def get(self, origin: tuple[str, str, int]) -> HTTPConnectionPool:
        pool = self._by_origin.get(origin)
        if pool is not None:
            return pool
        with self._lock:
            pool = self._by_origin.get(origin)
            if pool is None:
                if len(self._by_origin) >= _MAX_POOLS:
                    oldest = next(iter(self._by_origin))
                    self._by_origin.pop(oldest).close()
                pool = self._manager._new_pool(*origin)
                self._by_origin[origin] = pool
            return pool

    def clear(self) -> None:
        """Closes every pool (idle connections now; connections in use when released)."""
        with self._lock:
            pools = list(self._by_origin.values())
            self._by_origin.clear()
        for pool in pools:
            pool.close()


def _exchange(
    pool: HTTPConnectionPool,
    target: str,
    head: bytes,
    method: str,
    timeouts: tuple[float, float],
) -> tuple[HTTPConnection, http.client.HTTPResponse]:
    """Sends ``head`` on a pooled connection and reads the response's status and headers.

    What ``HTTPConnectionPool.urlopen`` does for one request without retries, redirects
    or a proxy, on the connection's own calls: the same connection checkout (with its
    check for a connection the server dropped), the same TLS set-up and verification
    (``_validate_conn``), the same timeouts, and failures raised as urlopen raises them
    (a timeout reading the answer as ``ReadTimeoutError``, TLS errors as ``SSLError``,
    other socket and protocol errors as ``ProtocolError``), so ``_map_error`` and the
    retry rules see what they always saw. Skipped: urllib3's request building (the
    head is prebuilt from validated headers) and its response object (the body is read
    from http.client's, or through urllib3's reader when framing or encoding need it).
    The caller puts the connection back once the body is read.
    """
    connect_timeout, read_timeout = timeouts
    conn = cast(HTTPConnection, pool._get_conn())
    resp: Optional[http.client.HTTPResponse] = None
    try:
        conn.timeout = connect_timeout
        try:
            pool._validate_conn(conn)
        except (socket.timeout, ssl.SSLError) as exc:
            pool._raise_timeout(err=exc, url=target, timeout_value=connect_timeout)
            raise
        if conn.sock is None:
            conn.connect()
        sock = conn.sock
        assert sock is not None
        sock.settimeout(connect_timeout)
        try:
            sock.sendall(head)
        except BrokenPipeError:
            pass  # the server may have answered before closing: read what it said
        except OSError as exc:
            if exc.errno not in (errno.EPROTOTYPE, errno.ECONNRESET):
                raise
        conn.timeout = read_timeout
        try:
            sock.settimeout(read_timeout)
            resp = conn.response_class(sock, method=method)
            try:
                resp.begin()
            except ConnectionError:
                conn.close()
                raise
        except (ssl.SSLError, OSError) as exc:
            pool._raise_timeout(err=exc, url=target, timeout_value=read_timeout)
            raise
        if resp.will_close:
            conn.close()  # the response keeps its own reference to the socket
        return conn, resp
    except BaseException as exc:
        if resp is not None:
            resp.close()
        conn.close()
        pool._put_conn(conn)
        if isinstance(exc, (ssl.SSLError, CertificateError)):
            raise Urllib3SSLError(exc) from exc
        if isinstance(exc, (OSError, http.client.HTTPException)):
            raise Urllib3ProtocolError("Connection aborted.", exc) from exc
        raise


# ---------------------------------------------------------------------------
# Error mapping: the one place foreign exceptions become ours

_NETWORK_ERRORS = (Urllib3Error, OSError, http.client.HTTPException)


class _BodyTooLarge(Exception):
    """Internal: the body passed max_response_bytes."""

    def __init__(self, size: Optional[int]) -> None:
        super().__init__()
        self.size = size


def _never_reached_server(exc: BaseException) -> bool:
    """True when a failure happened before the server could have processed the request.

    Connect failures (refused, DNS, connect timeout) qualify; so does a pooled
    keep-alive connection the server had already closed (``RemoteDisconnected``: not a
    single byte of answer).
    """
    if isinstance(exc, ConnectTimeoutError):
        return True
    if isinstance(exc, Urllib3ProtocolError):
        return any(isinstance(a, http.client.RemoteDisconnected) for a in exc.args)
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop()
        if any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend(a for a in item.args if isinstance(a, BaseException))
        for linked in (item.__cause__, item.__context__):
            if linked is not None:
                todo.append(linked)
    return seen


def _describe(exc: BaseException, timed_out: bool) -> tuple[str, bool]:
    """Returns (what happened, retryable) for a foreign exception. Never echoes data."""
    if isinstance(exc, NameResolutionError):
        return f"DNS lookup failed for {exc.conn.host!r}", True
    if isinstance(exc, NewConnectionError):
        refused = any(isinstance(e, ConnectionRefusedError) for e in _chain(exc))
        return ("connection refused" if refused else "could not connect"), True
    if isinstance(exc, ConnectTimeoutError):
        return "connect timed out", True
    if isinstance(exc, (ReadTimeoutError, socket.timeout)):
        if timed_out:
            return "timed out: the overall deadline passed", True
        return "timed out waiting for the server", True
    if isinstance(exc, (Urllib3SSLError, ssl.SSLError)):
        verify = any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(exc))
        if verify:
            return "TLS certificate verification failed", False
        return "TLS error", True
    if isinstance(exc, DecodeError):
        return "could not decode the response's Content-Encoding", False
    if isinstance(exc, (ClosedPoolError, EmptyPoolError)):
        return "transport is closed", False
    causes = _chain(exc)
    for cause in causes:
        if isinstance(cause, InvalidChunkLength):
            return "malformed chunked body", True
        if isinstance(cause, http.client.IncompleteRead):
            return "connection closed mid-body (incomplete body)", True
        if isinstance(cause, _HeadCutShort):
            return "connection closed in the middle of the response headers", True
    for cause in causes:
        if isinstance(cause, http.client.RemoteDisconnected):
            return "server closed the connection without answering", True
        if isinstance(cause, ConnectionResetError):
            return "connection reset by peer", True
        if isinstance(cause, (socket.timeout, ReadTimeoutError)):
            return "timed out", True
        if isinstance(cause, http.client.HTTPException):
            return f"malformed response ({type(cause).__name__})", True
    if isinstance(exc, Urllib3ProtocolError):
        return "connection broken", True
    if isinstance(exc, OSError):
        name = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        return f"network error ({name})", True
    return f"HTTP error ({type(exc).__name__})", True


def _map_error(exc: BaseException, request: Request, deadline: float) -> TransportError:
    """Turns any urllib3 / socket / ssl / http.client failure into a TransportError.

    The message names the route and what happened, never headers or body bytes. Partial
    bodies that http.client keeps on its IncompleteRead are dropped from the chain.
    """
    timed_out = time.monotonic() >= deadline
    kind, retryable = _describe(exc, timed_out)
    for cause in _chain(exc):
        if isinstance(cause, http.client.IncompleteRead) and isinstance(
            cause.partial, (bytes, bytearray)
        ):
            # Same length, so its repr still counts the bytes; none of their content.
            cause.partial = bytes(len(cause.partial))
            cause.args = (cause.partial,)
    route = request.route or request.method
    return TransportError(f"{route}: {kind}", route=request.route, retryable=retryable)


# ---------------------------------------------------------------------------
# The transport

_LIVE: weakref.WeakSet[Urllib3Transport] = weakref.WeakSet()


# This process's id, kept current by the fork hook below: os.getpid() is a system call,
# and handle_request compares pids on every request to notice a fork.
_current_pid = [os.getpid()]


def _renew_locks_in_child() -> None:
    _current_pid[0] = os.getpid()
    # A lock held by another thread at fork() stays held forever in the child.
    for transport in list(_LIVE):
        transport._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks_in_child)


def _number(name: str, value: object, low: float, high: float, *, allow_low: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number")
    number = float(value)
    above_low = number >= low if allow_low else number > low
    if not (math.isfinite(number) and above_low and number <= high):
        bound = "[" if allow_low else "("
        raise ConfigurationError(f"{name} must be in {bound}{low:g}, {high:g}], got {value!r}")
    return number


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


class Urllib3Transport:
    """Thread-safe HTTP transport on urllib3 connection pools, with deadlines and caps.

    Every request gets a connect timeout and an overall deadline (``Request.timeout``
    or ``timeout``) that bounds the whole exchange, retries and redirects included.
    Bodies are capped at ``max_response_bytes``. Idempotent requests
    (``Request.retry_safe``) are retried at most ``max_retries`` times after a connect
    failure or a 502/503/504 (and a 429 that says ``Retry-After``); others never are.
    Redirects are followed for GET/HEAD only, within one origin when the request is
    authenticated, never from https to http. After ``fork()`` the child builds its own
    pool on its first request.

    Args:
        timeout: Default overall deadline per request, in seconds.
        connect_timeout: Bound on establishing a connection (None: the deadline only).
        max_response_bytes: Largest body accepted, after any decoding.
        max_retries: Most retries per request (retry_safe requests only).
        backoff: First backoff delay in seconds; doubles per retry, capped at 10 s.
        max_retry_after: Longest ``Retry-After`` honoured, in seconds.
        max_redirects: Most redirects followed per request.
        user_agent: The User-Agent sent when the request has none.
        pool_maxsize: Connections kept alive per host.
        ca_certs: CA bundle path for https (default: the system store).
        ssl_context: An ``ssl.SSLContext`` for https.
        sleep: Sleeps between retries (tests inject a recorder). Never asked to sleep
            past the deadline.

    Raises:
        ConfigurationError: An option is out of range.
    """

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        connect_timeout: Optional[float] = None,
        max_response_bytes: int = 16 * _MIB,
        max_retries: int = 2,
        backoff: float = 0.2,
        max_retry_after: float = 30.0,
        max_redirects: int = 5,
        user_agent: Optional[str] = None,
        pool_maxsize: int = 16,
        ca_certs: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        sleep: Optional[Callable[[float], None]] = None,
    ) -> None:
        self._timeout = _number("timeout", timeout, 0.0, _MAX_TIMEOUT, allow_low=False)
        self._connect_timeout = (
            self._timeout
            if connect_timeout is None
            else min(
                self._timeout,
                _number("connect_timeout", connect_timeout, 0.0, _MAX_TIMEOUT, allow_low=False),
            )
        )
        self._max_bytes = _integer("max_response_bytes", max_response_bytes, 1, 1024 * _MIB)
        self._max_retries = _integer("max_retries", max_retries, 0, 10)
        self._backoff = _number("backoff", backoff, 0.0, _MAX_BACKOFF_DELAY, allow_low=True)
        self._max_retry_after = _number(
            "max_retry_after", max_retry_after, 0.0, _MAX_TIMEOUT, allow_low=True
        )
        self._max_redirects = _integer("max_redirects", max_redirects, 0, 20)
        pool_size = _integer("pool_maxsize", pool_maxsize, 1, 1024)
        if user_agent is None:
            user_agent = _DEFAULT_USER_AGENT
        elif (
            not isinstance(user_agent, str)
            or not user_agent
            or len(user_agent) > 512
            or _BAD_HEADER_VALUE.search(user_agent)
        ):
            raise ConfigurationError("user_agent must be 1-512 printable ASCII characters")
        self._user_agent = user_agent
        if ca_certs is not None and not isinstance(ca_certs, str):
            raise ConfigurationError("ca_certs must be a path (str)")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigurationError("ssl_context must be an ssl.SSLContext")
        if sleep is not None and not callable(sleep):
            raise ConfigurationError("sleep must be callable")
        self._sleep: Callable[[float], None] = time.sleep if sleep is None else sleep

        # urllib3 must not retry or redirect on its own: total=False also makes it raise
        # the underlying error instead of wrapping it in MaxRetryError.
        self._retry = Retry(total=False, redirect=False)
        self._timeouts = (self._connect_timeout, self._timeout)
        self._timeout_obj = Timeout(connect=self._connect_timeout, read=self._timeout)
        self._pool_kw: dict[str, object] = {"maxsize": pool_size, "block": False}
        if ca_certs is not None:
            self._pool_kw["ca_certs"] = ca_certs
        if ssl_context is not None:
            self._pool_kw["ssl_context"] = ssl_context

        self._lock = threading.Lock()
        # Validated header sets by their exact input: a client sends the same few sets
        # (one per token generation), so validation runs once per set, not per request.
        self._header_cache: dict[tuple[tuple[str, str], ...], _h1.HeaderSet] = {}
        self._closed = False
        self._pid = os.getpid()
        self._pool = self._new_pool()
        _LIVE.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Urllib3Transport({state}, timeout={self._timeout:g})"

    def _new_pool(self) -> _Pools:
        manager = urllib3.PoolManager(
            retries=self._retry,
            timeout=self._timeout_obj,
            **self._pool_kw,  # type: ignore[arg-type]
        )
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return _Pools(manager)

    def _pool_after_fork(self) -> _Pools:
        with self._lock:
            pid = os.getpid()
            if self._pid != pid:
                inherited = self._pool
                self._pool = self._new_pool()
                self._pid = pid
                # Closing only drops this process's copies of the descriptors; nothing
                # is sent, so the parent's connections are unaffected.
                inherited.clear()
            return self._pool

    def close(self) -> None:
        """Closes pooled connections. Later requests raise TransportError."""
        with self._lock:
            self._closed = True
            self._pool.clear()

    def handle_request(self, request: Request) -> Response:
        """Sends ``request``, following the retry and redirect policy.

        Args:
            request: The request to send.

        Returns:
            The final response, any status (including a 3xx not followed).

        Raises:
            TransportError: Network failure, deadline passed, body too large, or the
                transport is closed.
            ConfigurationError: The URL, a header or the timeout is refused.
        """
        if self._closed:
            raise TransportError(
                f"{request.route or request.method}: transport is closed",
                route=request.route,
                retryable=False,
            )
        pool = self._pool
        if self._pid != _current_pid[0]:
            pool = self._pool_after_fork()
        url = request.url
        if isinstance(url, str):
            _check_url_once(url)
        else:
            check_url(url)
        timeout = request.timeout
        if timeout is None or (timeout == self._timeout and not isinstance(timeout, bool)):
            # The client passes its own timeout, the transport's default, on every
            # request: the prebuilt Timeout serves it (the deadline bounds every recv).
            budget = self._timeout
            timeouts: Optional[tuple[float, float]] = self._timeouts
        else:
            budget = _number("Request.timeout", request.timeout, 0.0, _MAX_TIMEOUT, allow_low=False)
            timeouts = None
        headers = self._header_cache.get(request.headers)
        if headers is None:
            headers = _h1.HeaderSet(self._headers(request))
            if len(self._header_cache) >= _HEADER_CACHE_SIZE:
                self._header_cache.clear()
            self._header_cache[request.headers] = headers
        start = time.monotonic()
        deadline = start + budget
        method = request.method
        body = request.body
        retries = 0
        redirects = 0
        while True:
            now = time.monotonic()
            if timeouts is None:
                remaining = deadline - now
                if remaining <= 0:
                    raise TransportError(
                        f"{request.route or method}: timed out: the overall deadline passed",
                        route=request.route,
                    )
                timeouts = (min(self._connect_timeout, remaining), remaining)
            try:
                response = self._send(
                    pool,
                    method=method,
                    url=url,
                    headers=headers,
                    body=body,
                    deadline=deadline,
                    timeouts=timeouts,
                )
            except _BodyTooLarge as exc:
                size = "" if exc.size is None else f" ({exc.size} bytes announced)"
                raise TransportError(
                    f"{request.route or method}: response body exceeds the limit of "
                    f"{self._max_bytes} bytes{size}",
                    route=request.route,
                    retryable=False,
                ) from exc
            except _NETWORK_ERRORS as exc:
                if (
                    request.retry_safe
                    and retries < self._max_retries
                    and _never_reached_server(exc)
                ):
                    delay = backoff_delay(retries, self._backoff)
                    if time.monotonic() + delay < deadline:
                        self._log_retry(request, None, delay)
                        self._sleep(delay)
                        retries += 1
                        timeouts = None
                        continue
                raise _map_error(exc, request, deadline) from exc
            timeouts = None
            status = response.status
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "%s -> %d, %d bytes, %.1f ms",
                    request.route or method,
                    status,
                    len(response.body),
                    (time.monotonic() - start) * 1000.0,
                )
            if request.retry_safe and status in _RETRY_STATUSES and retries < self._max_retries:
                delay_or_none = retry_delay(
                    status,
                    response.headers.get("retry-after"),
                    attempt=retries,
                    remaining=deadline - time.monotonic(),
                    now=time.time(),
                    backoff=self._backoff,
                    max_retry_after=self._max_retry_after,
                )
                if delay_or_none is not None:
                    self._log_retry(request, status, delay_or_none)
                    self._sleep(delay_or_none)
                    retries += 1
                    continue
            if status in _REDIRECT_STATUSES and redirects < self._max_redirects:
                target = redirect_target(
                    method=method,
                    has_body=body is not None,
                    has_authorization=headers.has_authorization,
                    url=url,
                    status=status,
                    location=response.headers.get("location"),
                )
                if target is not None:
                    if _origin(target) != _origin(url):
                        headers = _h1.HeaderSet(
                            {
                                k: v
                                for k, v in headers.fields.items()
                                if k.lower() not in _ORIGIN_BOUND_HEADERS
                            }
                        )
                    url = target
                    redirects += 1
                    continue
            return response

    def _headers(self, request: Request) -> dict[str, str]:
        headers: dict[str, str] = {}
        names: dict[str, str] = {}
        for name, value in request.headers:
            if not _HEADER_NAME.fullmatch(name):
                raise ConfigurationError(f"{request.route or request.method}: bad header name")
            if _BAD_HEADER_VALUE.search(value):
                raise ConfigurationError(
                    f"{request.route or request.method}: header {name!r} has a value with "
                    "control or non-ASCII characters"
                )
            lowered = name.lower()
            previous = names.get(lowered)
            if previous is not None:
                del headers[previous]
            names[lowered] = name
            headers[name] = value
        if "user-agent" not in names:
            headers["User-Agent"] = self._user_agent
        # identity: the API's JSON bodies are small, so compression buys little. If a
        # server compresses anyway, urllib3 (>= 2.6) decodes in bounded steps and the
        # cap counts decoded bytes, so a decompression bomb stops at the cap.
        if "accept-encoding" not in names:
            headers["Accept-Encoding"] = "identity"
        return headers

    def _send(
        self,
        pool: _Pools,
        *,
        method: str,
        url: str,
        headers: _h1.HeaderSet,
        body: Optional[bytes],
        deadline: float,
        timeouts: tuple[float, float],
    ) -> Response:
        _deadline_local.value = deadline
        origin, target = _target(url)
        connection_pool = pool.get(origin)
        head = _h1.request_head(method, target, origin, headers, body)
        conn, resp = _exchange(connection_pool, target, head, method, timeouts)
        try:
            length = resp.length
            if length is not None and not resp.chunked and "content-encoding" not in resp.msg:
                if length > self._max_bytes:
                    raise _BodyTooLarge(length)
                # Known length, checked against the cap: one read from http.client.
                data = resp.read()
            else:
                data = self._read_other(resp, method, target)
            result = Response(status=resp.status, headers=_h1.header_dict(resp.msg), body=data)
        except BaseException:
            # Unread bytes would poison a pooled connection: close it, free the slot.
            resp.close()
            conn.close()
            connection_pool._put_conn(conn)
            raise
        connection_pool._put_conn(conn)
        return result

    def _read_other(self, resp: http.client.HTTPResponse, method: str, target: str) -> bytes:
        """A chunked, encoded or unframed body, through urllib3's reader as before."""
        pairs = _h1.header_pairs(resp.msg)
        length = resp.length  # framing's verdict; None: chunked, or to the close
        if length is None:
            # A Content-Length that framing overrode must not be enforced by urllib3.
            pairs = [pair for pair in pairs if pair[0].lower() != "content-length"]
        elif length > self._max_bytes:
            raise _BodyTooLarge(length)
        wrapped = urllib3.HTTPResponse(
            body=resp,
            headers=urllib3.HTTPHeaderDict(pairs),
            status=resp.status,
            version=resp.version,
            reason=resp.reason,
            preload_content=False,
            decode_content=False,
            original_response=resp,
            enforce_content_length=True,
            request_method=method,
            request_url=target,
        )
        encoding = wrapped.headers.get("content-encoding")
        if encoding is not None and encoding.strip().lower() not in ("", "identity"):
            return self._read_capped(wrapped, decode=True)
        if length is not None:
            return wrapped.read(decode_content=False)
        return self._read_capped(wrapped, decode=False)

    def _read_capped(self, resp: urllib3.BaseHTTPResponse, *, decode: bool) -> bytes:
        limit = self._max_bytes + 1
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = resp.read(min(_READ_CHUNK, limit - total), decode_content=decode)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > self._max_bytes:
                raise _BodyTooLarge(None)
            chunks.append(chunk)

    def _log_retry(self, request: Request, status: Optional[int], delay: float) -> None:
        if _log.isEnabledFor(logging.DEBUG):
            why = "connect failure" if status is None else f"HTTP {status}"
            _log.debug(
                "%s: retrying after %s in %.3f s", request.route or request.method, why, delay
            )
