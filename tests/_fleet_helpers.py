"""Fixtures and helpers for tests of the token stores and the fleet refresh.

``store_kind`` runs a test once per store ("file", "redis"); ``make_store`` builds
stores ("hosts") that share one record, fresh for each test. ``OffsetClock`` is the
system clock with a wall time that tests move forward (the local server shares it, so
tokens expire when the test says), while monotonic time and waits stay real.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
from _redis_harness import RedisProcess

from textstack_sdk import TokenManager
from textstack_sdk import _wire as wire
from textstack_sdk._auth_endpoints import AuthEndpoints
from textstack_sdk._cache import FileTokenCache
from textstack_sdk._file_store import FileTokenStore
from textstack_sdk._fleet_refresh import Held, fresh
from textstack_sdk._fleet_refresher import FleetRefresher, Outcome
from textstack_sdk._jwt import decode_exp
from textstack_sdk._models import TokenSet
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import TokenStore
from textstack_sdk._transport import Urllib3Transport
from textstack_sdk.testing import FakeTextStackServer

MakeStore = Callable[..., TokenStore]
LIFETIME = 600.0
MARGIN = 30.0


@pytest.fixture(params=["file", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    """Builds stores ("hosts") that share one record, fresh for each test."""
    made: list[Any] = []
    if store_kind == "redis":
        server: RedisProcess = request.getfixturevalue("shared_redis")
        namespace = f"t-{uuid.uuid4().hex[:12]}"

        def make(**options: Any) -> TokenStore:
            options.setdefault("poll_interval", 0.01)
            store = RedisTokenStore(server.url, namespace=namespace, **options)
            made.append(store)
            return store

    else:
        path = request.getfixturevalue("tmp_path") / "mcp-token.json"

        def make(**options: Any) -> TokenStore:
            options.setdefault("poll_interval", 0.01)
            # Each host its own cache object: its own flock descriptor, as in a process.
            store = FileTokenStore(FileTokenCache(path, cipher=None), **options)
            made.append(store)
            return store

    yield make
    for store in made:
        store.close()


class OffsetClock:
    """The system clock whose wall time tests move forward. Thread-safe."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        return cancel.wait(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Host:
    """One host: its own store object and refresher, one refresh at a time."""

    def __init__(
        self,
        name: str,
        store: TokenStore,
        endpoints: AuthEndpoints,
        clock: OffsetClock,
        **options: Any,
    ) -> None:
        options.setdefault("request_timeout", 2.0)
        options.setdefault("lease_ttl", 5.0)
        self.store = store
        self.clock = clock
        self.endpoints = endpoints
        self.refresher = FleetRefresher(store, owner=name, clock=clock, margin=MARGIN, **options)
        self.held = Held(None, 0)
        self.flight = threading.Lock()
        self.last: Optional[Outcome] = None

    def send(self, tokens: TokenSet, timeout: float) -> wire.RefreshOutcome:
        return self.endpoints.refresh(tokens, timeout=timeout)

    def get(self, budget: float = 15.0) -> Optional[TokenSet]:
        with self.flight:
            if fresh(self.held.tokens, self.clock.time(), MARGIN):
                return self.held.tokens
            self.last = self.refresher.run(
                self.held, self.send, deadline=self.clock.monotonic() + budget
            )
            self.held = self.last.held
            return self.held.tokens if self.last.kind == "ok" else None

    def check(self, budget: float = 5.0) -> Outcome:
        """Writes unsaved tokens again (the token manager does so in the background)."""
        with self.flight:
            self.last = self.refresher.run(
                self.held, self.send, deadline=self.clock.monotonic() + budget, refresh=False
            )
            self.held = self.last.held
            return self.last


def login(server: FakeTextStackServer, store: TokenStore, clock: OffsetClock) -> TokenSet:
    access, refresh = server.issue_tokens()
    tokens = TokenSet(access, refresh, decode_exp(access))
    assert store.commit(store.load().version, tokens, now=clock.time()).ok
    return tokens


def fleet_manager(
    server: FakeTextStackServer, store: Any, clock: OffsetClock, **options: Any
) -> TokenManager:
    """A host's token manager over ``store``: 2 s requests, no prompt."""
    options.setdefault("timeout", 2)
    return TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        store=store,
        clock=clock,
        prompt=False,
        **options,
    )


class Counting:
    """A store that counts the calls made to it."""

    def __init__(self, inner: TokenStore) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return call


def spread_over(managers: list[TokenManager]) -> Any:
    """A run_threads target that sends its callers to the managers in turn."""
    turns = itertools.count()

    def call() -> object:
        return managers[next(turns) % len(managers)].get_token()

    return call


def hosts(
    n: int, make_store: MakeStore, endpoints: AuthEndpoints, clock: OffsetClock, **kw: Any
) -> list[Host]:
    return [Host(f"host{i}", make_store(), endpoints, clock, **kw) for i in range(n)]


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
def server(clock: OffsetClock) -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(clock=clock, access_token_lifetime=LIFETIME) as srv:
        yield srv


@pytest.fixture
def endpoints(server: FakeTextStackServer, clock: OffsetClock) -> Iterator[AuthEndpoints]:
    transport = Urllib3Transport(timeout=5.0)
    yield AuthEndpoints(
        transport,
        api_url=server.api_url,
        site_host=server.site_host,
        timeout=5.0,
        wall_clock=clock.time,
    )
    transport.close()
