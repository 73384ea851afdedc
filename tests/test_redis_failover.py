"""A real Sentinel failover: master, one replica behind a freezable link, three Sentinels.

The issue's measured failure: a compare-and-set moved the record to the rotated tokens on
the master, the master died before its replica had them, and the promoted replica held the
spent refresh token. Here the store must (1) have the intent to spend that token on the
promoted replica, because the replica acknowledged it before anything was sent; (2) refuse
to let a host send anything while the replica cannot acknowledge; (3) let the host that
holds the rotated tokens see the regression and republish them.
"""

# ruff: noqa: F811 - pytest fixtures imported from the helpers are parameters here

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Callable, TypeVar

import pytest
from _fleet_helpers import (  # noqa: F401 - fixtures
    LIFETIME,
    Host,
    OffsetClock,
    clock,
    endpoints,
    login,
    server,
)
from _redis_harness import (  # noqa: F401 - fixtures
    FreezableProxy,
    RedisFleet,
    RedisProcess,
    redis_binary,
    redis_fleet,
    wait_for_replicas,
    wait_until,
)

from textstack_sdk import _wire as wire
from textstack_sdk._auth_endpoints import AuthEndpoints
from textstack_sdk._models import TokenSet
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import StoreUnavailable, fingerprint
from textstack_sdk.testing import FakeTextStackServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

SERVICE = "svc"
T1 = TokenSet(access_token="access-1", refresh_token="refresh-1", access_exp=1e9)
T2 = TokenSet(access_token="access-2", refresh_token="refresh-2", access_exp=2e9)
_T = TypeVar("_T")


@pytest.fixture
def master_and_link(redis_fleet: RedisFleet) -> Iterator[tuple[RedisProcess, FreezableProxy]]:
    master = redis_fleet.server()
    link = FreezableProxy(master.port)
    try:
        yield master, link
    finally:
        link.close()


def test_an_acknowledged_intent_survives_a_failover_and_the_regression_is_healed(
    redis_fleet: RedisFleet, master_and_link: tuple[RedisProcess, FreezableProxy]
) -> None:
    master, link = master_and_link
    replica, sentinels, url = replicated(redis_fleet, master, link)
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    # Host a gives the replica time to acknowledge on a loaded machine; its waits on the
    # frozen link then take that long too.
    a = RedisTokenStore(
        url, namespace=namespace, socket_timeout=2, ack_timeout=1.5, intent_grace=30
    )
    b = RedisTokenStore(url, namespace=namespace, socket_timeout=0.5, intent_grace=30)
    try:
        v1 = a.commit(0, T1, now=time.time()).version
        lease = a.acquire_lease("host-a", ttl=2, wait=0)
        assert lease is not None
        intent = a.record_intent(lease, version=v1, refresh_token="refresh-1")
        assert intent.may_send, "the replica acknowledged the intent: host a may refresh"

        # The replication link freezes: no acknowledgement, so nothing may be sent.
        link.freeze()
        again = a.record_intent(lease, version=v1, refresh_token="refresh-1")
        assert (again.recorded, again.may_send, again.reason) == (True, False, "replica")

        # Host a's refresh (sent under the acknowledged intent) rotated the tokens; its
        # commit reaches the master only, and the master dies.
        committed = a.commit(v1, T2, now=time.time())
        v2 = committed.version
        assert committed.ok and v2 > v1
        assert not committed.acknowledged, "host a knows its rotation is exposed"
        master.kill()
        link.close()
        wait_until(lambda: master_port(sentinels[0]) == replica.port, 30, "Sentinel to promote")

        after = retrying(b.load)
        assert (after.version, after.tokens) == (v1, T1), "the store went back"
        assert after.intent is not None
        assert (after.intent.owner, after.intent.fingerprint) == (
            "host-a",
            fingerprint("refresh-1"),
        )
        # Host a's lease runs out; host b takes it, and still must not spend refresh-1
        # while host a's intent lives.
        b_lease = retrying(lambda: b.acquire_lease("host-b", ttl=30, wait=10))
        assert b_lease is not None
        blocked = b.record_intent(b_lease, version=v1, refresh_token="refresh-1")
        assert (blocked.may_send, blocked.reason) == (False, "intent")

        # Host a holds v2 in memory: it sees the regression and republishes.
        assert retrying(a.load).regressed_from(v2)
        assert a.republish(v2, T2).ok
        healed = b.load()
        assert (healed.version, healed.tokens, healed.intent) == (v2, T2, None)

        # Host a's own intent connection, opened to the old master, finds the new one: a
        # connection that only reconnects to the address it had would refuse every intent
        # from this host for good (the old master is dead, or comes back demoted).
        assert b.release_lease(b_lease)
        a_lease = a.acquire_lease("host-a", ttl=30, wait=0)
        assert a_lease is not None
        assert a.record_intent(a_lease, version=v2, refresh_token="refresh-2").may_send
        assert a.tombstone(now=time.time()).ok
    finally:
        a.close()
        b.close()


def test_a_failover_after_a_refresh_presents_no_spent_token_and_heals(
    redis_fleet: RedisFleet,
    master_and_link: tuple[RedisProcess, FreezableProxy],
    server: FakeTextStackServer,
    endpoints: AuthEndpoints,
    clock: OffsetClock,
) -> None:
    master, link = master_and_link
    replica, sentinels, url = replicated(redis_fleet, master, link)
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    options = {"namespace": namespace, "socket_timeout": 0.5, "intent_grace": 60}
    a = Host("a", RedisTokenStore(url, **options), endpoints, clock)
    b = Host("b", RedisTokenStore(url, **options), endpoints, clock)
    try:
        login(server, a.store, clock)
        assert a.get() is not None and b.get() == a.get()
        clock.advance(LIFETIME)
        real_send = a.send

        def send_then_freeze(tokens: TokenSet, timeout: float) -> wire.RefreshOutcome:
            # The intent went out acknowledged; the replica falls behind before the commit.
            outcome = real_send(tokens, timeout)
            link.freeze()
            return outcome

        a.send = send_then_freeze  # type: ignore[method-assign]
        rotated = a.get()
        assert rotated is not None and a.held.unsaved, "no replica has the rotated tokens"
        master.kill()
        link.close()
        wait_until(lambda: master_port(sentinels[0]) == replica.port, 30, "Sentinel to promote")

        # The promoted replica holds the spent refresh token and host a's intent for it.
        for _ in range(3):
            assert b.get(budget=0.5) is None
        assert server.count("POST /auth/refresh-mobile") == 1
        assert server.refresh_reuses == 0

        # Host a checks its unsaved tokens again (the manager does so in the background).
        healed = eventually(a.check, lambda outcome: outcome.kind == "ok")
        assert healed.kind == "ok" and not healed.unsaved, healed
        assert healed.held.tokens == rotated
        assert eventually(b.get, lambda got: got is not None) == rotated
        assert server.count("POST /auth/refresh-mobile") == 1
        assert server.refresh_reuses == 0
    finally:
        a.store.close()
        b.store.close()


def replicated(
    fleet: RedisFleet, master: RedisProcess, link: FreezableProxy
) -> tuple[RedisProcess, list[RedisProcess], str]:
    """A replica of ``master`` through ``link``, three Sentinels, and the store URL."""
    replica = fleet.server(config=[f"replicaof 127.0.0.1 {link.port}"])
    wait_for_replicas(master)
    sentinels = [fleet.sentinel(master, service=SERVICE) for _ in range(3)]
    wait_for_sentinels(sentinels)
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
    return replica, sentinels, f"redis+sentinel://{hosts}/{SERVICE}"


def wait_for_sentinels(sentinels: list[RedisProcess]) -> None:
    """Until every Sentinel knows the others and the replica: a failover needs both."""
    clients = [s.client() for s in sentinels]

    def ready() -> bool:
        for client in clients:
            others = client.execute_command("SENTINEL", "SENTINELS", SERVICE)
            replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
            if len(others) < len(sentinels) - 1 or not replicas:
                return False
        return True

    try:
        wait_until(ready, 30, "the Sentinels to find each other and the replica")
    finally:
        for client in clients:
            client.close()


def master_port(sentinel: RedisProcess) -> int:
    client = sentinel.client()
    try:
        _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)
    finally:
        client.close()


def eventually(call: Callable[[], _T], done: Callable[[_T], bool]) -> _T:
    """The call, repeated while a failover settles, until ``done`` holds (or 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        got = call()
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def retrying(call: Callable[[], _T]) -> _T:
    """The call, retried while the store is unavailable (a failover settling)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
