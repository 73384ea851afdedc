"""The fleet refresh protocol run against real stores and the strict local auth server.

Each "host" is a store object of its own and a FleetRefresher, with one refresh at a
time per host (as a token manager's single flight gives). The local server rotates
refresh tokens and revokes the whole family when a spent one comes back; its
``refresh_reuses`` counts those. Both stores run every test unless it says otherwise.
"""

# ruff: noqa: F811 - pytest fixtures imported from the helpers are parameters here

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Optional

import pytest
from _fleet_helpers import (  # noqa: F401 - fixtures
    LIFETIME,
    Host,
    MakeStore,
    OffsetClock,
    clock,
    endpoints,
    hosts,
    login,
    make_store,
    server,
    store_kind,
)
from _redis_harness import RedisFleet, redis_binary, redis_fleet, shared_redis  # noqa: F401
from _tm_helpers import run_threads

from textstack_sdk import _wire as wire
from textstack_sdk._auth_endpoints import AuthEndpoints
from textstack_sdk._file_store import FileTokenStore
from textstack_sdk._fleet_refresh import Held
from textstack_sdk._models import TokenSet
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import RecordState, TokenStore
from textstack_sdk.testing import FakeTextStackServer

pytestmark = pytest.mark.timeout(60)

REFRESH = "POST /auth/refresh-mobile"


def test_many_hosts_one_refresh_per_rotation_and_the_same_tokens(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
    store_kind: str,
) -> None:
    fleet = hosts(4, make_store, endpoints, clock)
    login(server, fleet[0].store, clock)
    rotations = 20 if store_kind == "redis" else 10
    for rotation in range(rotations):
        clock.advance(LIFETIME)  # every host's access token is now expired
        before = server.count(REFRESH)
        got = run_threads(12, spread(fleet))
        assert server.count(REFRESH) - before == 1, f"rotation {rotation}"
        assert server.refresh_reuses == 0
        assert all(isinstance(t, TokenSet) for t in got), [h.last for h in fleet]
        assert len({t.refresh_token for t in got if isinstance(t, TokenSet)}) == 1
        for host in fleet:
            host.get()
        assert len({h.held for h in fleet}) == 1, "every host holds the same tokens"
        stored = fleet[0].store.load()
        assert stored.tokens == fleet[0].held.tokens and stored.version == fleet[0].held.version
        assert server.is_valid_access_token(stored.tokens.access_token)


def spread(fleet: list[Host]) -> Any:
    """A target for run_threads that sends its callers to the hosts in turn."""
    turns = itertools.count()

    def call() -> Optional[TokenSet]:
        return fleet[next(turns) % len(fleet)].get()

    return call


class Recording:
    """A store that runs ``before_acquire`` once, just before its first lease attempt."""

    def __init__(self, inner: TokenStore, before_acquire: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.before_acquire = before_acquire

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "acquire_lease" and self.before_acquire is not None:
                hook, self.before_acquire = self.before_acquire, None
                hook()
            return attr(*args, **kwargs)

        return call


def test_a_waiter_re_reads_after_the_lease_and_never_spends_what_it_read_before(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    first = Host("first", make_store(), endpoints, clock)
    login(server, first.store, clock)
    first.get()
    clock.advance(LIFETIME)
    # The waiter has read the expired record; before it takes the lease, a sibling
    # refreshes and commits.
    waiter_store = Recording(make_store(), before_acquire=first.get)
    waiter = Host("waiter", waiter_store, endpoints, clock)  # type: ignore[arg-type]
    before = server.count(REFRESH)
    tokens = waiter.get()
    assert tokens is not None and tokens == first.held.tokens
    assert server.count(REFRESH) - before == 1 and server.refresh_reuses == 0
    assert "record_intent" not in waiter_store.calls, "it adopted after the re-read"
    after_lease = waiter_store.calls[waiter_store.calls.index("acquire_lease") + 1]
    assert after_lease == "load"


def test_a_holder_paused_past_its_lease_is_waited_for_and_its_commit_lands(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    grace = {"intent_grace": 20.0}
    holder = Host("holder", make_store(**grace), endpoints, clock, lease_ttl=2.5)
    other = Host("other", make_store(**grace), endpoints, clock)
    login(server, holder.store, clock)
    clock.advance(LIFETIME)
    answered = threading.Event()
    resume = threading.Event()
    real_send = holder.send

    def paused_send(tokens: TokenSet, timeout: float) -> wire.RefreshOutcome:
        outcome = real_send(tokens, timeout)
        answered.set()
        assert resume.wait(30)  # a GC pause, a stopped VM: past the lease
        return outcome

    holder.send = paused_send  # type: ignore[method-assign]
    worker = threading.Thread(target=holder.get)
    worker.start()
    assert answered.wait(10)
    deadline = time.monotonic() + 10
    while holder.store.load().lease_owner is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.store.load().lease_owner is None, "the holder's lease has run out"
    # The refresh token in the store is spent; the intent keeps the other host off it.
    assert other.get(budget=0.5) is None
    assert other.last is not None and other.last.retryable
    assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
    resume.set()
    worker.join(10)
    assert holder.last is not None and holder.last.kind == "ok", holder.last
    assert other.get() == holder.held.tokens
    assert server.count(REFRESH) == 1 and server.refresh_reuses == 0


def test_the_auth_server_stalls_past_the_lease_and_nobody_else_spends_the_token(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    grace = {"intent_grace": 20.0}
    holder = Host(
        "holder", make_store(**grace), endpoints, clock, lease_ttl=1.0, request_timeout=0.6
    )
    others = hosts(3, lambda: make_store(**grace), endpoints, clock)
    login(server, holder.store, clock)
    clock.advance(LIFETIME)
    server.inject(REFRESH, delay=3.0)
    started = time.monotonic()
    assert holder.get() is None
    assert holder.last is not None and holder.last.retryable
    assert time.monotonic() - started < 1.0 + 0.5, "the request's timeout was cut to the lease"
    for host in others:
        assert host.get(budget=0.3) is None
        assert host.last is not None and host.last.retryable
    assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
    snap = holder.store.load()
    assert snap.intent is not None and snap.intent.owner == "holder"


def test_a_lease_shorter_than_a_request_sends_nothing(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    host = Host("short", make_store(), endpoints, clock, lease_ttl=0.5, request_timeout=2.0)
    login(server, host.store, clock)
    clock.advance(LIFETIME)
    assert host.get() is None
    assert host.last is not None and host.last.retryable
    assert "shorter" in host.last.reason
    assert server.count(REFRESH) == 0
    snap = host.store.load()
    assert snap.intent is None and snap.lease_owner is None


def test_a_logout_during_a_refresh_refuses_the_late_commit(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    holder = Host("holder", make_store(), endpoints, clock)
    elsewhere = make_store()
    login(server, holder.store, clock)
    clock.advance(LIFETIME)
    real_send = holder.send

    def send_then_logout(tokens: TokenSet, timeout: float) -> wire.RefreshOutcome:
        outcome = real_send(tokens, timeout)
        assert elsewhere.tombstone(now=clock.time()).ok
        return outcome

    holder.send = send_then_logout  # type: ignore[method-assign]
    assert holder.get() is None
    assert holder.last is not None and holder.last.kind == "dropped"
    assert holder.held == Held(None, 0)
    assert elsewhere.load().state is RecordState.TOMBSTONE


def test_a_refused_refresh_token_marks_the_fleet_revoked_once(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    fleet = hosts(3, make_store, endpoints, clock)
    login(server, fleet[0].store, clock)
    server.revoke_all()
    clock.advance(LIFETIME)
    assert fleet[0].get() is None
    assert fleet[0].last is not None and fleet[0].last.kind == "dropped"
    assert fleet[0].store.load().state is RecordState.REVOKED
    before = server.count(REFRESH)
    for host in fleet[1:]:
        assert host.get() is None
        assert host.last is not None and host.last.kind == "dropped"
    assert server.count(REFRESH) == before == 1, "the others stop without calling the server"


def test_a_sibling_that_rotated_is_adopted_after_invalid_grant(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    host = Host("late", make_store(), endpoints, clock)
    sibling_store = make_store()
    login(server, host.store, clock)
    clock.advance(LIFETIME)
    real_send = host.send

    def sibling_rotated_first(tokens: TokenSet, timeout: float) -> wire.RefreshOutcome:
        # Another writer outside the protocol (the .NET tool) rotated and saved first.
        rotated = real_send(tokens, timeout)
        assert isinstance(rotated, wire.Refreshed)
        current = sibling_store.load().version
        assert sibling_store.commit(current, rotated.tokens, now=clock.time()).ok
        return wire.RefreshDead("invalid_grant")

    host.send = sibling_rotated_first  # type: ignore[method-assign]
    tokens = host.get()
    assert tokens is not None and tokens == sibling_store.load().tokens
    assert host.store.load().state is RecordState.LIVE


def test_a_store_that_lost_its_data_is_healed_from_memory(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
    store_kind: str,
) -> None:
    host = Host("keeper", make_store(), endpoints, clock)
    login(server, host.store, clock)
    clock.advance(LIFETIME)
    held = host.get()
    assert held is not None
    if store_kind == "redis":
        assert isinstance(host.store, RedisTokenStore)
        client = host.store._client
        client.delete(*client.keys(f"{{textstack:{host.store.namespace}}}:*"))
    else:
        assert isinstance(host.store, FileTokenStore)
        host.store.cache.path.unlink()
        host.store.cache.store_path.unlink()
    other = Host("other", make_store(), endpoints, clock)
    assert other.get() is None, "nothing to adopt until a host heals the store"
    clock.advance(LIFETIME)
    assert host.get() is not None  # republishes, then refreshes its own newest tokens
    assert other.get() == host.held.tokens
    assert server.refresh_reuses == 0


def test_redis_down_fails_closed_and_recovers(
    redis_fleet: RedisFleet,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    redis = redis_fleet.server()
    host = Host(
        "host",
        RedisTokenStore(redis.url, socket_timeout=0.3, connect_timeout=0.3),
        endpoints,
        clock,
    )
    login(server, host.store, clock)
    assert host.get() is not None
    redis.stop()
    clock.advance(LIFETIME)
    started = time.monotonic()
    assert host.get() is None
    assert host.last is not None and host.last.retryable and "token store" in host.last.reason
    assert time.monotonic() - started < 3.0
    assert server.count(REFRESH) == 0, "nothing is refreshed without the store"
    redis.restart()
    assert host.get() is not None, host.last
    assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
    assert host.store.load().tokens == host.held.tokens


_HOLD_AND_WAIT = """
import sys
from textstack_sdk._cache import FileTokenCache
from textstack_sdk._file_store import FileTokenStore
from textstack_sdk._redis_store import RedisTokenStore
kind, where, namespace, ttl = sys.argv[1:5]
if kind == "redis":
    store = RedisTokenStore(where, namespace=namespace)
else:
    store = FileTokenStore(FileTokenCache(where, cipher=None))
assert store.acquire_lease("doomed", ttl=float(ttl), wait=0) is not None
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lease_holder_killed_with_sigkill_holds_the_others_up_at_most_its_lease(
    make_store: MakeStore,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
    store_kind: str,
) -> None:
    survivor = Host("survivor", make_store(), endpoints, clock)
    login(server, survivor.store, clock)
    clock.advance(LIFETIME)
    store = survivor.store
    if isinstance(store, RedisTokenStore):
        where, namespace = store._target.redacted(), store.namespace
    else:
        assert isinstance(store, FileTokenStore)
        where, namespace = str(store.cache.path), "-"
    ttl = 2.0
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_AND_WAIT, store_kind, where, namespace, str(ttl)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    killed_at = time.monotonic()
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert survivor.get() is not None, survivor.last
    assert time.monotonic() - killed_at < ttl + 1.0
    assert server.count(REFRESH) == 1 and server.refresh_reuses == 0


def test_a_partition_between_one_host_and_redis_heals_without_loss(
    shared_redis: Any,
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    from _redis_harness import FreezableProxy

    namespace = f"p-{time.monotonic_ns()}"
    link = FreezableProxy(shared_redis.port)
    options: dict[str, Any] = {"namespace": namespace, "intent_grace": 30.0}
    cut_off = Host(
        "cut-off",
        RedisTokenStore(f"redis://127.0.0.1:{link.port}/0", socket_timeout=0.3, **options),
        endpoints,
        clock,
    )
    other = Host("other", RedisTokenStore(shared_redis.url, **options), endpoints, clock)
    try:
        login(server, other.store, clock)
        assert cut_off.get() == other.get() is not None
        clock.advance(LIFETIME)
        real_send = cut_off.send

        def send_then_partition(tokens: TokenSet, timeout: float) -> wire.RefreshOutcome:
            outcome = real_send(tokens, timeout)
            link.freeze()  # the commit of the rotated tokens cannot reach Redis
            return outcome

        cut_off.send = send_then_partition  # type: ignore[method-assign]
        assert cut_off.get() is None
        assert cut_off.last is not None and cut_off.last.retryable
        rotated = cut_off.held.tokens
        assert rotated is not None and cut_off.held.unsaved, "kept in memory, not lost"
        # The other host must not spend the token the cut-off host spent.
        assert other.get(budget=0.5) is None
        assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
        link.thaw()
        cut_off.store.close()  # its connections died in the partition; new ones now
        cut_off.send = real_send  # type: ignore[method-assign]
        assert cut_off.check().kind == "ok", cut_off.last
        assert cut_off.held.tokens == rotated and not cut_off.held.unsaved
        assert other.get() == rotated
        assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
    finally:
        cut_off.store.close()
        other.store.close()
        link.close()
