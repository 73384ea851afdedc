"""TokenManager with a Redis token store: many hosts, one login, against a real redis-server
and the strict local auth server (a spent refresh token revokes the whole family)."""

# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import pytest
from _fleet_helpers import (  # noqa: F401 - fixtures
    LIFETIME,
    Counting,
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
from _redis_harness import RedisFleet, RedisProcess, redis_binary, redis_fleet, shared_redis  # noqa: F401
from _tm_helpers import run_threads, wait_until

from textstack_sdk import Authorized, Failed, Pending, TokenManager, TokenSet
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import RecordState, TokenStore, WriteResult
from textstack_sdk.testing import FakeTextStackServer

pytestmark = pytest.mark.timeout(120)

REFRESH = "POST /auth/refresh-mobile"


def test_the_hot_path_makes_no_store_call(
    shared_redis: RedisProcess, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    store = Counting(RedisTokenStore(shared_redis.url, namespace=uuid.uuid4().hex[:8]))
    login(server, store.inner, clock)
    with fleet_manager(server, store, clock) as tm:
        first = tm.get_token()
        assert isinstance(first, Authorized)
        calls = store.calls
        assert calls > 0, "the first call read the store"
        for _ in range(1000):
            assert tm.get_token() == first
        assert store.calls == calls
    store.inner.close()


def test_logout_on_one_host_logs_out_the_fleet(
    shared_redis: RedisProcess, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    namespace = uuid.uuid4().hex[:8]
    one = RedisTokenStore(shared_redis.url, namespace=namespace)
    two = RedisTokenStore(shared_redis.url, namespace=namespace)
    login(server, one, clock)
    with fleet_manager(server, one, clock) as a, fleet_manager(server, two, clock) as b:
        assert isinstance(a.get_token(), Authorized)
        assert isinstance(b.get_token(), Authorized)
        a.logout()
        assert one.load().state is RecordState.TOMBSTONE
        clock.advance(LIFETIME)
        after = b.get_token()
        assert not isinstance(after, Authorized), after
        assert b.status().has_refresh_token is False
        assert server.count(REFRESH) == 0, "the tombstone stops the host before any refresh"
    one.close()
    two.close()


def test_the_environment_names_the_store(
    shared_redis: RedisProcess, server: FakeTextStackServer
) -> None:
    from textstack_sdk import provider_from_env

    store = RedisTokenStore(shared_redis.url, namespace="default")
    env = {
        "TEXTSTACK_TOKEN_STORE": shared_redis.url,
        "TEXTSTACK_API_URL": server.api_url,
        "TEXTSTACK_SITE_HOST": server.site_host,
        "HOME": "/nonexistent-home-for-the-test",
    }
    tokens = login(server, store, OffsetClock())
    provider = provider_from_env(env)
    assert isinstance(provider, TokenManager)
    try:
        result = provider.get_token()
        assert isinstance(result, Authorized) and result.access_token == tokens.access_token
        assert provider.status().cache_path is None, "nothing is written to disk"
    finally:
        provider.close()
        store.close()
        client = shared_redis.client()
        client.delete(*client.keys("{textstack:default}:*"))
        client.close()


def test_waiting_callers_are_not_held_up_past_the_bound(
    shared_redis: RedisProcess, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    namespace = uuid.uuid4().hex[:8]
    holder = RedisTokenStore(shared_redis.url, namespace=namespace)
    login(server, holder, clock)
    clock.advance(LIFETIME)
    assert holder.acquire_lease("stuck-host", ttl=30, wait=0) is not None
    with fleet_manager(server, RedisTokenStore(shared_redis.url, namespace=namespace), clock) as tm:
        started = time.monotonic()
        result = tm.get_token()
        assert isinstance(result, Failed) and result.retryable, result
        assert time.monotonic() - started < 2 + 2.0 + 1.0  # timeout + wait margin
    holder.close()


def test_the_environments_cache_key_seals_the_store(
    shared_redis: RedisProcess, server: FakeTextStackServer
) -> None:
    import base64

    from textstack_sdk import AesGcmCipher

    key = base64.urlsafe_b64encode(b"k" * 32).decode()
    sealed = RedisTokenStore(shared_redis.url, cipher=AesGcmCipher(key))
    tokens = login(server, sealed, OffsetClock())
    env = {
        "TEXTSTACK_TOKEN_STORE": shared_redis.url,
        "TEXTSTACK_CACHE_KEY": key,
        "TEXTSTACK_API_URL": server.api_url,
        "TEXTSTACK_SITE_HOST": server.site_host,
    }
    client = shared_redis.client()
    manager = TokenManager(environ=env, prompt=False)
    try:
        raw = client.hget("{textstack:default}:record", "tokens")
        assert tokens.access_token.encode() not in raw
        result = manager.get_token()
        assert isinstance(result, Authorized) and result.access_token == tokens.access_token
    finally:
        manager.close()
        sealed.close()
        client.delete(*client.keys("{textstack:default}:*"))
        client.close()


def test_a_refresh_costs_six_store_calls(
    shared_redis: RedisProcess, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # load, acquire the lease, load again, record the intent, commit, release: the
    # README's figure (one round trip each; with a replica, the intent's and the commit's
    # WAIT add two).
    store = Counting(RedisTokenStore(shared_redis.url, namespace=uuid.uuid4().hex[:8]))
    login(server, store.inner, clock)
    with fleet_manager(server, store, clock) as tm:
        assert isinstance(tm.get_token(), Authorized)
        clock.advance(LIFETIME)
        before = store.calls
        assert isinstance(tm.get_token(), Authorized)
        assert store.calls - before == 6
        assert server.count(REFRESH) == 1
    store.inner.close()


class FirstCommitUnacknowledged(Counting):
    """A store whose first commit reaches the master but no replica (as in a failover)."""

    def __init__(self, inner: TokenStore) -> None:
        super().__init__(inner)
        self.commits: list[WriteResult] = []

    def commit(self, expected_version: int, tokens: TokenSet, *, now: float) -> WriteResult:
        result = self.inner.commit(expected_version, tokens, now=now)
        if not self.commits:
            result = dataclasses.replace(result, acknowledged=False)
        self.commits.append(result)
        return result


def test_tokens_no_replica_acknowledged_are_written_again_in_the_background(
    shared_redis: RedisProcess, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    store = FirstCommitUnacknowledged(
        RedisTokenStore(shared_redis.url, namespace=uuid.uuid4().hex[:8])
    )
    login(server, store.inner, clock)
    with fleet_manager(server, store, clock) as tm:
        assert isinstance(tm.get_token(), Authorized)
        clock.advance(LIFETIME)
        rotated = tm.get_token()
        assert isinstance(rotated, Authorized)
        assert len(store.commits) == 1 and not store.commits[0].acknowledged
        deadline = time.monotonic() + 10
        while len(store.commits) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(store.commits) == 2 and store.commits[1].ok, "written again"
        stored = store.inner.load()
        assert stored.tokens is not None and stored.tokens.access_token == rotated.access_token
        assert stored.version == store.commits[1].version
        calls = store.calls
        time.sleep(1.0)
        assert store.calls == calls, "once acknowledged, the checks stop"
        assert tm.get_token() == rotated
        assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
    store.inner.close()


def test_the_fleet_signs_in_once_with_one_user_code(shared_redis: RedisProcess) -> None:
    namespace = f"signin-{uuid.uuid4().hex[:8]}"
    with FakeTextStackServer(interval=0.05) as server:
        managers = [
            TokenManager(
                api_url=server.api_url,
                site_host=server.site_host,
                store=RedisTokenStore(shared_redis.url, namespace=namespace, poll_interval=0.01),
                timeout=5,
                prompt=False,
                min_poll_interval=0.0,
            )
            for _ in range(3)
        ]
        try:
            pending = [tm.get_token() for tm in managers]
            assert all(isinstance(p, Pending) for p in pending), pending
            codes = {p.user_code for p in pending if isinstance(p, Pending)}
            assert len(codes) == 1, "one user code for the whole fleet"
            assert server.count("POST /auth/device/code") == 1
            server.approve(codes.pop())
            tokens = {tm.wait_for_token(timeout=20).access_token for tm in managers}
            assert len(tokens) == 1
            stored = RedisTokenStore(shared_redis.url, namespace=namespace).load()
            assert stored.tokens is not None and stored.tokens.access_token in tokens
            assert stored.pending is None
            assert server.count("POST /auth/device/code") == 1
        finally:
            for tm in managers:
                tm.close()


def test_managers_on_either_store_refresh_once_per_rotation(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # The same manager code path over the file store and the Redis store: four "hosts"
    # (each its own manager and store object), four callers each, five rotations.
    login(server, make_store(), clock)
    managers = [fleet_manager(server, make_store(), clock) for _ in range(4)]
    try:
        for rotation in range(5):
            clock.advance(LIFETIME)
            before = server.count(REFRESH)
            got = run_threads(16, spread_over(managers))
            tokens = {r.access_token for r in got if isinstance(r, Authorized)}
            assert len(tokens) == 1 and len(got) == 16, (rotation, got)
            assert server.count(REFRESH) - before == 1
            assert server.refresh_reuses == 0
    finally:
        for tm in managers:
            tm.close()


def test_a_new_host_serves_the_stores_valid_token_when_the_refresh_fails(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # The store's access token is due for refresh (inside the margin) but still valid,
    # and the auth server answers 503: a host that just started serves that token.
    tokens = login(server, make_store(), clock)
    clock.advance(LIFETIME - 10)
    server.inject(REFRESH, status=503, json={}, times=3)
    with fleet_manager(server, make_store(), clock) as tm:
        assert tm.get_token() == Authorized(tokens.access_token)
        assert tm.get_token() == Authorized(tokens.access_token)  # the refresh failed
    assert server.count("POST /auth/device/code") == 0


def test_a_new_host_never_waits_for_a_slow_refresh_of_a_valid_token(
    make_store: MakeStore, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    # The auth server holds the refresh until released; the token is still valid, so
    # no caller of a host that just started waits for it.
    tokens = login(server, make_store(), clock)
    clock.advance(LIFETIME - 10)
    release = threading.Event()
    server.inject(REFRESH, delay=30, release=release)
    with fleet_manager(server, make_store(), clock) as tm:
        try:
            started = time.monotonic()
            got = run_threads(8, tm.get_token)
            assert time.monotonic() - started < 1.0
            assert got == [Authorized(tokens.access_token)] * 8
            # The next call starts the refresh in the background, and is not held up.
            wait_until(lambda: tm.get_token() == got[0] and server.count(REFRESH) == 1)
        finally:
            release.set()
        wait_until(lambda: tm.get_token() != Authorized(tokens.access_token))
        assert isinstance(tm.get_token(), Authorized)
    assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
