"""Adversarial checks of a fleet host that holds nothing in memory (issue 13's pre-read):
what it may serve from the store, and what it must never serve again."""

# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import threading
from typing import Any

import pytest
from _fleet_helpers import (  # noqa: F401 - fixtures
    LIFETIME,
    MakeStore,
    OffsetClock,
    clock,
    fleet_manager,
    login,
    make_store,
    server,
    spread_over,
    store_kind,
)
from _redis_harness import RedisProcess, redis_binary, shared_redis  # noqa: F401
from _tm_helpers import run_threads, wait_until

from textstack_sdk import Authorized, Failed, TokenManager, TokenSet
from textstack_sdk._jwt import decode_exp
from textstack_sdk._store import StoreError, TokenStore
from textstack_sdk.testing import FakeTextStackServer

pytestmark = pytest.mark.timeout(120)

REFRESH = "POST /auth/refresh-mobile"


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


def idle(tm: TokenManager) -> bool:
    return tm._refresh_flight is None


def test_a_refused_access_token_is_refreshed_though_the_store_calls_it_fresh(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # A 401 for a token the store still calls fresh: the next call refreshes once (as
    # without a store), and never hands the refused token out again.
    tokens = login(server, make_store(), clock)
    with fleet_manager(server, make_store(), clock) as tm:
        assert tm.get_token() == Authorized(tokens.access_token)
        tm.invalidate(tokens.access_token)
        again = tm.get_token()
        assert isinstance(again, Authorized) and again.access_token != tokens.access_token
        assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
        assert tm.get_token() == again
    # Another host refused the same token later: it adopts the new one, no refresh.
    with fleet_manager(server, make_store(), clock) as other:
        assert other.get_token() == again
    assert server.count(REFRESH) == 1


def test_a_failed_refresh_never_brings_back_a_refused_older_token(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # This host holds T1 (version 1); another host put T2 in the store (version 2).
    # T1 is refused (401), so the host serves the store's T2 inside its margin; when
    # T2's refresh fails, T1 must not come back.
    store = make_store()
    access2, refresh2 = server.issue_tokens()
    clock.advance(5)
    t1 = login(server, store, clock)
    with fleet_manager(server, make_store(), clock) as tm:
        assert tm.get_token() == Authorized(t1.access_token)
        t2 = TokenSet(access2, refresh2, decode_exp(access2))
        assert store.commit(store.load().version, t2, now=clock.time()).ok
        clock.advance(LIFETIME - 15)  # T2 has 10 s left, T1 15 s
        tm.invalidate(t1.access_token)
        assert tm.get_token() == Authorized(t2.access_token)
        server.inject(REFRESH, status=503, json={}, times=5)
        assert tm.get_token() == Authorized(t2.access_token)  # starts the advisory refresh
        wait_until(lambda: server.count(REFRESH) == 1 and idle(tm))
        for _ in range(3):
            assert tm.get_token() == Authorized(t2.access_token)


def test_a_failed_save_never_serves_the_older_token_the_store_still_has(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # The refresh got T2 but the store took no commit: the store still holds T1 (whose
    # refresh token is spent) at the version T2 was refreshed from. T2 refused (401):
    # T1 is an older generation than what this host holds, never served.
    t1 = login(server, make_store(), clock)
    store = Gated(make_store())
    with fleet_manager(server, store, clock) as tm:
        assert tm.get_token() == Authorized(t1.access_token)
        clock.advance(LIFETIME - 10)
        store.fail.add("commit")
        assert tm.get_token() == Authorized(t1.access_token)  # the advisory refresh
        wait_until(lambda: server.count(REFRESH) == 1 and idle(tm))
        t2 = tm.get_token()
        assert isinstance(t2, Authorized) and t2.access_token != t1.access_token
        tm.invalidate(t2.access_token)
        after = tm.get_token()
        assert after != Authorized(t1.access_token)
        assert after != t2
        assert server.refresh_reuses == 0


@pytest.mark.parametrize("when", ["adopt", "pre-read", "refresh"])
def test_close_during_a_store_read_serves_nothing_after(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock, when: str
) -> None:
    # close() while the refresh flight reads the store: what it read is not installed,
    # and get_token() after close() answers "closed".
    tokens = login(server, make_store(), clock)
    store = Gated(make_store())
    tm = fleet_manager(server, store, clock)
    if when == "refresh":
        assert tm.get_token() == Authorized(tokens.access_token)
        clock.advance(LIFETIME + 1)
    elif when == "pre-read":
        clock.advance(LIFETIME - 10)
    store.hold.add("load")
    got: list[object] = []
    caller = threading.Thread(target=lambda: got.append(tm.get_token()))
    caller.start()
    assert store.entered.wait(10)
    tm.close()
    store.gate.set()
    caller.join(10)
    wait_until(lambda: idle(tm))
    after = tm.get_token()
    assert isinstance(after, Failed) and "closed" in after.message, after


def test_a_failed_refresh_never_stretches_a_served_token_past_its_jwt_exp(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # The store's record says the access token lives 10 s longer than its JWT's exp. A new
    # host serves it inside the margin by the JWT's exp; a failed refresh must not stretch
    # that to the record's word.
    access, refresh = server.issue_tokens()
    jwt_exp = decode_exp(access)
    assert jwt_exp is not None
    store = make_store()
    assert store.commit(0, TokenSet(access, refresh, jwt_exp + 10), now=clock.time()).ok
    clock.advance(LIFETIME - 20)  # 20 s left by the JWT, 30 by the record: in the margin
    server.inject(REFRESH, status=503, json={}, times=5)
    with fleet_manager(server, make_store(), clock) as tm:
        assert tm.get_token() == Authorized(access)
        assert tm.get_token() == Authorized(access)  # starts the advisory refresh
        wait_until(lambda: server.count(REFRESH) == 1 and idle(tm))
        clock.advance(25)  # past the JWT's exp, not the record's
        assert not isinstance(tm.get_token(), Authorized)


def test_a_401_on_every_host_costs_one_refresh(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # The same fresh token refused on four hosts at once (the API rotated its keys, say):
    # one host refreshes, the others adopt its tokens; no refresh token is spent twice.
    tokens = login(server, make_store(), clock)
    managers = [fleet_manager(server, make_store(), clock) for _ in range(4)]
    try:
        for tm in managers:
            assert tm.get_token() == Authorized(tokens.access_token)
            tm.invalidate(tokens.access_token)
        got = run_threads(16, spread_over(managers))
        assert len(set(got)) == 1 and got[0] != Authorized(tokens.access_token), got
        assert isinstance(got[0], Authorized)
        assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
    finally:
        for tm in managers:
            tm.close()
