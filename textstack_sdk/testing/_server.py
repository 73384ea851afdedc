"""FakeTextStackServer: a real HTTP/1.1 TextStack server on 127.0.0.1, for tests.

It speaks the wire contract of TEXTSTACK_API.md (the ``/api`` prefix and the ``Host``
check included), keeps real device-flow and refresh-token state, signs real ES256
JWTs, and can inject faults into the next N requests of a route.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, Union
from urllib.parse import parse_qsl, unquote, urlsplit

from .._clock import SYSTEM_CLOCK
from ._auth_routes import AuthRoutes
from ._auth_state import REFRESH_MODES, AuthState
from ._faults import NOT_GIVEN, Fault, deliver
from ._http_server import BodyError, HttpServer, read_body
from ._library import Library
from ._library_data import SAMPLE_IDS
from ._reading import Reading
from ._reply import Call, Problem, Reply, json_reply

__all__ = ["FakeTextStackServer", "RecordedRequest"]


Handler = Callable[[Call, float], Reply]


class ServerClock(Protocol):
    """The part of a clock the server reads: wall time for expiry, monotonic for pacing."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received. Immutable; its repr shows no header or body (tokens)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    route: str = ""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"RecordedRequest({self.method} {self.path}, route={self.route!r})"


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    auth: bool
    handler: Handler

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


_Match = tuple[str, Optional[_Route], dict[str, str], list[str]]
"""(route key, route or None, path parameters, methods allowed on the path)."""


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template))


def _normalize_route(route: str) -> str:
    """``POST /api/auth/x`` and ``POST /auth/x`` name the same route."""
    method, _, path = route.partition(" ")
    if path.startswith("/api/"):
        return f"{method} {path[4:]}"
    return route


def _positive(value: Any) -> float:
    number = float(value)
    if not 0 < number <= 10 * 365 * 86_400:
        raise ValueError("must be a positive number of seconds")
    return number


def _mode(value: Any) -> str:
    if value not in REFRESH_MODES:
        raise ValueError(f"refresh_token_mode must be one of {REFRESH_MODES}")
    return str(value)


def _setting(name: str, doc: str, check: Callable[[Any], Any], *, on: str = "_auth") -> Any:
    """A property that reads and writes one knob of a server part under the server's lock."""

    def get(self: FakeTextStackServer) -> Any:
        with self._cond:
            return getattr(getattr(self, on), name)

    def put(self: FakeTextStackServer, value: Any) -> None:
        value = check(value)
        with self._cond:
            setattr(getattr(self, on), name, value)

    return property(get, put, doc=doc)


class FakeTextStackServer:
    """A local TextStack server over real sockets. Thread-safe: one lock guards all state.

    Use it as a context manager (or ``start()``/``stop()``)::

        with FakeTextStackServer(interval=0.05) as server:
            client = TextStackApiClient(server.api_url, site_host=server.site_host)

    Every ``/api`` request must carry ``Host: <site_host>`` exactly (no port). The
    approval page at ``<base_url>/device`` needs no Host header (browsers send host:port).
    Settings given to the constructor can also be changed at runtime through the
    properties of the same names.

    Choices where TEXTSTACK_API.md leaves room (made as the real server would):

    - A device code redeemed once, unknown, or expired all answer ``expired_token``
      (the flow store forgets redeemed codes, so it cannot tell them apart).
    - ``slow_down`` when a code is polled sooner than its interval after its previous
      poll; that code's interval then grows by 5 s for good. The first poll is free.
    - Progress PUTs answer 204. Without ``percentUnit: "book"`` the position is stored
      and the sent percent ignored (the stored percent keeps its earlier value).
    - Bearer refusals are 401 with an empty body and
      ``WWW-Authenticate: Bearer error="invalid_token"``; refresh refusals are
      401 ``{"error": "invalid_grant"}``; validation refusals are
      400 ``{error, message, errors: [{path, code, message}]}``.
    - Injected faults come before the Host check: a proxy answers whatever it gets.

    Args:
        port: TCP port on 127.0.0.1; 0 picks a free one.
        site_host: The Host header the API requires.
        clock: Anything with ``time()`` and ``monotonic()`` (a FakeClock shared with the
            client makes expiry deterministic); the system clock by default.
        access_token_lifetime: Seconds from issue to the JWT's ``exp``.
        device_code_lifetime: A device code's ``expires_in``.
        interval: The poll ``interval`` (floats allowed for fast tests).
        include_interval: False omits ``interval`` from the device-code response.
        reuse_detection: Presenting a rotated refresh token revokes its whole family.
        revoke_access_on_reuse: That revocation also kills the family's access tokens.
        refresh_token_mode: ``"present"`` (rotate), or ``"missing"``/``"null"``/``"empty"``
            to answer refreshes without a usable new refresh token (the old one then
            stays valid, as on a server that does not rotate).
        auto_approve: Approve every new device code at once (benchmarks, demos).
        approval_requires_auth: ``/api/auth/device/approve|deny`` need a valid bearer.
        record_limit: How many requests ``requests`` keeps (oldest dropped first).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        site_host: str = "textstack.app",
        clock: Optional[ServerClock] = None,
        access_token_lifetime: float = 900.0,
        device_code_lifetime: float = 600.0,
        interval: float = 5.0,
        include_interval: bool = True,
        reuse_detection: bool = True,
        revoke_access_on_reuse: bool = False,
        refresh_token_mode: str = "present",
        auto_approve: bool = False,
        approval_requires_auth: bool = False,
        record_limit: int = 10_000,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError("port must be 0..65535")
        if not site_host or ":" in site_host:
            raise ValueError("site_host is a host name without a port")
        self._clock: ServerClock = clock if clock is not None else SYSTEM_CLOCK
        self._cond = threading.Condition(threading.RLock())
        self._requested_port = port
        self._site_host = site_host
        self._library = Library(self._clock.time())
        self._auth = AuthState(user_id=str(self._library.user["id"]))
        self._counts: dict[str, int] = collections.Counter()
        self._requests: collections.deque[RecordedRequest] = collections.deque(
            maxlen=max(0, record_limit)
        )
        self._faults: list[list[Any]] = []  # [Fault, remaining]
        self._auth_routes = AuthRoutes(
            auth=self._auth,
            user=lambda: dict(self._library.user),
            base_url=lambda: self.base_url,
            on_new_flow=self._cond.notify_all,
            monotonic=self._clock.monotonic,
            site_host=site_host,
        )
        self._reading = Reading(self._library)
        self._stopping = threading.Event()
        self._httpd: Optional[HttpServer] = None
        self._thread: Optional[threading.Thread] = None
        self._routes = self._build_routes()
        self.access_token_lifetime = access_token_lifetime
        self.device_code_lifetime = device_code_lifetime
        self.interval = interval
        self.reuse_detection = reuse_detection
        self.revoke_access_on_reuse = revoke_access_on_reuse
        self.refresh_token_mode = refresh_token_mode
        self.include_interval = include_interval
        self.auto_approve = auto_approve
        self.approval_requires_auth = approval_requires_auth

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeTextStackServer:
        """Binds 127.0.0.1 and serves from a daemon thread. Idempotent while running.

        Raises:
            RuntimeError: The server was stopped (it cannot restart).
        """
        with self._cond:
            if self._stopping.is_set():
                raise RuntimeError("a stopped FakeTextStackServer cannot be restarted")
            if self._httpd is not None:
                return self
            self._httpd = HttpServer(("127.0.0.1", self._requested_port), self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"FakeTextStackServer:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops serving, ends open connections and joins the threads (bounded)."""
        with self._cond:
            self._stopping.set()
            httpd, thread = self._httpd, self._thread
            self._cond.notify_all()
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.end_connections(timeout)
        httpd.server_close()
        thread.join(timeout)

    def __enter__(self) -> FakeTextStackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after ``start()``)."""
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("the server is not started")
        return int(httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the site root, where ``/device`` lives."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:<port>/api``: give this to the client as its API URL."""
        return f"{self.base_url}/api"

    @property
    def site_host(self) -> str:
        """The Host header every ``/api`` request must carry."""
        return self._site_host

    @property
    def user_id(self) -> str:
        """The id of the one user (``sub`` of every access token)."""
        return self._auth.user_id

    @property
    def user(self) -> dict[str, Any]:
        """A copy of the user object sent in token responses."""
        with self._cond:
            return dict(self._library.user)

    @property
    def sample_ids(self) -> dict[str, str]:
        """The well-known ids, by ``"user"``, book slug and ``"book-slug/chapter-slug"``."""
        return dict(SAMPLE_IDS)

    # -- settings ----------------------------------------------------------------------

    access_token_lifetime = _setting(
        "access_token_lifetime", "Seconds from issue to a new JWT's exp.", _positive
    )
    device_code_lifetime = _setting(
        "device_code_lifetime", "``expires_in`` of new device codes.", _positive
    )
    interval = _setting("interval", "Poll interval of new device codes.", _positive)
    reuse_detection = _setting(
        "reuse_detection", "Revoke a family when a rotated refresh token comes back.", bool
    )
    revoke_access_on_reuse = _setting(
        "revoke_access_on_reuse", "Reuse detection also revokes access tokens.", bool
    )
    refresh_token_mode = _setting(
        "refresh_token_mode", "present | missing | null | empty (refresh responses).", _mode
    )

    include_interval = _setting(
        "include_interval",
        "False omits ``interval`` from device-code responses.",
        bool,
        on="_auth_routes",
    )
    auto_approve = _setting(
        "auto_approve", "Approve every new device code at once.", bool, on="_auth_routes"
    )
    approval_requires_auth = _setting(
        "approval_requires_auth",
        "The approve/deny API needs a valid bearer.",
        bool,
        on="_auth_routes",
    )

    # -- device flow and tokens (Python side) -------------------------------------------

    def approve(self, user_code: str) -> None:
        """Approves a pending code, as the signed-in user would on ``/device``.

        Raises:
            ValueError: ``invalid_user_code``, ``expired_user_code`` or
                ``user_code_already_used``.
        """
        self._decide_or_raise(user_code, approve=True)

    def deny(self, user_code: str) -> None:
        """Denies a pending code. Raises ValueError as ``approve`` does."""
        self._decide_or_raise(user_code, approve=False)

    def _decide_or_raise(self, user_code: str, *, approve: bool) -> None:
        with self._cond:
            error = self._auth.decide(user_code, approve, self._clock.time())
        if error is not None:
            raise ValueError(error)

    def pending_user_codes(self) -> list[str]:
        """User codes awaiting a decision and not expired, oldest first."""
        with self._cond:
            return [f.user_code for f in self._auth.pending(self._clock.time())]

    def wait_for_user_code(self, timeout: float = 5.0, *, exclude: Iterable[str] = ()) -> str:
        """Blocks (real time, bounded) until a pending code exists; returns the newest.

        Args:
            timeout: Real seconds to wait at most.
            exclude: Codes to ignore (to wait for a new flow after an earlier one).

        Raises:
            TimeoutError: No such code appeared in time.
        """
        skip = set(exclude)
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                codes = [c for c in self.pending_user_codes() if c not in skip]
                if codes:
                    return codes[-1]
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    raise TimeoutError(f"no pending user code within {timeout} s")
                # Sliced: an approval elsewhere or a FakeClock step can change what is pending.
                self._cond.wait(min(left, 0.05))

    def issue_tokens(self) -> tuple[str, str]:
        """A new login without the device flow: ``(access_token, refresh_token)``."""
        with self._cond:
            return self._auth.issue_login(self._clock.time())

    def make_jwt(self, payload: Mapping[str, Any]) -> str:
        """Signs any payload with the server's key (odd ``exp`` values for client tests).

        The server accepts such a token as a bearer only if ``sub`` is ``user_id`` and
        ``exp`` is a number in the future.
        """
        with self._cond:
            return self._auth.make_jwt(payload)

    def is_valid_access_token(self, token: str) -> bool:
        """Whether a bearer route would accept this token now."""
        with self._cond:
            return self._auth.verify_access(token, self._clock.time()) == self.user_id

    @property
    def refresh_reuses(self) -> int:
        """How many times a rotated (spent) refresh token was presented again."""
        with self._cond:
            return self._auth.reuses

    def revoke_all(self) -> None:
        """Every token issued so far (refresh and access, make_jwt ones too) stops working."""
        with self._cond:
            self._auth.revoke_all()

    # -- observability and faults ------------------------------------------------------

    def count(self, route: str) -> int:
        """Requests seen for a route key such as ``"GET /me/books/{bookId}"``.

        fnmatch patterns (``"GET /me/*"``, ``"*"``) sum every matching route.
        """
        key = _normalize_route(route)
        with self._cond:
            if any(ch in key for ch in "*?["):
                return sum(n for k, n in self._counts.items() if fnmatch.fnmatchcase(k, key))
            return self._counts.get(key, 0)

    def counts(self) -> dict[str, int]:
        """A snapshot of every route counter."""
        with self._cond:
            return dict(self._counts)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first (headers keys lower-case)."""
        with self._cond:
            return list(self._requests)

    def reset_counters(self) -> None:
        """Clears the counters and the recorded requests."""
        with self._cond:
            self._counts.clear()
            self._requests.clear()

    def inject(
        self,
        route: str,
        *,
        status: Optional[int] = None,
        json: Any = None,
        body: Union[bytes, str, None] = None,
        content_type: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        delay: float = 0.0,
        drop: bool = False,
        drip: Optional[float] = None,
        oversize: Optional[int] = None,
        effect: Optional[bool] = None,
        times: int = 1,
        release: Optional[threading.Event] = None,
    ) -> None:
        """Makes the next ``times`` requests of ``route`` fail in the given way.

        With ``status``, ``json`` or ``body`` the fault answers instead of the server
        (a proxy answered). ``delay`` holds the answer back, ``drop`` announces the full
        Content-Length, sends half and hangs up, ``drip`` sends one byte per ``drip``
        seconds, ``oversize`` streams a JSON body of that many bytes. ``headers`` (e.g.
        ``{"Retry-After": "7"}``) are added either way. Faults queue in order; counters
        count faulted requests too.

        Args:
            route: A route key (``"POST /auth/device/token"``), an fnmatch pattern over
                route keys, or ``"*"`` for any request.
            effect: Whether the server handles the request (its state changes) before
                the faulty delivery. Default: yes, unless the fault answers itself.
                ``drop=True`` alone is "processed, answer lost"; ``drop=True,
                effect=False`` is "lost on the way, never processed".
            times: How many matching requests the fault applies to.
            release: With ``delay``: the answer goes out as soon as this event is set
                (``delay`` stays the bound), so a test decides when a slow answer lands.

        Raises:
            ValueError: Contradictory or unbounded options.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = Fault.build(
            _normalize_route(route),
            status=status,
            json=NOT_GIVEN if json is None else json,
            body=body,
            content_type=content_type,
            headers=headers,
            delay=delay,
            drop=drop,
            drip=drip,
            oversize=oversize,
            effect=effect,
            release=release,
        )
        with self._cond:
            self._faults.append([fault, times])

    def clear_faults(self) -> None:
        """Forgets every fault not yet used."""
        with self._cond:
            self._faults.clear()

    def _take_fault(self, key: str) -> Optional[Fault]:
        for entry in self._faults:
            fault, remaining = entry
            if fault.matches(key):
                if remaining <= 1:
                    self._faults.remove(entry)
                else:
                    entry[1] = remaining - 1
                return fault  # type: ignore[no-any-return]
        return None

    # -- HTTP ----------------------------------------------------------------------------

    def _build_routes(self) -> list[_Route]:
        lib, auth, reading = self._library, self._auth_routes, self._reading
        table: list[tuple[str, str, bool, Handler]] = [
            ("POST", "/auth/device/code", False, auth.device_code),
            ("POST", "/auth/device/token", False, auth.device_token),
            ("POST", "/auth/refresh-mobile", False, auth.refresh),
            ("POST", "/auth/device/approve", False, auth.approve),
            ("POST", "/auth/device/deny", False, auth.deny),
            ("GET", "/search", False, lib.search),
            ("GET", "/books/{slug}", False, lib.get_book),
            ("GET", "/books/{slug}/chapters/{chapterSlug}", False, lib.get_chapter),
            ("POST", "/books/{editionId}/ask", True, lib.ask),
            ("GET", "/me/highlights/userbook/{bookId}", True, lib.list_book_highlights),
            ("GET", "/me/highlights/{editionId}", True, lib.list_highlights),
            ("POST", "/me/highlights", True, lib.save_highlight),
            ("GET", "/me/vocabulary/words", True, lib.vocabulary_words),
            ("GET", "/me/library/search", True, lib.library_search),
            ("GET", "/me/library/shelves", True, lib.shelves),
            ("GET", "/me/books", True, lib.my_books),
            ("GET", "/me/books/{bookId}", True, lib.my_book),
            ("GET", "/me/books/{bookId}/chapters/{chapterSlug}", True, lib.my_chapter),
            ("GET", "/me/books/{bookId}/progress", True, reading.get_book_progress),
            ("PUT", "/me/books/{bookId}/progress", True, reading.put_book_progress),
            ("GET", "/me/insights", True, reading.list_insights),
            ("POST", "/me/insights", True, reading.save_insight),
            ("GET", "/me/progress/{editionId}", True, reading.get_progress),
            ("PUT", "/me/progress/{editionId}", True, reading.put_progress),
            ("GET", "/me/chapter-review", True, reading.get_review),
            ("PUT", "/me/chapter-review", True, reading.put_review),
        ]
        return [_Route(m, t, _compile(t), auth, h) for m, t, auth, h in table]

    def _match(self, method: str, path: str) -> _Match:
        """(route key, route, path params, methods allowed on this path)."""
        if path in ("/device", "/device/"):
            return f"{method} /device", None, {}, ["GET", "POST"]
        if path != "/api" and not path.startswith("/api/"):
            return f"{method} {path}", None, {}, []
        sub = path[4:] or "/"
        allowed: list[str] = []
        for route in self._routes:
            found = route.pattern.fullmatch(sub)
            if found is None:
                continue
            if route.method == method:
                params = {k: unquote(v) for k, v in found.groupdict().items()}
                return route.key, route, params, []
            allowed.append(route.method)
        template = next((r.template for r in self._routes if r.pattern.fullmatch(sub)), sub)
        return f"{method} {template}", None, {}, allowed

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Answers one request on a connection thread (called by the HTTP layer)."""
        method = handler.command
        split = urlsplit(handler.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        body_error: Optional[Reply] = None
        try:
            body = read_body(handler)
        except BodyError as exc:
            body = b""
            body_error = json_reply({"error": "invalid_request", "message": str(exc)}, exc.status)
            handler.close_connection = True
        found = self._match(method, path)
        key = found[0]
        with self._cond:
            self._counts[key] += 1
            self._requests.append(RecordedRequest(method, path, query, headers, body, key))
            fault = self._take_fault(key)
        if fault is not None and not fault.reaches_server:
            reply = fault.reply()
        elif body_error is not None:
            reply = body_error
        else:
            try:
                reply = self._answer(
                    method=method, path=path, query=query, headers=headers, body=body, found=found
                )
            except Problem as problem:
                reply = problem.reply()
            if fault is not None:
                reply = fault.shape(reply)
        deliver(handler, reply, fault, self._stopping)

    def _answer(
        self,
        *,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        found: _Match,
    ) -> Reply:
        _, route, params, allowed = found
        if path in ("/device", "/device/"):
            with self._cond:
                return self._auth_routes.device_page(method, query, body, self._clock.time())
        if path != "/api" and not path.startswith("/api/"):
            raise Problem(404, "not_found", "No such page.")
        if headers.get("host") != self._site_host:
            raise Problem(400, "unknown_site", "The Host header does not name a known site.")
        if route is None:
            if allowed:
                allow = (("Allow", ", ".join(sorted(set(allowed)))),)
                raise Problem(405, "method_not_allowed", "Method not allowed.", headers=allow)
            raise Problem(404, "not_found", "No such API route.")
        parsed: Any = None
        if body.strip():
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):
                raise Problem(
                    400, "invalid_request", "The request body is not valid JSON."
                ) from None
        with self._cond:
            now = self._clock.time()
            user_id = self._auth_routes.bearer(headers, now) if route.auth else None
            call = Call(method, path, params, query, parsed, user_id, headers)
            return route.handler(call, now)

    def __repr__(self) -> str:
        with self._cond:
            where = self.api_url if self._httpd is not None else "not started"
            total = sum(self._counts.values())
            top = ", ".join(f"{k}: {n}" for k, n in sorted(self._counts.items())[:8])
        return f"FakeTextStackServer({where}, requests={total}{', ' if top else ''}{top})"
