"""Injected faults: what to answer instead, and how to (mis)deliver an answer."""

from __future__ import annotations

import fnmatch
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Optional, Union

from ._reply import JSON_TYPE, Reply

__all__ = ["NOT_GIVEN", "Fault", "deliver"]

NOT_GIVEN: Any = object()
_MAX_DELAY = 600.0
_CHUNK = 64 * 1024
_DROPPED = b'{"status":"ok","note":"this body is cut before the end by an injected drop"}'


@dataclass(frozen=True)
class Fault:
    """One injected fault for requests whose route matches ``route``. Immutable.

    Whether the request reaches the server (and changes its state) is ``effect``.
    A fault that gives its own answer (``status``, ``json``, ``body``) never lets it
    through: a proxy answered. Delivery faults (``delay``, ``drop``, ``drip``,
    ``oversize``) by default deliver the server's real answer badly, so the request
    took effect ("the refresh was processed, the answer was lost"); ``effect=False``
    makes them deliver a stand-in instead and leave the server untouched.
    """

    route: str
    status: Optional[int] = None
    json_body: Any = NOT_GIVEN
    body: Optional[bytes] = None
    content_type: Optional[str] = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    drop: bool = False
    drip: Optional[float] = None
    oversize: Optional[int] = None
    effect: Optional[bool] = None
    release: Optional[threading.Event] = None

    @classmethod
    def build(
        cls,
        route: str,
        *,
        status: Optional[int],
        json: Any,
        body: Union[bytes, str, None],
        content_type: Optional[str],
        headers: Any,
        delay: float,
        drop: bool,
        drip: Optional[float],
        oversize: Optional[int],
        effect: Optional[bool] = None,
        release: Optional[threading.Event] = None,
    ) -> Fault:
        """Validates the options of ``FakeTextStackServer.inject``.

        Raises:
            ValueError: Contradictory or unbounded options.
        """
        if not route or not isinstance(route, str):
            raise ValueError("route must be a route template such as 'GET /me/books' or '*'")
        if status is not None and not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if json is not NOT_GIVEN and body is not None:
            raise ValueError("give json or body, not both")
        if not 0.0 <= delay <= _MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {_MAX_DELAY} seconds")
        if sum((bool(drop), drip is not None, oversize is not None)) > 1:
            raise ValueError("drop, drip and oversize are exclusive")
        if drip is not None and not 0.0 <= drip <= 10.0:
            raise ValueError("drip is the pause between bytes, 0 to 10 seconds")
        if oversize is not None and oversize <= 0:
            raise ValueError("oversize is a body length in bytes")
        data = body.encode("utf-8") if isinstance(body, str) else body
        pairs = tuple(dict(headers).items()) if headers else ()
        fault = cls(
            route,
            status,
            json,
            data,
            content_type,
            pairs,
            delay,
            drop,
            drip,
            oversize,
            effect,
            release,
        )
        if effect and fault.answers:
            raise ValueError("a fault that answers itself cannot also let the server answer")
        return fault

    @property
    def answers(self) -> bool:
        """True when the fault replaces the server's own answer."""
        return self.status is not None or self.json_body is not NOT_GIVEN or self.body is not None

    @property
    def reaches_server(self) -> bool:
        """True when the server handles the request (its state changes) before delivery."""
        if self.answers:
            return False
        return self.effect is not False

    def matches(self, route: str) -> bool:
        """``*`` matches anything; other patterns are fnmatch patterns over route keys."""
        return self.route == "*" or fnmatch.fnmatchcase(route, self.route)

    def reply(self) -> Reply:
        """The canned answer: an empty 200 unless told otherwise; a JSON stand-in for a
        drop, whose body is cut anyway."""
        status = 200 if self.status is None else self.status
        if self.drop and not self.answers:
            return Reply(status, _DROPPED, JSON_TYPE, self.headers)
        if self.json_body is not NOT_GIVEN:
            data = json.dumps(self.json_body).encode("utf-8")
            return Reply(status, data, self.content_type or JSON_TYPE, self.headers)
        if self.body is not None:
            return Reply(status, self.body, self.content_type or "text/html", self.headers)
        return Reply(status, b"", self.content_type, self.headers)

    def shape(self, reply: Reply) -> Reply:
        """Adds the fault's extra headers to an answer the server produced."""
        if not self.headers or self.answers:
            return reply
        return Reply(reply.status, reply.body, reply.content_type, reply.headers + self.headers)

    def __repr__(self) -> str:
        kinds = [
            name
            for name, on in (
                ("answer", self.answers),
                ("delay", self.delay > 0),
                ("drop", self.drop),
                ("drip", self.drip is not None),
                ("oversize", self.oversize is not None),
            )
            if on
        ]
        return f"Fault({self.route!r}, {'+'.join(kinds) or 'headers'})"


def _start(handler: BaseHTTPRequestHandler, reply: Reply, length: int) -> None:
    handler.send_response(reply.status)
    if reply.content_type:
        handler.send_header("Content-Type", reply.content_type)
    for name, value in reply.headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(length))
    handler.end_headers()


def _abort(handler: BaseHTTPRequestHandler) -> None:
    """Closes the connection without a clean end (the peer sees a short body)."""
    handler.close_connection = True
    try:
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def deliver(
    handler: BaseHTTPRequestHandler,
    reply: Reply,
    fault: Optional[Fault],
    stopping: threading.Event,
) -> None:
    """Writes reply to the connection, shaped by fault. Returns when done or aborted."""
    if fault is None:
        _start(handler, reply, len(reply.body))
        handler.wfile.write(reply.body)
        return
    if fault.delay and _held(fault, stopping):
        _abort(handler)
        return
    body = reply.body
    if fault.drop:
        # Announce the whole body (or some body, if there is none), send half, hang up.
        _start(handler, reply, max(len(body), 64))
        handler.wfile.write(body[: len(body) // 2])
        _abort(handler)
    elif fault.drip is not None:
        _start(handler, reply, len(body))
        handler.wfile.flush()
        for index in range(len(body)):
            handler.wfile.write(body[index : index + 1])
            handler.wfile.flush()
            if index + 1 < len(body) and stopping.wait(fault.drip):
                _abort(handler)
                return
    elif fault.oversize is not None:
        _stream_oversize(handler, reply, fault.oversize, stopping)
    else:
        _start(handler, reply, len(body))
        handler.wfile.write(body)


def _held(fault: Fault, stopping: threading.Event) -> bool:
    """Holds the answer for ``delay``, or until ``release`` is set; True if stopping."""
    release = fault.release
    if release is None:
        return stopping.wait(fault.delay)
    deadline = time.monotonic() + fault.delay
    while not release.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if stopping.wait(min(left, 0.01)):
            return True
    return stopping.is_set()


def _stream_oversize(
    handler: BaseHTTPRequestHandler, reply: Reply, size: int, stopping: threading.Event
) -> None:
    """A syntactically valid JSON object of exactly ``size`` bytes, streamed in chunks."""
    head, tail = b'{"padding":"', b'"}'
    fill = max(0, size - len(head) - len(tail))
    _start(
        handler, Reply(reply.status, b"", JSON_TYPE, reply.headers), len(head) + fill + len(tail)
    )
    handler.wfile.write(head)
    chunk = b"x" * _CHUNK
    while fill > 0:
        if stopping.is_set():
            _abort(handler)
            return
        part = chunk if fill >= _CHUNK else chunk[:fill]
        handler.wfile.write(part)
        fill -= len(part)
    handler.wfile.write(tail)
