"""Adversarial checks of a fleet host that holds nothing in memory (issue 13's pre-read):
what it may serve from the store, and what it must never serve again."""

# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from _fleet_helpers import (  # noqa: F401 - fixtures
    LIFETIME,
    MakeStore,
    OffsetClock,
    clock,
    login,
    make_store,
    server,
    store_kind,
)
from _redis_harness import RedisProcess, redis_binary, shared_redis  # noqa: F401

from textstack_sdk import Authorized, TokenManager
from textstack_sdk._store import StoreError, TokenStore
from textstack_sdk.testing import FakeTextStackServer

pytestmark = pytest.mark.timeout(120)

REFRESH = "POST /auth/refresh-mobile"


def manager(server: FakeTextStackServer, store: Any, clock: OffsetClock, **kw: Any) -> TokenManager:
    kw.setdefault("timeout", 2)
    return TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        store=store,
        clock=clock,
        prompt=False,
        **kw,
    )


class Gated:
    """A store whose calls can be held at a gate, or made to fail. Thread-safe enough for
    one test: the switches are set before the calls they affect."""

    def __init__(self, inner: TokenStore) -> None:
        self.inner = inner
        self.hold: set[str] = set()
        self.fail: set[str] = set()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if name in self.hold:
                self.hold.discard(name)
                self.entered.set()
                assert self.gate.wait(30)
            if name in self.fail:
                raise StoreError(f"{name} failed (test)")
            return attr(*args, **kwargs)

        return call


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def idle(tm: TokenManager) -> bool:
    return tm._refresh_flight is None


def test_a_refused_access_token_is_refreshed_though_the_store_calls_it_fresh(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # A 401 for a token the store still calls fresh: the next call refreshes once (as
    # without a store), and never hands the refused token out again.
    tokens = login(server, make_store(), clock)
    with manager(server, make_store(), clock) as tm:
        assert tm.get_token() == Authorized(tokens.access_token)
        tm.invalidate(tokens.access_token)
        again = tm.get_token()
        assert isinstance(again, Authorized) and again.access_token != tokens.access_token
        assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
        assert tm.get_token() == again
    # Another host refused the same token later: it adopts the new one, no refresh.
    with manager(server, make_store(), clock) as other:
        assert other.get_token() == again
    assert server.count(REFRESH) == 1
