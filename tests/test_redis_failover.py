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

import pytest
from _redis_harness import (  # noqa: F401 - fixtures
    SERVICE,
    FreezableProxy,
    RedisFleet,
    RedisProcess,
    master_and_link,
    master_port,
    redis_binary,
    redis_fleet,
    replicated,
    retrying,
    wait_until,
)

from textstack_sdk._models import TokenSet
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import fingerprint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

T1 = TokenSet(access_token="access-1", refresh_token="refresh-1", access_exp=1e9)
T2 = TokenSet(access_token="access-2", refresh_token="refresh-2", access_exp=2e9)


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
