"""The token store protocol's contract, run against every store that implements it.

RedisTokenStore on a real redis-server, and FileTokenStore on a cache file in a temp
folder. Each test makes several store objects on one record, one per "host" (for the file
store each has its own FileTokenCache, so its own flock descriptor). Waits are on real
TTLs, kept to tenths of a second.
"""

# ruff: noqa: F811 - pytest fixtures imported from the helpers are parameters here

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Optional

import pytest
from _fleet_helpers import MakeStore, make_store, store_kind  # noqa: F401 - fixtures
from _redis_harness import RedisProcess, redis_binary, shared_redis  # noqa: F401 - fixtures
from _tm_helpers import run_threads

from textstack_sdk._file_store import FileTokenStore
from textstack_sdk._models import TokenSet
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import Lease, RecordState, TokenStore, fingerprint

pytestmark = pytest.mark.timeout(30)


def tokens(n: int) -> TokenSet:
    return TokenSet(access_token=f"access-{n}", refresh_token=f"refresh-{n}", access_exp=1e9 + n)


def live(store: TokenStore, n: int) -> int:
    """Puts tokens(n) in the store from whatever it holds; returns the new version."""
    result = store.commit(store.load().version, tokens(n), now=time.time())
    assert result.ok
    return result.version


def test_an_empty_store_has_version_zero(make_store: MakeStore) -> None:
    snap = make_store().load()
    assert (snap.version, snap.state, snap.tokens, snap.intent) == (
        0,
        RecordState.EMPTY,
        None,
        None,
    )


def test_a_commit_is_seen_by_every_host(make_store: MakeStore) -> None:
    a, b = make_store(), make_store()
    version = live(a, 1)
    snap = b.load()
    assert snap.version == version > 0
    assert snap.state is RecordState.LIVE
    assert snap.tokens == tokens(1)


def test_versions_only_grow_even_within_one_millisecond(make_store: MakeStore) -> None:
    store = make_store()
    now = time.time()
    versions = [store.commit(0, tokens(0), now=now).version]
    for n in range(1, 20):
        result = store.commit(versions[-1], tokens(n), now=now)
        assert result.ok
        versions.append(result.version)
    assert versions == sorted(set(versions))


def test_cas_refuses_a_stale_version(make_store: MakeStore) -> None:
    a, b = make_store(), make_store()
    base = live(a, 1)
    assert a.commit(base, tokens(2), now=time.time()).ok
    late = b.commit(base, tokens(3), now=time.time())
    assert not late.ok
    assert late.version > base
    assert b.load().tokens == tokens(2)


def test_the_lease_admits_one_host_at_a_time(make_store: MakeStore) -> None:
    hosts = one_each([make_store() for _ in range(6)])
    inside = 0
    most_inside = 0
    entered = 0
    guard = threading.Lock()

    def host() -> str:
        nonlocal inside, most_inside, entered
        name, store = hosts()
        for _ in range(3):
            lease = store.acquire_lease(name, ttl=10, wait=10)
            assert lease is not None
            with guard:
                inside += 1
                entered += 1
                most_inside = max(most_inside, inside)
            # Give a second holder every chance to slip in while this one is inside.
            assert store.acquire_lease(name + "-probe", ttl=10, wait=0) is None
            with guard:
                inside -= 1
            assert store.release_lease(lease)
        return "done"

    assert run_threads(6, host) == ["done"] * 6
    assert (most_inside, entered) == (1, 18)


def test_only_one_of_many_racing_hosts_takes_a_free_lease(make_store: MakeStore) -> None:
    hosts = one_each([make_store() for _ in range(8)])

    def race() -> object:
        name, store = hosts()
        return name if store.acquire_lease(name, ttl=10, wait=0) is not None else None

    won = [name for name in run_threads(8, race) if name is not None]
    assert len(won) == 1
    assert make_store().load().lease_owner == won[0]


def one_each(stores: list[TokenStore]) -> Callable[[], tuple[str, TokenStore]]:
    """Hands each calling thread its own host: a name and a store."""
    guard = threading.Lock()
    handed = iter(enumerate(stores))

    def take() -> tuple[str, TokenStore]:
        with guard:
            i, store = next(handed)
        return f"host{i}", store

    return take


def test_an_expired_lease_passes_to_a_waiter_and_is_lost_to_its_holder(
    make_store: MakeStore,
) -> None:
    a, b = make_store(), make_store()
    # Timed from before a's request: a loaded machine may pause this thread anywhere
    # after it, and the lease cannot pass to b before its TTL has run from that point.
    started = time.monotonic()
    first = a.acquire_lease("a", ttl=0.15, wait=0)
    assert first is not None
    second = b.acquire_lease("b", ttl=5, wait=3)
    assert second is not None
    assert 0.15 <= time.monotonic() - started < 2.5
    assert a.renew_lease(first, ttl=5) is None
    assert not a.release_lease(first)
    assert b.load().lease_owner == "b"


def test_a_lease_wait_is_bounded(make_store: MakeStore) -> None:
    a, b = make_store(), make_store()
    assert a.acquire_lease("a", ttl=10, wait=0) is not None
    started = time.monotonic()
    assert b.acquire_lease("b", ttl=10, wait=0.2) is None
    assert 0.15 < time.monotonic() - started < 1.5


def test_a_renewed_lease_outlives_its_first_ttl(make_store: MakeStore) -> None:
    a, b = make_store(), make_store()
    lease = a.acquire_lease("a", ttl=5, wait=0)
    assert lease is not None
    renewed = a.renew_lease(lease, ttl=60)
    assert renewed is not None and renewed.deadline > lease.deadline
    # The store's own count, not a wait for the first TTL to run out.
    assert b.load().lease_remaining > 50
    assert b.acquire_lease("b", ttl=1, wait=0) is None


def test_the_intent_needs_the_lease_the_version_and_a_live_record(
    make_store: MakeStore,
) -> None:
    a, b = make_store(), make_store()
    version = live(a, 1)
    lease = a.acquire_lease("a", ttl=10, wait=0)
    assert lease is not None
    stale = a.record_intent(lease, version=version - 1, refresh_token="refresh-1")
    assert (stale.recorded, stale.reason, stale.current_version) == (False, "version", version)
    assert a.release_lease(lease)
    not_held = a.record_intent(lease, version=version, refresh_token="refresh-1")
    assert (not_held.recorded, not_held.reason, not_held.may_send) == (False, "lease", False)
    b_lease = b.acquire_lease("b", ttl=10, wait=0)
    assert b_lease is not None
    taken = a.record_intent(lease, version=version, refresh_token="refresh-1")
    assert (taken.recorded, taken.reason) == (False, "lease")
    ok = b.record_intent(b_lease, version=version, refresh_token="refresh-1")
    assert ok.may_send and ok.acknowledged
    intent = a.load().intent
    assert intent is not None
    assert (intent.owner, intent.fingerprint, intent.version) == (
        "b",
        fingerprint("refresh-1"),
        version,
    )


def test_no_intent_on_a_record_that_is_not_live(make_store: MakeStore) -> None:
    store = make_store()
    lease = store.acquire_lease("a", ttl=10, wait=0)
    assert lease is not None
    result = store.record_intent(lease, version=0, refresh_token="refresh-0")
    assert (result.recorded, result.reason) == (False, "state")


def test_an_intent_outlives_its_lease_by_the_grace(make_store: MakeStore) -> None:
    store = make_store(intent_grace=5)
    version = live(store, 1)
    lease = store.acquire_lease("a", ttl=30, wait=0)
    assert lease is not None
    assert store.record_intent(lease, version=version, refresh_token="refresh-1").may_send
    snap = store.load()
    assert snap.intent is not None
    assert snap.lease_remaining <= 30
    assert snap.lease_remaining + 4 < snap.intent.remaining <= snap.lease_remaining + 5.1


def test_a_paused_holders_intent_is_waited_for_and_its_late_commit_refused(
    make_store: MakeStore, store_kind: str, request: pytest.FixtureRequest
) -> None:
    # The lease and the intent run out by the store's hand, not by real waits: this
    # thread, paused on a loaded machine, would otherwise let them run out too early.
    a, b = make_store(), make_store()
    version = live(a, 1)
    # a "pauses" past its lease with the refresh request in flight.
    _, b_lease = hand_over(request, store_kind, a, b, intent_at=version)
    blocked = b.record_intent(b_lease, version=version, refresh_token="refresh-1")
    assert (blocked.recorded, blocked.reason) == (False, "intent")
    snap = b.load()
    assert snap.intent is not None and snap.intent.owner == "a"
    # The grace runs out with no commit from a: b may go on (a's process counts as dead).
    run_out(request, store_kind, a, "intent")
    resumed = b.record_intent(b_lease, version=version, refresh_token="refresh-1")
    assert resumed.may_send
    assert b.commit(version, tokens(2), now=time.time()).ok
    late = a.commit(version, tokens(99), now=time.time())
    assert not late.ok
    assert a.load().tokens == tokens(2)


def test_a_renewed_lease_keeps_its_intent_alive_past_it(make_store: MakeStore) -> None:
    """The intent must outlive the lease however the lease is extended: were it left with
    the first lease's time, it would vanish while the renewed holder's request is in
    flight, and after the lease another host would find no intent to wait for."""
    store = make_store(intent_grace=1)
    version = live(store, 1)
    lease = store.acquire_lease("a", ttl=2, wait=0)
    assert lease is not None
    assert store.record_intent(lease, version=version, refresh_token="refresh-1").may_send
    assert store.renew_lease(lease, ttl=60) is not None
    snap = store.load()
    assert snap.intent is not None
    assert snap.intent.remaining > snap.lease_remaining > 50


def test_a_commit_clears_the_intent_and_a_withdrawal_drops_an_unsent_one(
    make_store: MakeStore,
) -> None:
    store = make_store()
    version = live(store, 1)
    lease = store.acquire_lease("a", ttl=10, wait=0)
    assert lease is not None
    assert store.record_intent(lease, version=version, refresh_token="refresh-1").may_send
    assert store.load().intent is not None
    assert store.release_lease(lease, withdraw_intent=True)
    assert store.load().intent is None
    lease = store.acquire_lease("a", ttl=10, wait=0)
    assert lease is not None
    assert store.record_intent(lease, version=version, refresh_token="refresh-1").may_send
    assert store.release_lease(lease)
    assert store.load().intent is not None, "a sent request keeps its intent past the lease"
    assert store.commit(version, tokens(2), now=time.time()).ok
    assert store.load().intent is None


def test_a_former_holder_neither_releases_nor_withdraws_what_is_not_its_own(
    make_store: MakeStore, store_kind: str, request: pytest.FixtureRequest
) -> None:
    a, b = make_store(), make_store()
    version = live(a, 1)
    a_lease, b_lease = hand_over(request, store_kind, a, b, intent_at=None)
    assert b.record_intent(b_lease, version=version, refresh_token="refresh-1").may_send
    assert not a.release_lease(a_lease, withdraw_intent=True)
    assert a.renew_lease(a_lease, ttl=60) is None
    snap = a.load()
    assert snap.lease_owner == "b" and snap.intent is not None and snap.intent.owner == "b"
    assert snap.intent.remaining < 40, "a's renewal attempt did not stretch b's intent"


def test_the_request_budget_is_cut_to_the_lease() -> None:
    from textstack_sdk._store import IntentResult

    result = IntentResult(recorded=True, acknowledged=True, lease_deadline=100.0)
    assert result.request_budget(90.0, wanted=5.0) == 5.0
    assert result.request_budget(97.0, wanted=5.0) is None
    unacked = IntentResult(recorded=True, acknowledged=False, lease_deadline=100.0)
    assert unacked.request_budget(0.0, wanted=1.0) is None


def test_a_tombstone_logs_the_fleet_out_and_is_not_undone_by_a_republish(
    make_store: MakeStore,
) -> None:
    a, b = make_store(), make_store()
    held = live(a, 1)
    lease = a.acquire_lease("a", ttl=10, wait=0)
    assert lease is not None
    assert a.record_intent(lease, version=held, refresh_token="refresh-1").may_send
    result = b.tombstone(now=time.time())
    assert result.ok and result.version > held and result.acknowledged
    snap = a.load()
    assert (snap.state, snap.tokens, snap.intent) == (RecordState.TOMBSTONE, None, None)
    assert not snap.regressed_from(held)
    assert not a.republish(held, tokens(1)).ok
    assert a.load().state is RecordState.TOMBSTONE


def test_a_tombstone_after_data_loss_outranks_what_the_hosts_hold(
    make_store: MakeStore, store_kind: str, request: pytest.FixtureRequest
) -> None:
    a, b = make_store(), make_store()
    held = a.commit(0, tokens(1), now=time.time() - 3600).version
    wipe(request, store_kind, a)
    assert b.tombstone(now=time.time()).version > held
    assert not a.republish(held, tokens(1)).ok


def test_a_store_that_went_back_is_healed_by_a_republish(
    make_store: MakeStore, store_kind: str, request: pytest.FixtureRequest
) -> None:
    a, b = make_store(), make_store()
    live(a, 1)
    held = live(a, 2)
    wipe(request, store_kind, a)
    snap = b.load()
    assert snap.state is RecordState.EMPTY and snap.regressed_from(held)
    healed = b.republish(held, tokens(2))
    assert healed.ok and healed.version == held
    assert not a.republish(held, tokens(2)).ok, "accepted only while the store is behind"
    assert a.load().tokens == tokens(2)
    newer = a.commit(held, tokens(3), now=time.time())
    assert not b.republish(held, tokens(2)).ok
    assert a.load().version == newer.version


def test_revoked_is_marked_once_and_only_on_the_version_that_failed(
    make_store: MakeStore,
) -> None:
    a, b = make_store(), make_store()
    failed = live(a, 1)
    rotated = a.commit(failed, tokens(2), now=time.time()).version
    assert not b.mark_revoked(failed, now=time.time()).ok, "a sibling rotated: adopt, not revoke"
    result = b.mark_revoked(rotated, now=time.time())
    assert result.ok
    assert not a.mark_revoked(rotated, now=time.time()).ok
    snap = a.load()
    assert (snap.state, snap.tokens, snap.version) == (RecordState.REVOKED, None, result.version)


def test_one_pending_sign_in_for_the_fleet(make_store: MakeStore) -> None:
    a, b = make_store(), make_store()
    assert a.offer_pending({"device_code": "dc-1", "user_code": "ABCD"})
    assert not b.offer_pending({"device_code": "dc-2", "user_code": "WXYZ"})
    assert b.load().pending == {"device_code": "dc-1", "user_code": "ABCD"}
    poll = b.acquire_lease("b", ttl=10, wait=0, purpose="poll")
    assert poll is not None
    assert a.acquire_lease("a", ttl=10, wait=0, purpose="poll") is None
    assert a.acquire_lease("a", ttl=10, wait=0) is not None, "the refresh lease is apart"
    assert b.commit(0, tokens(1), now=time.time()).ok
    assert a.load().pending is None, "the login's commit closes the sign-in"
    assert a.offer_pending({"device_code": "dc-3"})
    a.clear_pending()
    assert b.load().pending is None


def test_a_pending_sign_in_is_replaced_only_by_a_host_that_saw_it(make_store: MakeStore) -> None:
    """Offer and an unconditional clear cannot replace an expired sign-in safely: two hosts
    that both find it expired would each clear and offer, and the fleet would show two user
    codes; a poller's late clear would drop its successor. A compare-and-swap on the
    sign-in itself lets one host win and the others adopt what it put up."""
    a, b = make_store(), make_store()
    expired = {"device_code": "dc-1", "user_code": "ABCD", "expiresAt": 1.5}
    assert a.offer_pending(expired)
    seen_by_a, seen_by_b = a.load().pending, b.load().pending
    assert seen_by_a == seen_by_b == expired
    fresh = {"device_code": "dc-2", "user_code": "EFGH", "expiresAt": 2e9}
    assert a.replace_pending(seen_by_a, fresh)
    assert not b.replace_pending(seen_by_b, {"device_code": "dc-3", "user_code": "IJKL"})
    assert b.load().pending == fresh
    assert not b.replace_pending(expired, None), "a late clear of the old one drops nothing"
    # The poller writes the outcome where every host sees it, then closes the sign-in.
    done = {**fresh, "outcome": "denied"}
    assert a.replace_pending(b.load().pending, done)
    assert b.load().pending == done
    assert not b.offer_pending(fresh)
    assert b.replace_pending(done, None)
    assert a.load().pending is None
    assert not a.replace_pending(done, None)
    assert a.offer_pending(fresh)


def test_a_waiter_sees_the_change_as_it_happens(make_store: MakeStore) -> None:
    a, b = make_store(), make_store()
    version = live(a, 1)
    waiting = threading.Event()
    seen: list[Any] = []

    def waiter() -> None:
        waiting.set()
        seen.append(b.wait_for_change(version, timeout=10))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(5)
    assert a.commit(version, tokens(2), now=time.time()).ok
    thread.join(10)
    assert seen and seen[0] is not None and seen[0].tokens == tokens(2)
    started = time.monotonic()
    assert b.wait_for_change(seen[0].version, timeout=0.1) is None
    assert time.monotonic() - started < 1.5


def wipe(request: pytest.FixtureRequest, store_kind: str, store: TokenStore) -> None:
    """Makes the store lose its data, as a flush or a failover that dropped writes does."""
    if store_kind == "file":
        # A lost disk: the cache and the store's state both gone (a lone deleted cache
        # file is a logout, see FileTokenStore).
        assert isinstance(store, FileTokenStore)
        store.cache.path.unlink()
        store.cache.store_path.unlink()
        return
    assert store_kind == "redis"
    server: RedisProcess = request.getfixturevalue("shared_redis")
    assert isinstance(store, RedisTokenStore)
    client = server.client()
    try:
        client.delete(*client.keys(f"{{textstack:{store.namespace}}}:*"))
    finally:
        client.close()


def hand_over(
    request: pytest.FixtureRequest,
    store_kind: str,
    a: TokenStore,
    b: TokenStore,
    *,
    intent_at: Optional[int],
) -> tuple[Lease, Lease]:
    """a takes the lease (and records an intent at ``intent_at``), it runs out, b takes it."""
    a_lease = a.acquire_lease("a", ttl=30, wait=0)
    assert a_lease is not None
    if intent_at is not None:
        assert a.record_intent(a_lease, version=intent_at, refresh_token="refresh-1").may_send
    run_out(request, store_kind, a, "lease:refresh")
    b_lease = b.acquire_lease("b", ttl=30, wait=0)
    assert b_lease is not None
    return a_lease, b_lease


def run_out(request: pytest.FixtureRequest, store_kind: str, store: TokenStore, key: str) -> None:
    """Ends a lease or an intent as its time to live running out does."""
    if store_kind == "file":
        assert isinstance(store, FileTokenStore)
        state = json.loads(store.cache.store_path.read_bytes())
        if key == "intent":
            assert state["intent"] is not None
            state["intent"]["exp"] = 0
        else:
            purpose = key.split(":", 1)[1]
            state["leases"][purpose]["exp"] = 0
        assert store.cache.save_store_state(json.dumps(state).encode()) is None
        return
    assert store_kind == "redis"
    server: RedisProcess = request.getfixturevalue("shared_redis")
    assert isinstance(store, RedisTokenStore)
    client = server.client()
    try:
        assert client.delete(f"{{textstack:{store.namespace}}}:{key}") == 1
    finally:
        client.close()
