"""TokenManager with a Redis token store: many hosts, one login, against a real redis-server
and the strict local auth server (a spent refresh token revokes the whole family)."""

# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import dataclasses
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from typing import Any

import _fleet_workers as workers
import pytest
from _fleet_helpers import OffsetClock
from _redis_harness import RedisFleet, RedisProcess, redis_binary, redis_fleet, shared_redis  # noqa: F401

from textstack_sdk import Authorized, Failed, Pending, TokenManager, TokenSet
from textstack_sdk._jwt import decode_exp
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import RecordState, TokenStore, WriteResult
from textstack_sdk.testing import FakeTextStackServer

pytestmark = pytest.mark.timeout(120)

LIFETIME = 600.0
REFRESH = "POST /auth/refresh-mobile"


def login(server: FakeTextStackServer, store: TokenStore, now: float) -> TokenSet:
    access, refresh = server.issue_tokens()
    tokens = TokenSet(access, refresh, decode_exp(access))
    assert store.commit(store.load().version, tokens, now=now).ok
    return tokens


def test_three_host_processes_eight_threads_one_refresh_per_rotation(
    shared_redis: RedisProcess,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    offset = ctx.Value("d", 0.0)
    clock = workers.SharedOffsetClock(offset)
    namespace = f"mp-{uuid.uuid4().hex[:8]}"
    hosts, threads, rotations = 3, 8, 20
    start, done = ctx.Barrier(hosts + 1), ctx.Barrier(hosts + 1)
    out: Any = ctx.Queue()
    with FakeTextStackServer(clock=clock, access_token_lifetime=LIFETIME) as server:
        store = RedisTokenStore(shared_redis.url, namespace=namespace)
        login(server, store, clock.time())
        args = (server.api_url, server.site_host, shared_redis.url, namespace, offset)
        procs = [
            ctx.Process(
                target=workers.host,
                args=(f"host{i}", *args, rotations, threads, start, done, out),
            )
            for i in range(hosts)
        ]
        for proc in procs:
            proc.start()
        try:
            for rotation in range(rotations):
                offset.value += LIFETIME  # every token any host holds is now expired
                before = server.count(REFRESH)
                start.wait(60)
                got = [out.get(timeout=60) for _ in range(hosts)]
                tokens = {token for _name, _rot, seen in got for token in seen}
                assert len(tokens) == 1, (rotation, tokens)
                assert sum(len(seen) for _n, _r, seen in got) == hosts * threads
                (token,) = tokens
                assert server.count(REFRESH) - before == 1, f"rotation {rotation}"
                assert server.refresh_reuses == 0
                assert server.is_valid_access_token(token)
                stored = store.load().tokens
                assert stored is not None and stored.access_token == token
                done.wait(60)
        except BaseException:
            start.abort()  # the hosts stop waiting for a rotation that will not come
            done.abort()
            raise
        finally:
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
            store.close()
    assert all(proc.exitcode == 0 for proc in procs)


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


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
def server(clock: OffsetClock) -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(clock=clock, access_token_lifetime=LIFETIME) as srv:
        yield srv


def manager(server: FakeTextStackServer, store: Any, clock: OffsetClock) -> TokenManager:
    return TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        store=store,
        clock=clock,
        timeout=2,
        prompt=False,
    )


def test_the_hot_path_makes_no_store_call(
    shared_redis: RedisProcess, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    store = Counting(RedisTokenStore(shared_redis.url, namespace=uuid.uuid4().hex[:8]))
    login(server, store.inner, clock.time())
    with manager(server, store, clock) as tm:
        first = tm.get_token()
        assert isinstance(first, Authorized)
        calls = store.calls
        assert calls > 0, "the first call read the store"
        for _ in range(1000):
            assert tm.get_token() == first
        assert store.calls == calls
    store.inner.close()


def test_redis_down_serves_valid_tokens_fails_closed_and_recovers(
    redis_fleet: RedisFleet, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    redis = redis_fleet.server()
    store = RedisTokenStore(redis.url, socket_timeout=0.3, connect_timeout=0.3)
    login(server, store, clock.time())
    with manager(server, store, clock) as tm:
        first = tm.get_token()
        assert isinstance(first, Authorized)
        redis.stop()
        assert tm.get_token() == first, "a valid token is served with the store down"
        clock.advance(LIFETIME)
        started = time.monotonic()
        failed = tm.get_token()
        assert isinstance(failed, Failed) and failed.retryable, failed
        assert "token store" in failed.message
        assert time.monotonic() - started < 4.0
        assert server.count(REFRESH) == 0, "no refresh without the store"
        redis.restart()  # empty: the host heals it from memory, then refreshes
        clock.advance(120)  # past the backoff
        deadline = time.monotonic() + 10
        result = tm.get_token()
        while not isinstance(result, Authorized) and time.monotonic() < deadline:
            clock.advance(120)
            result = tm.get_token()
        assert isinstance(result, Authorized), result
        assert result != first
        assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
        stored = store.load().tokens
        assert stored is not None and stored.access_token == result.access_token
    store.close()


def test_logout_on_one_host_logs_out_the_fleet(
    shared_redis: RedisProcess, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    namespace = uuid.uuid4().hex[:8]
    one = RedisTokenStore(shared_redis.url, namespace=namespace)
    two = RedisTokenStore(shared_redis.url, namespace=namespace)
    login(server, one, clock.time())
    with manager(server, one, clock) as a, manager(server, two, clock) as b:
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
    tokens = login(server, store, time.time())
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
    login(server, holder, clock.time())
    clock.advance(LIFETIME)
    assert holder.acquire_lease("stuck-host", ttl=30, wait=0) is not None
    with manager(server, RedisTokenStore(shared_redis.url, namespace=namespace), clock) as tm:
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
    tokens = login(server, sealed, time.time())
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
    # README's figure (one round trip each; WAIT adds one when a replica is connected).
    store = Counting(RedisTokenStore(shared_redis.url, namespace=uuid.uuid4().hex[:8]))
    login(server, store.inner, clock.time())
    with manager(server, store, clock) as tm:
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
    login(server, store.inner, clock.time())
    with manager(server, store, clock) as tm:
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


def test_the_fleet_sign_in_survives_its_polling_host_killed(shared_redis: RedisProcess) -> None:
    ctx = multiprocessing.get_context("spawn")
    namespace = f"signin-{uuid.uuid4().hex[:8]}"
    out: Any = ctx.Queue()
    with FakeTextStackServer(interval=0.05) as server:
        args = (server.api_url, server.site_host, shared_redis.url, namespace, out)
        first = ctx.Process(target=workers.signin_host, args=("first", *args))
        first.start()
        procs = [first]
        try:
            kind, _name, code = out.get(timeout=60)
            assert kind == "code"
            # The first host requested the code and polls it; two more hosts adopt it.
            others = [
                ctx.Process(target=workers.signin_host, args=(f"host{i}", *args)) for i in range(2)
            ]
            procs.extend(others)
            for proc in others:
                proc.start()
            shown = [out.get(timeout=60) for _ in others]
            assert {(k, c) for k, _n, c in shown} == {("code", code)}, shown
            first.kill()  # SIGKILL: its poll lease is never released
            first.join(10)
            server.approve(code)
            approved = time.monotonic()
            got = [out.get(timeout=60) for _ in others]
            # Taken over once the dead poller's lease ran out: 3 intervals + 2 s.
            assert time.monotonic() - approved < 8.0
            assert {k for k, _n, _t in got} == {"token"}, got
            assert len({t for _k, _n, t in got}) == 1
            assert server.count("POST /auth/device/code") == 1
        finally:
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
    assert all(proc.exitcode == 0 for proc in procs[1:])
