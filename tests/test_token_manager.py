"""TokenManager over real sockets against the local server, with a shared FakeClock.

The poll thread waits on the FakeClock, so each ``clock.advance()`` lets it take one
step; nothing here sleeps real seconds.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import pytest

from textstack_sdk import (
    AuthorizationDenied,
    AuthorizationError,
    AuthorizationExpired,
    AuthorizationTimeout,
    Authorized,
    Failed,
    FileTokenCache,
    MemoryTokenCache,
    Pending,
    TokenManager,
    TokenSet,
)
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeClock, FakeTextStackServer

sys.path.insert(0, str(Path(__file__).parent))
from _tm_helpers import drive, manager, run_threads, seed, wait_until

pytestmark = pytest.mark.timeout(30)

CODE = "POST /auth/device/code"
POLL = "POST /auth/device/token"
REFRESH = "POST /auth/refresh-mobile"


def approve_when_polled(server: FakeTextStackServer, clock: FakeClock, pending: Pending) -> None:
    server.approve(pending.user_code)
    clock.wait_for_waiters(1)
    clock.advance(5)


# ---------------------------------------------------------------- cached token


def test_valid_cached_token_needs_no_request(server, clock, cache) -> None:
    tokens = seed(server, cache)
    with manager(server, clock, cache) as tm:
        for _ in range(3):
            assert tm.get_token() == Authorized(tokens.access_token)
        assert tm.status().source == "cache"
    assert server.count(REFRESH) == 0
    assert server.count(CODE) == 0


def test_token_inside_the_skew_margin_is_refreshed(server, clock, cache) -> None:
    tokens = seed(server, cache)
    clock.advance(900 - 29)  # 29 s before exp: inside the 30 s margin
    with manager(server, clock, cache) as tm:
        # Still valid: handed out at once while one daemon thread refreshes it.
        assert tm.get_token() == Authorized(tokens.access_token)
        wait_until(lambda: tm.get_token() != Authorized(tokens.access_token))
        assert tm.status().source == "refresh"
    assert server.count(REFRESH) == 1


# ---------------------------------------------------------------- refresh


def test_expired_token_is_refreshed_and_rotation_saved_first(server, clock, cache) -> None:
    old = seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        result = tm.get_token()
        assert isinstance(result, Authorized)
        assert result.access_token != old.access_token
        on_disk = cache.load()
        assert on_disk is not None
        assert on_disk.access_token == result.access_token
        assert on_disk.refresh_token != old.refresh_token
        assert tm.status().source == "refresh"
    assert server.count(REFRESH) == 1


def test_64_threads_with_an_expired_token_cause_one_refresh(server, clock, cache) -> None:
    seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        results = run_threads(64, tm.get_token)
    assert server.count(REFRESH) == 1
    assert server.count(CODE) == 0
    assert len({r.access_token for r in results if isinstance(r, Authorized)}) == 1
    assert all(isinstance(r, Authorized) for r in results)


def test_refresh_without_new_refresh_token_keeps_the_old_one(server, clock, cache) -> None:
    old = seed(server, cache)
    clock.advance(1000)
    server.inject(
        REFRESH,
        status=200,
        json={"accessToken": server.make_jwt({"exp": clock.time() + 900}), "refreshToken": None},
    )
    with manager(server, clock, cache) as tm:
        assert isinstance(tm.get_token(), Authorized)
    on_disk = cache.load()
    assert on_disk is not None and on_disk.refresh_token == old.refresh_token


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503, "json": {"error": "unavailable"}},
        {
            "status": 502,
            "body": b"<html><body>502 Bad Gateway</body></html>",
            "content_type": "text/html",
        },
        {"status": 200, "body": b"<html>captive portal</html>", "content_type": "text/html"},
        {"status": 429, "json": {}, "headers": {"Retry-After": "90"}},
        {"drop": True},
        {"delay": 10.0},
    ],
)
def test_transient_refresh_failure_keeps_tokens_and_starts_no_flow(
    server, clock, cache, fault
) -> None:
    old = seed(server, cache)
    clock.advance(1000)
    server.inject(REFRESH, **fault)
    with manager(server, clock, cache, timeout=0.5) as tm:
        first = tm.get_token()
        assert isinstance(first, Failed) and first.retryable
        # No hammering: calls during the backoff send nothing and start no flow.
        for _ in range(10):
            assert isinstance(tm.get_token(), Failed)
        assert server.count(REFRESH) == 1
        assert server.count(CODE) == 0
        assert cache.load() == old


@pytest.mark.parametrize("status", [503, 502, 429])
def test_refresh_recovers_after_the_backoff_when_the_server_is_back(
    server, clock, cache, status
) -> None:
    seed(server, cache)
    clock.advance(1000)
    server.inject(REFRESH, status=status, json={})
    with manager(server, clock, cache) as tm:
        assert isinstance(tm.get_token(), Failed)
        clock.advance(119)
        assert isinstance(tm.get_token(), Authorized)
    assert server.count(REFRESH) == 2
    assert server.count(CODE) == 0


def test_lost_refresh_answer_is_not_replayed_in_a_loop(server, clock, cache) -> None:
    # The server rotated but the answer was lost: the old refresh token is dead. We
    # retry once after the backoff, learn the login is gone, and only then sign in.
    seed(server, cache)
    clock.advance(1000)
    server.inject(REFRESH, drop=True)
    with manager(server, clock, cache) as tm:
        assert isinstance(tm.get_token(), Failed)
        assert server.count(REFRESH) == 1
        clock.advance(2.5)
        assert isinstance(tm.get_token(), Pending)
    assert server.count(REFRESH) == 2
    assert server.count(CODE) == 1


def test_transient_failure_returns_the_access_token_while_exp_allows(server, clock, cache) -> None:
    old = seed(server, cache)
    clock.advance(900 - 10)  # inside the skew margin, not yet expired
    server.inject(REFRESH, status=503, json={})
    with manager(server, clock, cache) as tm:
        assert tm.get_token() == Authorized(old.access_token)
    assert server.count(CODE) == 0


def test_refresh_401_forgets_the_login_and_returns_pending_in_the_same_call(
    server, clock, cache
) -> None:
    seed(server, cache)
    server.revoke_all()
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        result = tm.get_token()
        assert isinstance(result, Pending)
        assert server.count(REFRESH) == 1
        assert server.count(CODE) == 1
        assert cache.load() is None


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_refresh_401_after_another_process_rotated_adopts_its_tokens(
    server, clock, cache, kind
) -> None:
    seed(server, cache)
    if kind == "memory":  # no lock, no shared sign-in: only the 401 branch can adopt
        cache = MemoryTokenCache(cache.load())
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        # Another writer outside our lock (e.g. the .NET tool) rotates while we send.
        stale_refresh = cache.load().refresh_token  # type: ignore[union-attr]
        server.revoke_all()
        server_access, server_refresh = server.issue_tokens()
        newer = TokenSet(server_access, server_refresh, decode_exp(server_access))
        original_send = tm._send_refresh

        def racing_send(sent):  # type: ignore[no-untyped-def]
            outcome = original_send(sent)
            cache.save(newer)
            return outcome

        tm._send_refresh = racing_send  # type: ignore[method-assign]
        result = tm.get_token()
        assert result == Authorized(newer.access_token)
        assert cache.load() == newer
        assert tm.status().last_error is None  # adopted: never taken for a dead login
    assert server.count(REFRESH) == 1
    assert server.count(CODE) == 0
    assert stale_refresh != newer.refresh_token


def test_the_rotated_pair_is_saved_before_any_caller_can_receive_it(
    server, clock, tmp_path
) -> None:
    visible_at_save: list[bool] = []
    managers: list[TokenManager] = []

    class Watching(FileTokenCache):
        def save(self, tokens: TokenSet) -> bool:
            # What the lock-free hot path would hand out at this instant.
            snap = managers[0]._snapshot if managers else None
            visible_at_save.append(snap is not None and snap[0].access_token == tokens.access_token)
            return super().save(tokens)

    cache = Watching(tmp_path / "textstack" / "mcp-token.json")
    seed(server, cache)
    visible_at_save.clear()
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        managers.append(tm)
        result = tm.get_token()
        assert isinstance(result, Authorized)
    assert visible_at_save == [False]
    assert FileTokenCache(cache.path).load().access_token == result.access_token  # type: ignore[union-attr]


def test_unreadable_exp_does_not_cause_a_refresh_storm(server, clock, cache) -> None:
    seed(server, cache)
    clock.advance(1000)
    server.inject(
        REFRESH,
        status=200,
        times=100,
        json={"accessToken": "opaque-token", "refreshToken": "r-next"},
    )
    with manager(server, clock, cache) as tm:
        for _ in range(50):
            assert tm.get_token() == Authorized("opaque-token")
        assert server.count(REFRESH) == 1
        clock.advance(61)
        assert tm.get_token() == Authorized("opaque-token")  # advisory: refreshed behind
        wait_until(lambda: server.count(REFRESH) == 2)


def test_invalidate_forces_exactly_one_refresh(server, clock, cache) -> None:
    tokens = seed(server, cache)
    with manager(server, clock, cache) as tm:
        tm.invalidate("some-other-token")
        assert tm.get_token() == Authorized(tokens.access_token)
        tm.invalidate(tokens.access_token)
        fresh = tm.get_token()
        assert isinstance(fresh, Authorized) and fresh.access_token != tokens.access_token
        assert tm.get_token() == fresh
    assert server.count(REFRESH) == 1


# ---------------------------------------------------------------- device flow


def test_64_threads_without_a_token_share_one_device_code(server, clock, cache) -> None:
    with manager(server, clock, cache) as tm:
        results = run_threads(64, tm.get_token)
    assert server.count(CODE) == 1
    assert all(isinstance(r, Pending) for r in results)
    assert len({r.user_code for r in results}) == 1  # type: ignore[union-attr]


def test_get_token_returns_pending_at_once_and_login_completes(server, clock, cache) -> None:
    with manager(server, clock, cache) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        assert pending.verification_uri.endswith("/device")
        assert tm.get_token() == pending
        approve_when_polled(server, clock, pending)
        token = tm.wait_for_token(timeout=60)
        assert isinstance(token, Authorized)
        assert tm.get_token() == token
        assert tm.status().source == "device"
    on_disk = cache.load()
    assert on_disk is not None and on_disk.access_token == token.access_token


def test_prompt_is_printed_once_to_stderr(server, clock, cache, capsys) -> None:
    with TokenManager(
        api_url=server.api_url, site_host=server.site_host, cache=cache, clock=clock
    ) as tm:
        run_threads(8, tm.get_token)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("authentication required — open ") == 1


def test_slow_down_adds_five_seconds_for_the_rest_of_the_flow(server, clock, cache) -> None:
    server.inject(POLL, status=400, json={"error": "slow_down"}, times=2)
    with manager(server, clock, cache) as tm:
        assert isinstance(tm.get_token(), Pending)
        t0 = clock.monotonic()
        polls = []
        for expected_interval in (5, 10, 15, 15):
            clock.wait_for_waiters(1)
            clock.advance(expected_interval - 0.5)
            clock.wait_for_waiters(1)
            assert server.count(POLL) == len(polls)  # not yet
            clock.advance(0.5)
            clock.wait_for_waiters(1)
            polls.append(clock.monotonic() - t0)
            assert server.count(POLL) == len(polls)
    assert polls == pytest.approx([5, 15, 30, 45])


def test_transient_poll_failures_back_off_and_login_still_completes(server, clock, cache) -> None:
    server.inject(POLL, status=503, body=b"<html>down</html>", content_type="text/html", times=2)
    with manager(server, clock, cache) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        server.approve(pending.user_code)
        drive(clock, lambda: isinstance(tm.get_token(), Authorized))
    assert server.count(POLL) == 3


def test_denial_raises_and_a_later_call_starts_a_new_flow(server, clock, cache) -> None:
    with manager(server, clock, cache) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        server.deny(pending.user_code)
        clock.wait_for_waiters(1)
        waiter_error: list[BaseException] = []

        def waiter() -> None:
            try:
                tm.wait_for_token(timeout=120)
            except BaseException as exc:
                waiter_error.append(exc)

        t = threading.Thread(target=waiter)
        t.start()
        clock.wait_for_waiters(2)
        clock.advance(5)
        t.join(10)
        assert isinstance(waiter_error[0], AuthorizationDenied)
        again = tm.get_token()
        assert isinstance(again, Pending)
        assert again.user_code != pending.user_code
    assert server.count(CODE) == 2


def test_expiry_raises_and_clears_the_flow(server, clock, cache) -> None:
    with manager(server, clock, cache) as tm:
        assert isinstance(tm.get_token(), Pending)
        errors: list[BaseException] = []

        def waiter() -> None:
            try:
                tm.wait_for_token()
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=waiter)
        t.start()
        clock.wait_for_waiters(2)  # the poller and the waiter, both on this flow
        drive(clock, lambda: not t.is_alive())
        t.join(10)
        assert isinstance(errors[0], AuthorizationExpired)
        assert tm.status().pending is None
        assert isinstance(tm.get_token(), Pending)


def test_wait_for_token_timeout(server, clock, cache) -> None:
    with manager(server, clock, cache) as tm:
        errors: list[BaseException] = []

        def waiter() -> None:
            try:
                tm.wait_for_token(timeout=12)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=waiter)
        t.start()
        clock.wait_for_waiters(2)
        clock.advance(13)
        t.join(10)
        assert isinstance(errors[0], AuthorizationTimeout)


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_logout_cancels_the_poll_and_a_late_answer_brings_nothing_back(
    server, clock, cache, kind
) -> None:
    if kind == "memory":  # no shared record: the flow's own cancel flag is the only guard
        cache = MemoryTokenCache()
    with manager(server, clock, cache) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        poller = next(t for t in threading.enumerate() if t.name == "textstack-device-poll")
        server.approve(pending.user_code)
        release = threading.Event()
        server.inject(POLL, delay=20, release=release)  # the redeeming answer, held
        try:
            clock.wait_for_waiters(1)
            clock.advance(5)
            wait_until(lambda: server.count(POLL) == 1)  # tokens are on their way
            tm.logout()
        finally:
            release.set()
        poller.join(10)
        assert not poller.is_alive()
        assert tm.status().pending is None
        assert cache.load() is None
        assert tm.status().source == "none"
        assert not isinstance(tm.get_token(), Authorized)
    assert server.count(POLL) == 1


def test_a_poll_thread_that_crashes_ends_the_flow_and_the_next_call_starts_afresh(
    server, clock, cache
) -> None:
    with manager(server, clock, cache) as tm:
        first = tm.get_token()
        assert isinstance(first, Pending)

        def broken_poll(flow):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug in the poller")

        tm._flows._poll_once = broken_poll  # type: ignore[method-assign]
        poller = next(t for t in threading.enumerate() if t.name == "textstack-device-poll")
        raised: list[BaseException] = []

        def waiter() -> None:
            try:
                tm.wait_for_token(timeout=20)
            except AuthorizationError as exc:
                raised.append(exc)

        waiting = threading.Thread(target=waiter)
        waiting.start()
        clock.wait_for_waiters(2)  # the poll thread and the waiter
        clock.advance(5)
        poller.join(10)
        waiting.join(10)
        assert not poller.is_alive() and not waiting.is_alive()
        # The waiter hears why, at once: not a timeout, not a hang.
        assert len(raised) == 1 and "stopped unexpectedly" in str(raised[0])
        assert tm.status().pending is None
        assert "stopped unexpectedly" in (tm.status().last_error or "")
        del tm._flows._poll_once  # the bug is gone: the next call starts a new sign-in
        second = tm.get_token()
        assert isinstance(second, Pending) and second.user_code != first.user_code
        server.approve(second.user_code)
        drive(clock, lambda: isinstance(tm.get_token(), Authorized), step=5)
    assert server.count(CODE) == 2


def test_a_poll_thread_whose_ending_also_fails_still_ends_the_flow(server, clock, cache) -> None:
    with manager(server, clock, cache) as tm:
        first = tm.get_token()
        assert isinstance(first, Pending)

        def broken(*args):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug")

        tm._flows._poll_once = broken  # type: ignore[method-assign]
        tm._flows._finish_flow = broken  # type: ignore[method-assign]
        poller = next(t for t in threading.enumerate() if t.name == "textstack-device-poll")
        clock.wait_for_waiters(1)
        clock.advance(5)
        poller.join(10)
        assert not poller.is_alive()
        del tm._flows._poll_once, tm._flows._finish_flow
        # A new poll thread (the still-valid shared code may be taken up again).
        second = tm.get_token()
        assert isinstance(second, Pending)
        assert any(t.name == "textstack-device-poll" for t in threading.enumerate())
        server.approve(second.user_code)
        drive(clock, lambda: isinstance(tm.get_token(), Authorized), step=5)


def test_logout_clears_memory_and_cache(server, clock, cache) -> None:
    seed(server, cache)
    with manager(server, clock, cache) as tm:
        assert isinstance(tm.get_token(), Authorized)
        tm.logout()
        assert not cache.path.exists()
        assert isinstance(tm.get_token(), Pending)


def test_another_process_logout_is_noticed_on_the_slow_path(server, clock, cache) -> None:
    seed(server, cache)
    with manager(server, clock, cache) as tm:
        assert isinstance(tm.get_token(), Authorized)
        cache.clear()
        clock.advance(1000)  # leave the fast path
        assert isinstance(tm.get_token(), Pending)
    assert server.count(REFRESH) == 0


def test_inline_polling_without_a_background_thread(server, clock, cache) -> None:
    before = {t.name for t in threading.enumerate()}
    with manager(server, clock, MemoryTokenCache(), background=False) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        assert "textstack-device-poll" not in {t.name for t in threading.enumerate()} - before
        server.approve(pending.user_code)
        assert tm.get_token() == pending  # not yet due
        clock.advance(5)
        assert isinstance(tm.get_token(), Authorized)
    assert server.count(POLL) == 1


def test_close_stops_the_poll_thread(server, clock, cache) -> None:
    tm = manager(server, clock, cache)
    assert isinstance(tm.get_token(), Pending)
    tm.close()
    assert "textstack-device-poll" not in {t.name for t in threading.enumerate()}
    assert isinstance(tm.get_token(), Failed)


def test_device_code_request_failure_is_retryable_and_not_cached(server, clock, cache) -> None:
    server.inject(CODE, status=503, json={})
    with manager(server, clock, cache) as tm:
        first = tm.get_token()
        assert isinstance(first, Failed) and first.retryable
        # Every caller asking at once would hammer a failing server: a short backoff.
        assert isinstance(tm.get_token(), Failed)
        assert server.count(CODE) == 1
        clock.advance(1.0)
        assert isinstance(tm.get_token(), Pending)
    assert server.count(CODE) == 2


# ---------------------------------------------------------------- secrets


def test_no_secret_in_logs_reprs_or_status(server, clock, cache, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []
    with manager(server, clock, cache) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        server.approve(pending.user_code)
        clock.wait_for_waiters(1)
        clock.advance(5)
        token = tm.wait_for_token(timeout=30)
        stored = cache.load()
        assert stored is not None and stored.refresh_token
        secrets += [token.access_token, stored.refresh_token]
        clock.advance(1000)
        refreshed = tm.get_token()
        assert isinstance(refreshed, Authorized)
        stored = cache.load()
        assert stored is not None and stored.refresh_token
        secrets += [refreshed.access_token, stored.refresh_token]
        shown = [
            repr(tm),
            repr(tm.status()),
            str(tm.status()),
            repr(token),
            str(token),
            repr(stored),
            repr(cache),
            repr(refreshed),
        ]
        tm.logout()
    device_codes = [
        json.loads(r.body)["device_code"]
        for r in server.requests
        if r.path.endswith("/device/token")
    ]
    secrets += device_codes
    text = caplog.text + "\n".join(shown)
    for secret in secrets:
        assert secret[:12] not in text
