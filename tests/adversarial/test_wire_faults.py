"""Device login and refresh under seeded random storms of faults on the auth endpoints.

The server and the TokenManager share a FakeClock: the poll thread waits on it, the test
advances it one virtual second at a time and injects the next fault while the poller is
blocked, so every schedule is reproducible from the seed and no test sleeps for real.
Delivery faults (drop, drip, delay, oversize) still happen on real sockets.
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from textstack_sdk import (
    Authorized,
    Failed,
    FileTokenCache,
    Pending,
    TokenManager,
    TokenSet,
)
from textstack_sdk import _wire as wire
from textstack_sdk._http import Request, Response
from textstack_sdk._jwt import decode_exp
from textstack_sdk._transport import Urllib3Transport
from textstack_sdk.testing import FakeClock, FakeTextStackServer

from . import _budget
from ._faults import (
    CODE,
    POLL,
    REFRESH,
    Fault,
    code_faults,
    poll_faults,
    poller_alive,
    refresh_faults,
    step_clock,
)
from ._report import scenario

pytestmark = pytest.mark.timeout(120)

INTERVAL = 5.0
LIFETIME = 1800.0
TIMEOUT = 0.5  # real seconds per auth request: bounds drips and stalls

LOGIN_MIX = scenario(
    "wire faults",
    "device login under a random mix on /auth/device/code and /auth/device/token "
    "(HTML 502, 5xx, 429 + Retry-After forms, slow_down, drops, delays, drips, oversize, "
    "unusable 200s)",
    "login completes before the code expires; poll thread never dies; "
    "polls <= elapsed/interval + 1; one device-code request per failure + 1",
)
REFRESH_STORM = scenario(
    "wire faults",
    "refresh under a random mix of faults on /auth/refresh-mobile",
    "one refresh POST per attempt, no device flow, the cached refresh token stays live",
)
REFRESH_FALLBACK = scenario(
    "wire faults",
    "refresh fails while the access token is still inside its exp",
    "get_token() keeps returning the current access token",
)
BAD_DEVICE_ANSWER = scenario(
    "wire faults",
    "invalid interval / expires_in in the device-code answer (rewritten on the wire)",
    "bad interval means 5 s (bounded at 300 s); bad expires_in is a retryable failure",
)
TERMINAL = scenario(
    "wire faults",
    "storms that cannot succeed (huge Retry-After, slow_down storm, 5xx until expiry, "
    "grant processed but answer lost)",
    "a clean terminal error, bounded polls, the poll thread ends",
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(clock=clock, interval=INTERVAL, device_code_lifetime=LIFETIME) as srv:
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> FileTokenCache:
    return FileTokenCache(tmp_path / "textstack" / "mcp-token.json")


def make_manager(
    server: FakeTextStackServer, clock: FakeClock, cache: Any, **options: Any
) -> TokenManager:
    return TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        cache=cache,
        clock=clock,
        timeout=TIMEOUT,
        prompt=False,
        **options,
    )


def refresh_is_live(server: FakeTextStackServer, refresh_token: Optional[str]) -> bool:
    """Whether the server accepts this refresh token (it rotates it: call last)."""
    assert refresh_token
    transport = Urllib3Transport(timeout=5)
    try:
        response = transport.handle_request(
            wire.build_refresh_request(server.api_url, server.site_host, refresh_token, 5)
        )
    finally:
        transport.close()
    return response.status == 200


def start_login(
    tm: TokenManager, server: FakeTextStackServer, clock: FakeClock, rng: random.Random
) -> tuple[Pending, int]:
    """Injects 0-4 device-code faults, then calls get_token until a sign-in is pending."""
    faults = rng.sample(code_faults(rng, clock.time()), rng.randint(0, 4))
    faults.sort(key=lambda f: not f.fails)  # a harmless delay, if drawn, hits the success
    for fault in faults:
        fault.inject(server, CODE)
        LOGIN_MIX.add("faults injected")
    failing = sum(1 for f in faults if f.fails)
    attempts = 0
    while True:
        attempts += 1
        assert attempts <= len(faults) + 1
        result = tm.get_token()
        if isinstance(result, Pending):
            break
        assert isinstance(result, Failed) and result.retryable, result
        # Past the start backoff, even a huge Retry-After (capped at a code's lifetime).
        clock.advance(wire.MAX_CODE_LIFETIME + 1)
    assert attempts == failing + 1
    assert server.count(CODE) == attempts
    return result, len(faults)


def run_login(round_index: int) -> collections.Counter[str]:
    rng = random.Random(_budget.SEED * 7919 + round_index)
    clock = FakeClock()
    seen: collections.Counter[str] = collections.Counter()
    with FakeTextStackServer(
        clock=clock, interval=INTERVAL, device_code_lifetime=LIFETIME
    ) as server:
        cache = FileTokenCache(Path(_scratch()) / f"login-{round_index}" / "mcp-token.json")
        with make_manager(server, clock, cache) as tm:
            pending, code_fault_count = start_login(tm, server, clock, rng)
            started = clock.monotonic()
            approve_at = rng.randint(0, 6)
            budget = rng.randint(6, 14)
            state = {"polls": -1, "approved": False, "faults": 0, "slow_downs": 0}

            def between() -> None:
                polls = server.count(POLL)
                if polls == state["polls"]:
                    return  # the next poll has not happened yet: one decision per poll
                state["polls"] = polls
                if not state["approved"] and polls >= approve_at:
                    server.approve(pending.user_code)
                    state["approved"] = True
                if state["faults"] < budget and rng.random() < 0.7:
                    fault = pick(rng, clock, state)
                    if fault is not None:
                        fault.inject(server, POLL)
                        state["faults"] += 1
                        state["slow_downs"] += fault.slow_downs
                        seen[fault.name] += 1

            step_clock(clock, done=lambda: not poller_alive(), between=between)
            elapsed = clock.monotonic() - started
            result = tm.get_token()
            assert isinstance(result, Authorized), (result, tm.status().last_error, seen)
            assert server.is_valid_access_token(result.access_token)
            polls = server.count(POLL)
            assert elapsed < LIFETIME
            assert polls <= elapsed / INTERVAL + 1, (polls, elapsed)
            stored = cache.load()
            assert stored is not None and stored.access_token == result.access_token
            assert refresh_is_live(server, stored.refresh_token)
        assert not poller_alive()
    LOGIN_MIX.add("faults injected", state["faults"])
    LOGIN_MIX.add("polls", polls)
    LOGIN_MIX.add("logins completed")
    seen["device-code faults"] += code_fault_count
    return seen


def pick(rng: random.Random, clock: FakeClock, state: dict[str, Any]) -> Optional[Fault]:
    choices = [
        f
        for f in poll_faults(rng, clock.time())
        if (f.after_grant or not state["approved"]) and state["slow_downs"] + f.slow_downs <= 4
    ]
    return rng.choice(choices) if choices else None


_SCRATCH: list[str] = []


def _scratch() -> str:
    if not _SCRATCH:
        import tempfile

        _SCRATCH.append(tempfile.mkdtemp(prefix="textstack-faults-"))
    return _SCRATCH[0]


@pytest.mark.timeout(240 if _budget.FULL else 90)
def test_device_login_survives_random_fault_mixes() -> None:
    kinds: collections.Counter[str] = collections.Counter()
    for round_index in range(_budget.FAULT_ROUNDS):
        kinds.update(run_login(round_index))
    # The mix really was mixed: most kinds of fault were drawn at least once.
    assert len(kinds) >= 10, kinds


# ------------------------------------------------------------------ refresh


def seed(server: FakeTextStackServer, cache: FileTokenCache) -> TokenSet:
    access, refresh = server.issue_tokens()
    tokens = TokenSet(access, refresh, decode_exp(access))
    assert cache.save(tokens)
    return tokens


@pytest.mark.parametrize("round_index", range(4))
def test_refresh_storm_loses_no_refresh_token(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache, round_index: int
) -> None:
    rng = random.Random(_budget.SEED * 31 + round_index)
    old = seed(server, cache)
    clock.advance(1000)  # the access token expired
    catalogue = refresh_faults(rng, clock.time())
    faults = [rng.choice([f for f in catalogue if f.fails]) for _ in range(rng.randint(3, 8))]
    faults += [f for f in catalogue if not f.fails][: rng.randint(0, 1)]  # hits the success
    for fault in faults:
        fault.inject(server, REFRESH)
    failing = sum(1 for f in faults if f.fails)
    with make_manager(server, clock, cache) as tm:
        attempts = 0
        while True:
            attempts += 1
            assert attempts <= len(faults) + 1
            result = tm.get_token()
            if isinstance(result, Authorized):
                break
            assert isinstance(result, Failed) and result.retryable, result
            # Immediately again: backing off, no second refresh of the same token.
            assert isinstance(tm.get_token(), Failed)
            clock.advance(61)  # past the longest backoff / Retry-After of the mix
        assert attempts == failing + 1
        assert server.count(REFRESH) == attempts
        assert server.count(CODE) == 0  # never a device flow for a network blip
        stored = cache.load()
        assert stored is not None and stored.access_token == result.access_token
        assert stored.refresh_token and stored.refresh_token != old.refresh_token
        assert server.is_valid_access_token(result.access_token)
    assert refresh_is_live(server, stored.refresh_token)
    REFRESH_STORM.add("faults injected", len(faults))
    REFRESH_STORM.add("refresh POSTs", attempts)


def test_refresh_failures_keep_the_access_token_while_exp_allows(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache
) -> None:
    rng = random.Random(_budget.SEED)
    old = seed(server, cache)
    clock.advance(300)  # with skew=600 the refresh is due; exp is 600 s away
    faults = [f for f in refresh_faults(rng, clock.time()) if f.fails]
    rng.shuffle(faults)
    # Inline (no refresh thread), so each attempt has ended when get_token returns.
    with make_manager(server, clock, cache, skew=600, background=False) as tm:
        for count, fault in enumerate(faults[:8], start=1):
            fault.inject(server, REFRESH)
            assert tm.get_token() == Authorized(old.access_token), fault.name
            assert server.count(REFRESH) == count
            assert tm.get_token() == Authorized(old.access_token)  # backing off: no POST
            assert server.count(REFRESH) == count
            clock.advance(61)
            REFRESH_FALLBACK.add("faults injected")
        fresh = tm.get_token()
        assert isinstance(fresh, Authorized) and fresh.access_token != old.access_token
    stored = cache.load()
    assert stored is not None and refresh_is_live(server, stored.refresh_token)


# ------------------------------------------------------------------ bad device-code answers


class Rewriting:
    """A transport that rewrites one field of the device-code answer on its way in."""

    def __init__(self, inner: Urllib3Transport, field: str, value: Any) -> None:
        self.inner, self.field, self.value = inner, field, value
        self.active = True

    def handle_request(self, request: Request) -> Response:
        response = self.inner.handle_request(request)
        if self.active and request.route == wire.ROUTE_DEVICE_CODE and response.status == 200:
            data = json.loads(response.body)
            if self.value is _MISSING:
                data.pop(self.field, None)
            else:
                data[self.field] = self.value
            return Response(response.status, response.headers, json.dumps(data).encode())
        return response

    def close(self) -> None:
        self.inner.close()


_MISSING = object()
BAD_INTERVALS = [0, -5, "x", None, 1e308, "NaN", True, [], {}, "", _MISSING, 1e-9, "1e999"]
BAD_EXPIRES = [0, -1, "x", None, "NaN", True, [], "", _MISSING, "-inf"]


@pytest.mark.parametrize("value", BAD_INTERVALS, ids=repr)
def test_invalid_interval_still_logs_in_at_a_sane_pace(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache, value: Any
) -> None:
    transport = Rewriting(Urllib3Transport(timeout=5), "interval", value)
    with make_manager(server, clock, cache, transport=transport) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        started = clock.monotonic()
        server.approve(pending.user_code)
        step_clock(clock, done=lambda: not poller_alive(), between=lambda: None)
        assert isinstance(tm.get_token(), Authorized), tm.status().last_error
        elapsed = clock.monotonic() - started
        polls = server.count(POLL)
        # 5 s when unusable; a tiny one is floored at 1 s (and the server's slow_down
        # raises it); a huge one is capped at 300 s.
        assert polls <= elapsed / 1.0 + 1
        assert elapsed <= wire.MAX_INTERVAL + 1
        if value is _MISSING or not isinstance(value, (int, float)) or isinstance(value, bool):
            assert elapsed >= wire.DEFAULT_INTERVAL
    transport.close()
    BAD_DEVICE_ANSWER.add("invalid answers tried")


@pytest.mark.parametrize("value", BAD_EXPIRES, ids=repr)
def test_invalid_expires_in_is_a_retryable_failure(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache, value: Any
) -> None:
    transport = Rewriting(Urllib3Transport(timeout=5), "expires_in", value)
    with make_manager(server, clock, cache, transport=transport) as tm:
        result = tm.get_token()
        assert isinstance(result, Failed) and result.retryable
        assert "expires_in" in result.message
        assert not poller_alive()
        transport.active = False
        clock.advance(1.0)  # past the start backoff (no new code request at once)
        assert isinstance(tm.get_token(), Pending)
    transport.close()
    BAD_DEVICE_ANSWER.add("invalid answers tried")


def test_server_without_interval_means_five_seconds(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache
) -> None:
    server.include_interval = False
    with make_manager(server, clock, cache) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        started = clock.monotonic()
        step_clock(clock, done=lambda: server.count(POLL) >= 3, between=lambda: None)
        # Three polls cannot happen sooner than 5 s apart.
        assert clock.monotonic() - started >= 3 * wire.DEFAULT_INTERVAL - 1
        server.approve(pending.user_code)
        step_clock(clock, done=lambda: not poller_alive(), between=lambda: None)
        assert isinstance(tm.get_token(), Authorized)
    BAD_DEVICE_ANSWER.add("invalid answers tried")


# ------------------------------------------------------------------ terminal storms


def _run_to_end(tm: TokenManager, clock: FakeClock) -> None:
    assert isinstance(tm.get_token(), Pending)
    step_clock(clock, done=lambda: not poller_alive(), between=lambda: None, step=5.0)


@pytest.mark.parametrize(
    "retry_after", ["99999999", "1" + "0" * 40, "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_huge_retry_after_ends_at_expiry_without_spinning(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache, retry_after: str
) -> None:
    server.inject(POLL, status=429, headers={"Retry-After": retry_after})
    with make_manager(server, clock, cache) as tm:
        _run_to_end(tm, clock)
        assert server.count(POLL) == 1
        status = tm.status()
        assert status.pending is None and "expired" in (status.last_error or "")
    TERMINAL.add("storms run")
    TERMINAL.add("faults injected")


def test_slow_down_storm_gives_up_with_a_clock_drift_hint(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache
) -> None:
    server.inject(POLL, status=400, json={"error": "slow_down"}, times=50)
    with make_manager(server, clock, cache) as tm:
        _run_to_end(tm, clock)
        assert server.count(POLL) == 7  # gives up after the sixth slow_down
        assert "clock" in (tm.status().last_error or "")
    TERMINAL.add("storms run")
    TERMINAL.add("faults injected", 7)


def test_5xx_until_expiry_polls_a_bounded_number_of_times(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache
) -> None:
    server.inject(POLL, status=502, body="<html>502</html>", times=10_000)
    with make_manager(server, clock, cache) as tm:
        _run_to_end(tm, clock)
        polls = server.count(POLL)
        # Backoff reaches 60 s: far fewer polls than lifetime / interval.
        assert polls <= LIFETIME / 60 + 8
        assert "expired" in (tm.status().last_error or "")
    TERMINAL.add("storms run")
    TERMINAL.add("faults injected", polls)


def test_grant_processed_but_answer_lost_ends_cleanly_and_can_restart(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache
) -> None:
    with make_manager(server, clock, cache) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        server.approve(pending.user_code)
        server.inject(POLL, drop=True)  # the server issues tokens; the answer is cut
        step_clock(clock, done=lambda: not poller_alive(), between=lambda: None)
        # The code is single-use: the flow ends with a clear error...
        assert "expired" in (tm.status().last_error or "")
        # ...and the next call starts a new sign-in instead of hanging on the old one.
        again = tm.get_token()
        assert isinstance(again, Pending) and again.user_code != pending.user_code
    TERMINAL.add("storms run")
    TERMINAL.add("faults injected")
