"""Many hosts, one login, through a real Redis: the fleet scenarios of issue 13.

Each test runs against real redis-server (and Sentinel) processes from
``tests/_redis_harness.py`` and a local auth server that revokes the whole token family
when a spent refresh token comes back (``refresh_reuses`` counts those). The rows of
docs/RELIABILITY.md's "many hosts" section are counted here.
"""

# ruff: noqa: F811 - pytest fixtures imported from the helpers are parameters here

from __future__ import annotations

import multiprocessing
import time
import uuid
from typing import Any

import _fleet_workers as workers
import pytest
from _fleet_helpers import (  # noqa: F401 - fixtures
    LIFETIME,
    Host,
    OffsetClock,
    clock,
    endpoints,
    fleet_manager,
    login,
    server,
)
from _redis_harness import (  # noqa: F401 - fixtures
    FreezableProxy,
    RedisFleet,
    RedisProcess,
    eventually,
    master_and_link,
    master_port,
    redis_binary,
    redis_fleet,
    replicated,
    shared_redis,
    wait_until,
)

from textstack_sdk import Authorized, Failed, TokenSet
from textstack_sdk import _wire as wire
from textstack_sdk._auth_endpoints import AuthEndpoints
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk.testing import FakeTextStackServer

from . import _budget
from ._report import scenario

pytestmark = [pytest.mark.timeout(120)]

REFRESH = "POST /auth/refresh-mobile"
ROTATIONS = 60 if _budget.FULL else 20

MANY = scenario(
    "many hosts",
    f"3 host processes x 8 threads on one Redis store, access token expired, "
    f"{ROTATIONS} rotations, strict auth server",
    "exactly 1 refresh per rotation, 0 spent tokens presented, every caller and the store "
    "end with the same tokens",
)
DOWN = scenario(
    "many hosts",
    "Redis stopped while a host holds a valid token; its token expires; Redis returns empty",
    "the valid token keeps being served; the refresh fails closed "
    "(retryable, nothing sent); after Redis returns the host heals the store and refreshes",
)
FAILOVER = scenario(
    "many hosts",
    "a refresh whose commit reached the master only: replica link frozen, master SIGKILLed, "
    "Sentinel promotes the replica",
    "0 spent tokens presented (the acknowledged intent holds the other host off); the "
    "refreshing host writes its tokens again and every host ends with them",
)
SIGNIN = scenario(
    "many hosts",
    "fleet sign-in: 3 host processes, no login; the host polling the code SIGKILLed",
    "one user code and one device-code request for the fleet; another host takes over "
    "the polling; every host signed in with the same token",
)


def test_three_host_processes_eight_threads_one_refresh_per_rotation(
    shared_redis: RedisProcess,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    offset = ctx.Value("d", 0.0)
    clock = workers.SharedOffsetClock(offset)
    namespace = f"mp-{uuid.uuid4().hex[:8]}"
    hosts, threads, rotations = 3, 8, ROTATIONS
    start, done = ctx.Barrier(hosts + 1), ctx.Barrier(hosts + 1)
    out: Any = ctx.Queue()
    with FakeTextStackServer(clock=clock, access_token_lifetime=LIFETIME) as server:
        store = RedisTokenStore(shared_redis.url, namespace=namespace)
        login(server, store, clock)
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
                MANY.add("rotations")
                MANY.add("get_token calls", hosts * threads)
                MANY.add("refreshes", server.count(REFRESH) - before)
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


def test_redis_down_serves_valid_tokens_fails_closed_and_recovers(
    redis_fleet: RedisFleet, server: FakeTextStackServer, clock: OffsetClock
) -> None:
    redis = redis_fleet.server()
    store = RedisTokenStore(redis.url, socket_timeout=0.3, connect_timeout=0.3)
    login(server, store, clock)
    with fleet_manager(server, store, clock) as tm:
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
        DOWN.measured("refreshes sent while Redis was down", str(server.count(REFRESH)))
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
        DOWN.add("outages")
    store.close()


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
            SIGNIN.add("hosts signed in", len(got))
            SIGNIN.measured("takeover after approval", f"{time.monotonic() - approved:.1f} s")
        finally:
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
    assert all(proc.exitcode == 0 for proc in procs[1:])


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
        FAILOVER.add("failovers")
        FAILOVER.measured("spent tokens presented", str(server.refresh_reuses))
    finally:
        a.store.close()
        b.store.close()
