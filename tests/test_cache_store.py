"""The store protocol on a manager's own cache (``_cache_store``): what it adds for one host.

The manager's behaviour over it (failed saves, spend records, lock waits, labels) is tested
through the public API in test_token_windows, test_review_multiprocess and friends; here,
the store's own rules: the lease is the cache's flock, the compare-and-swap sees another
writer, a lock held elsewhere is one try, not a loop.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any, Optional

import pytest
from _tm_helpers import manager, seed, unsigned_jwt

from textstack_sdk import Authorized, Failed
from textstack_sdk._cache import FileTokenCache
from textstack_sdk._cache_store import CacheStore
from textstack_sdk._clock import SYSTEM_CLOCK
from textstack_sdk._filelock import InterProcessLock
from textstack_sdk._fleet_refresh import Held
from textstack_sdk._fleet_refresher import FleetRefresher
from textstack_sdk._models import TokenSet
from textstack_sdk._spend_marker import new_owner
from textstack_sdk._store import Lease, RecordState
from textstack_sdk.testing import FakeClock, FakeTextStackServer

pytestmark = pytest.mark.timeout(30)


class _Owner:
    """Keeps a spend-record owner alive for the test."""


_OWNER = _Owner()


def tokens(n: int, *, exp: Optional[float] = None) -> TokenSet:
    when = float(int(time.time()) + 600) if exp is None else exp
    return TokenSet(access_token=f"access-{n}", refresh_token=f"refresh-{n}", access_exp=when)


class CountingStore(CacheStore):
    tries = 0

    def acquire_lease(
        self, owner: str, *, ttl: float, wait: float, purpose: str = "refresh"
    ) -> Optional[Lease]:
        self.tries += 1
        return super().acquire_lease(owner, ttl=ttl, wait=wait, purpose=purpose)


def make(path: pathlib.Path, kind: type[CacheStore] = CacheStore) -> CacheStore:
    cache = FileTokenCache(path, cipher=None)
    return kind(cache, owner=new_owner(_OWNER), clock=SYSTEM_CLOCK, grace=90.0, close_wait=1.0)


def test_the_lease_is_the_cache_lock(tmp_path: pathlib.Path) -> None:
    store = make(tmp_path / "mcp-token.json")
    store.cache.save(tokens(1))
    lease = store.acquire_lease("here", ttl=10.0, wait=0.0)
    assert lease is not None
    elsewhere = InterProcessLock(store.cache.lock_path)  # another open file: another process
    assert not elsewhere.acquire(0)
    assert store.release_lease(lease)
    assert elsewhere.acquire(0)
    try:
        assert store.acquire_lease("here", ttl=10.0, wait=0.0) is None
    finally:
        elsewhere.release()


def test_a_commit_is_refused_once_another_writer_changed_the_cache(tmp_path: pathlib.Path) -> None:
    store = make(tmp_path / "mcp-token.json")
    store.cache.save(tokens(1))
    read = store.load()
    assert read.state is RecordState.LIVE
    FileTokenCache(store.cache.path, cipher=None).save(tokens(2))  # the .NET tool, say
    result = store.commit(read.version, tokens(3), now=time.time())
    assert not result.ok
    assert store.cache.load() == tokens(2)
    assert store.commit(result.version, tokens(3), now=time.time()).ok
    assert store.cache.load() == tokens(3)


def test_a_lock_held_elsewhere_is_one_try_and_sends_nothing(tmp_path: pathlib.Path) -> None:
    store = make(tmp_path / "mcp-token.json", CountingStore)
    assert isinstance(store, CountingStore)
    store.cache.save(tokens(1, exp=time.time() - 10))  # due for refresh
    refresher = FleetRefresher(
        store, owner="here", clock=SYSTEM_CLOCK, request_timeout=5.0, margin=30.0
    )
    sent: list[TokenSet] = []
    elsewhere = InterProcessLock(store.cache.lock_path)
    assert elsewhere.acquire(1)
    try:
        outcome = refresher.run(
            Held(None, 0),
            lambda t, _timeout: sent.append(t),  # type: ignore[func-returns-value,arg-type]
            deadline=SYSTEM_CLOCK.monotonic() + 10.0,
            lease_wait=0.0,
        )
    finally:
        elsewhere.release()
    assert outcome.kind == "failed" and outcome.retryable and outcome.busy
    assert store.tries == 1
    assert sent == []


def test_the_record_stands_only_while_unsaved_tokens_need_it(tmp_path: pathlib.Path) -> None:
    store = make(tmp_path / "mcp-token.json")
    store.cache.save(tokens(1))
    marker = store.cache.spend_marker()
    other = new_owner(_OWNER)

    def refresh(*, unsaved: bool) -> None:
        lease = store.acquire_lease("here", ttl=10.0, wait=0.0)
        assert lease is not None
        version = store.load().version
        assert store.record_intent(lease, version=version, refresh_token="refresh-1").recorded
        if unsaved:
            store.refresh_unsaved()  # as after a failed save
        store.release_lease(lease)

    refresh(unsaved=False)  # nothing rotated that is held: no reason to stand
    assert not marker.spent_elsewhere("refresh-1", other)
    refresh(unsaved=True)
    assert marker.spent_elsewhere("refresh-1", other)
    # A forked child holds none of its parent's unsaved tokens.
    store.after_fork()
    refresh(unsaved=False)
    assert not marker.spent_elsewhere("refresh-1", other)


def test_a_refused_refresh_adopts_another_writers_tokens_but_never_hands_out_spent_ones(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache
) -> None:
    seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        server.revoke_all()  # ours is refused: another writer (outside our lock) rotated
        _, refresh = server.issue_tokens()
        # ...and what it wrote is itself due already.
        access = unsigned_jwt({"exp": clock.time() - 10})
        newer = TokenSet(access, refresh, clock.time() - 10)
        original: Any = tm._send_refresh

        def racing_send(sent: TokenSet) -> Any:
            outcome = original(sent)
            FileTokenCache(cache.path).save(newer)
            return outcome

        tm._send_refresh = racing_send  # type: ignore[method-assign]
        result = tm.get_token()
        assert isinstance(result, Failed) and result.retryable, result
        assert "replaced by another process" in result.message
        tm._send_refresh = original  # type: ignore[method-assign]
        again = tm.get_token()  # at once: refreshes with the adopted refresh token
        assert isinstance(again, Authorized) and again.access_token != access
    assert cache.load() is not None


def test_a_rotation_the_cache_could_not_take_is_served_and_refreshed_from_memory(
    server: FakeTextStackServer, clock: FakeClock, tmp_path: pathlib.Path
) -> None:
    class SaveFails(FileTokenCache):
        def save(self, tokens: TokenSet) -> bool:
            return False

    cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
    old = seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, SaveFails(cache.path), background=False) as tm:
        first = tm.get_token()
        assert isinstance(first, Authorized) and first.access_token != old.access_token
        assert tm.status().last_error is None  # a full disk is not a failed refresh
        assert tm.status().source == "refresh"
        tm.invalidate(first.access_token)
        second = tm.get_token()  # refreshed again from memory: the cache has older tokens
        assert isinstance(second, Authorized) and second.access_token != first.access_token
    assert server.count("POST /auth/refresh-mobile") == 2
    assert cache.load() == old
