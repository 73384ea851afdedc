"""The refresh windows and what a cache file is believed about expiry.

Advisory window (from ``exp - skew`` to ``exp``): nobody waits for the refresh. Mandatory
window (past ``exp``): callers wait on the one flight, each for a bounded time. An
access token whose exp cannot be read is believed on a cache's word only briefly.

Slow answers are held by the local server until the test sets an Event, so "nobody
waited" is shown by every caller having returned while the answer was still held.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from textstack_sdk import (
    Authorized,
    Failed,
    FileTokenCache,
    MemoryTokenCache,
    Pending,
    TokenSet,
)
from textstack_sdk._filelock import InterProcessLock

sys.path.insert(0, str(Path(__file__).parent))
from _tm_helpers import manager, run_threads, seed, unsigned_jwt, wait_until

pytestmark = pytest.mark.timeout(30)

CODE = "POST /auth/device/code"
REFRESH = "POST /auth/refresh-mobile"


# ---------------------------------------------------------------- advisory window


def test_inside_the_margin_64_callers_never_wait_for_a_slow_refresh(server, clock, cache) -> None:
    tokens = seed(server, cache)
    clock.advance(900 - 20)  # 20 s before exp: inside the 30 s margin, still valid
    release = threading.Event()
    server.inject(REFRESH, delay=60, release=release)  # a very slow auth server
    try:
        with manager(server, clock, cache) as tm:
            # run_threads joins with a bound far below the held answer's 60 s: a caller
            # that waited for the refresh would still be blocked when it gives up.
            results = run_threads(64, tm.get_token)
            assert results == [Authorized(tokens.access_token)] * 64
            assert not release.is_set()
            wait_until(lambda: server.count(REFRESH) == 1)  # the one refresh, held
            assert tm.get_token() == Authorized(tokens.access_token)
            release.set()
            wait_until(lambda: tm.get_token() != Authorized(tokens.access_token))
            assert tm.status().source == "refresh"
    finally:
        release.set()
    assert server.count(REFRESH) == 1
    assert server.count(CODE) == 0


def test_inside_the_margin_a_failing_refresh_keeps_the_token_and_backs_off(
    server, clock, cache
) -> None:
    tokens = seed(server, cache)
    clock.advance(900 - 25)
    server.inject(REFRESH, status=503, times=2)
    # Inline (no thread), so each attempt has ended when get_token returns.
    with manager(server, clock, cache, background=False) as tm:
        assert tm.get_token() == Authorized(tokens.access_token)
        assert server.count(REFRESH) == 1
        for _ in range(20):  # backing off: no second attempt yet
            assert tm.get_token() == Authorized(tokens.access_token)
        assert server.count(REFRESH) == 1
        clock.advance(3)  # past the first backoff (2 s), still before exp
        assert tm.get_token() == Authorized(tokens.access_token)
        assert server.count(REFRESH) == 2
        assert tm.get_token() == Authorized(tokens.access_token)
    assert server.count(CODE) == 0  # a transient failure never starts a sign-in


def test_inside_the_margin_another_process_holding_the_lock_costs_no_wait(
    server, clock, cache
) -> None:
    tokens = seed(server, cache)
    clock.advance(900 - 20)
    elsewhere = InterProcessLock(cache.lock_path)  # another open file: another process
    assert elsewhere.acquire(1)
    try:
        # Inline (no thread): the caller itself tries the lock, once, without waiting.
        with manager(server, clock, cache, background=False, lock_timeout=60) as tm:
            started = time.monotonic()
            for _ in range(3):
                assert tm.get_token() == Authorized(tokens.access_token)
            # A try, not a wait: three calls take far less than one lock wait would.
            assert time.monotonic() - started < 1.5
    finally:
        elsewhere.release()
    assert server.count(REFRESH) == 0


# ---------------------------------------------------------------- mandatory window


def test_past_exp_no_caller_waits_longer_than_one_request_plus_a_margin(
    server, clock, cache
) -> None:
    tokens = seed(server, cache)
    clock.advance(1000)  # past exp
    elsewhere = InterProcessLock(cache.lock_path)  # a stuck holder of the file lock
    assert elsewhere.acquire(1)
    try:
        with manager(server, clock, cache, timeout=1, lock_timeout=60) as tm:
            started = time.monotonic()
            results = run_threads(8, tm.get_token)
            waited = time.monotonic() - started
            assert all(isinstance(r, Failed) and r.retryable for r in results), results
            # One request's deadline (1 s) plus the 2 s margin; before, the lock's 60 s.
            assert waited < 10
            elsewhere.release()
            wait_until(lambda: isinstance(tm.get_token(), Authorized))
            assert tm.get_token() != Authorized(tokens.access_token)
    finally:
        if elsewhere.held:
            elsewhere.release()
    assert server.count(REFRESH) == 1


# ---------------------------------------------------------------- what a cache is believed


def write_cache(cache: FileTokenCache, access: str, refresh: str, expires_at: str) -> None:
    cache.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = (
        f'{{"accessToken": "{access}", "refreshToken": "{refresh}", '
        f'"accessExpiresAt": "{expires_at}"}}'
    )
    cache.path.write_text(body)
    cache.path.chmod(0o600)


def iso(when: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat(timespec="seconds")


def test_an_opaque_token_is_not_served_for_the_hour_the_file_claims(server, clock, cache) -> None:
    _, refresh = server.issue_tokens()
    write_cache(cache, "opaque-access", refresh, iso(clock.time() + 3600))
    with manager(server, clock, cache) as tm:
        result = tm.get_token()
        assert isinstance(result, Authorized) and result.access_token != "opaque-access"
    assert server.count(REFRESH) == 1


def test_an_opaque_token_is_believed_within_a_fresh_tokens_grace(server, clock, cache) -> None:
    _, refresh = server.issue_tokens()
    # What this package writes for an opaque token it just received: 60 s + 30 s skew.
    write_cache(cache, "opaque-access", refresh, iso(clock.time() + 85))
    with manager(server, clock, cache) as tm:
        assert tm.get_token() == Authorized("opaque-access")
    assert server.count(REFRESH) == 0


def test_a_cache_never_lengthens_a_jwt_past_its_exp(server, clock) -> None:
    _, refresh = server.issue_tokens()
    expired = unsigned_jwt({"exp": clock.time() - 10})
    cache = MemoryTokenCache(TokenSet(expired, refresh, clock.time() + 3600))
    with manager(server, clock, cache) as tm:
        result = tm.get_token()
        assert isinstance(result, Authorized) and result.access_token != expired
    assert server.count(REFRESH) == 1


def test_an_opaque_token_that_comes_back_is_not_refreshed_by_the_next_process(
    server, clock, cache
) -> None:
    _, refresh = server.issue_tokens()
    write_cache(cache, "opaque-access", refresh, iso(clock.time() + 3600))
    server.inject(
        REFRESH, status=200, json={"accessToken": "opaque-next", "refreshToken": "r-next"}
    )
    with manager(server, clock, cache) as first:
        assert first.get_token() == Authorized("opaque-next")
    with manager(server, clock, FileTokenCache(cache.path)) as second:
        for _ in range(10):
            assert second.get_token() == Authorized("opaque-next")
    assert server.count(REFRESH) == 1


def test_a_sign_in_start_behind_a_stuck_lock_is_a_bounded_wait_too(server, clock, cache) -> None:
    cache.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    elsewhere = InterProcessLock(cache.lock_path)
    assert elsewhere.acquire(1)
    try:
        with manager(server, clock, cache, timeout=1, lock_timeout=60) as tm:
            started = time.monotonic()
            result = tm.get_token()
            assert isinstance(result, Failed) and result.retryable
            assert time.monotonic() - started < 10  # 1 s + 2 s; before, the lock's 60 s
            elsewhere.release()
            wait_until(lambda: isinstance(tm.get_token(), Pending))
    finally:
        if elsewhere.held:
            elsewhere.release()
    assert server.count(CODE) == 1


# ---------------------------------------------------------------- a spent refresh token


class _SaveFails(FileTokenCache):
    def save(self, tokens: TokenSet) -> bool:
        return False


def test_two_managers_of_one_process_respect_each_others_spent_token(server, clock, cache) -> None:
    seed(server, cache)
    clock.advance(1000)
    spender = manager(server, clock, _SaveFails(cache.path))
    try:
        assert isinstance(spender.get_token(), Authorized)  # rotated, could not save
        with manager(server, clock, FileTokenCache(cache.path)) as other:
            result = other.get_token()
            assert isinstance(result, Failed) and result.retryable
            assert "could not save" in result.message
            assert server.count(REFRESH) == 1
    finally:
        spender.close()  # the rotated pair dies with it: the old token is free again
    with manager(server, clock, FileTokenCache(cache.path)) as after:
        assert isinstance(after.get_token(), Pending)  # presented; the server saw reuse
    assert server.count(REFRESH) == 2
