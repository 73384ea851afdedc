"""Adversarial tests of the token layer: races, lost tokens, hangs, leaks, hostile input.

Bugs this review found are fixed and marked ``# Fixed bug:``; they stay as regression
tests beside the rest. Concurrency is forced with
Events and Barriers; virtual time comes from a FakeClock shared with the server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from textstack_sdk import (
    AuthorizationDenied,
    AuthorizationError,
    Authorized,
    Failed,
    FileTokenCache,
    MemoryTokenCache,
    Pending,
    StaticTokenProvider,
    TokenManager,
    TokenSet,
    provider_from_env,
)
from textstack_sdk._http import Request, Response
from textstack_sdk.testing import FakeClock, MockTransport

sys.path.insert(0, str(Path(__file__).parent))
from _tm_helpers import manager, seed, unsigned_jwt, wait_until

pytestmark = pytest.mark.timeout(30)

CODE = "POST /auth/device/code"
POLL = "POST /auth/device/token"
REFRESH = "POST /auth/refresh-mobile"
API = "http://127.0.0.1:9/api"


# ---------------------------------------------------------------- helpers


def json_response(status: int, payload: Any, headers: Optional[dict[str, str]] = None) -> Response:
    return Response(status, headers or {}, json.dumps(payload).encode())


DEVICE_CODE_SECRET = "DEVSECRETdevsecret0123456789"


def device_code_answer(**overrides: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "device_code": DEVICE_CODE_SECRET,
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://textstack.app/device",
        "expires_in": 600,
        "interval": 5,
    }
    answer.update(overrides)
    return answer


def mock_manager(
    handler: Callable[[Request], Response], clock: FakeClock, cache: Any = None, **options: Any
) -> tuple[TokenManager, MockTransport]:
    transport = MockTransport(handler)
    options.setdefault("timeout", 5)
    options.setdefault("prompt", False)
    tm = TokenManager(
        api_url=API,
        site_host="textstack.app",
        cache=MemoryTokenCache() if cache is None else cache,
        transport=transport,
        clock=clock,
        **options,
    )
    return tm, transport


def routes(transport: MockTransport, suffix: str) -> int:
    return sum(1 for r in transport.requests if r.url.endswith(suffix))


class FlakyCache(FileTokenCache):
    """A FileTokenCache whose next ``fail_saves`` saves fail like a full disk."""

    fail_saves = 0

    def save(self, tokens: TokenSet) -> bool:
        if self.fail_saves > 0:
            self.fail_saves -= 1
            return False
        return super().save(tokens)


# ---------------------------------------------------------------- P1: lost tokens


# Fixed bug: _refresh() force-syncs from disk under the file lock. After a rotated token could
# not be saved (disk full), the disk still holds the spent generation; the force-sync
# installs it over the live in-memory tokens and replays the spent refresh token. The
# server sees reuse, revokes the family, and the user is logged out (device flow).
def test_rotated_token_that_could_not_be_saved_is_not_replaced_by_the_stale_disk_copy(
    server, clock, tmp_path
) -> None:
    cache = FlakyCache(tmp_path / "textstack" / "mcp-token.json")
    old = seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        cache.fail_saves = 1
        first = tm.get_token()
        assert isinstance(first, Authorized) and first.access_token != old.access_token
        assert cache.load() == old  # the save failed: disk still has the spent generation
        clock.advance(1000)
        second = tm.get_token()
        assert isinstance(second, Authorized), second
    assert server.count(CODE) == 0
    assert server.count(REFRESH) == 2
    on_disk = cache.load()
    assert on_disk is not None and on_disk.access_token == second.access_token


# Fixed bug: same root cause through invalidate(): the stale disk copy is re-installed by the
# force-sync, so the token the API just refused comes back instead of a refresh.
def test_invalidate_after_a_failed_save_refreshes_the_live_generation(
    server, clock, tmp_path
) -> None:
    cache = FlakyCache(tmp_path / "textstack" / "mcp-token.json")
    seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        cache.fail_saves = 1
        live = tm.get_token()
        assert isinstance(live, Authorized)
        tm.invalidate(live.access_token)
        again = tm.get_token()
        assert isinstance(again, Authorized) and again.access_token != live.access_token
    assert server.count(CODE) == 0


def test_rotated_token_is_on_disk_before_any_thread_receives_it(server, clock, cache) -> None:
    seed(server, cache)
    clock.advance(1000)
    seen_on_disk: list[bool] = []
    with manager(server, clock, cache) as tm:
        barrier = threading.Barrier(16)

        def body() -> None:
            barrier.wait()
            result = tm.get_token()
            assert isinstance(result, Authorized)
            disk = cache.load()
            seen_on_disk.append(disk is not None and disk.access_token == result.access_token)

        threads = [threading.Thread(target=body) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert seen_on_disk == [True] * 16
    assert server.count(REFRESH) == 1


def test_refresh_racing_logout_ends_logged_out(clock) -> None:
    entered, release = threading.Event(), threading.Event()

    def handler(request: Request) -> Response:
        if request.url.endswith("/auth/refresh-mobile"):
            entered.set()
            assert release.wait(5)
            return json_response(200, {"accessToken": "new-access", "refreshToken": "new-refresh"})
        return json_response(200, device_code_answer())

    cache = MemoryTokenCache(TokenSet("old-access", "old-refresh", None))
    tm, _ = mock_manager(handler, clock, cache)
    with tm:
        out: list[object] = []
        worker = threading.Thread(target=lambda: out.append(tm.get_token()))
        worker.start()
        assert entered.wait(5)
        tm.logout()
        release.set()
        worker.join(5)
        assert not worker.is_alive()
        assert not isinstance(out[0], Authorized)  # logout's word wins
        assert cache.load() is None
        assert tm.status().has_refresh_token is False


# ---------------------------------------------------------------- P1/P2: hangs


# Fixed bug: TokenManager.close() does not call _check_fork(). After a fork without the
# at-fork hooks (uWSGI), a lock held by a parent thread at fork time stays held and
# close() (and __exit__) blocks forever; every other entry point resets first.
@pytest.mark.timeout(10)
def test_close_after_a_fork_without_hooks_does_not_hang(clock) -> None:
    tm, _ = mock_manager(lambda r: json_response(500, {}), clock)
    inherited = tm._lock
    inherited.acquire()  # held by a parent thread that does not exist in the child
    tm._pid = -1  # as if this were a child forked without os.register_at_fork hooks
    try:
        done = threading.Event()
        threading.Thread(target=lambda: (tm.close(), done.set()), daemon=True).start()
        assert done.wait(1.0), "close() blocked on a lock inherited across fork"
    finally:
        inherited.release()


def test_get_token_after_a_fork_without_hooks_does_not_hang(clock) -> None:
    access = unsigned_jwt({"exp": clock.time() + 900})
    cache = MemoryTokenCache(TokenSet(access, "a-refresh", clock.time() + 900))
    tm, _ = mock_manager(lambda r: json_response(500, {}), clock, cache)
    inherited = tm._lock
    inherited.acquire()
    tm._pid = -1
    try:
        out: list[object] = []
        t = threading.Thread(target=lambda: out.append(tm.get_token()), daemon=True)
        t.start()
        t.join(2)
        assert out == [Authorized(access)]
    finally:
        inherited.release()


# Fixed bug: the prompt callback runs before the start flight's Future is resolved, so the
# callers that arrived during the device-code request (waiting on that flight) stay
# blocked for as long as the callback runs (a browser launch, a notebook display,
# input()) instead of getting the Pending at once. Fix: resolve the flight first.
def test_a_slow_prompt_callback_does_not_block_callers_waiting_on_the_flight(clock) -> None:
    in_request, answer, in_prompt, release = (threading.Event() for _ in range(4))

    def handler(request: Request) -> Response:
        in_request.set()
        answer.wait(5)
        return json_response(200, device_code_answer())

    def slow_prompt(pending: Pending) -> None:
        in_prompt.set()
        release.wait(5)

    tm, _ = mock_manager(handler, clock, prompt=slow_prompt)
    with tm:
        first = threading.Thread(target=tm.get_token)
        first.start()
        out: list[object] = []
        other = threading.Thread(target=lambda: out.append(tm.get_token()))
        try:
            assert in_request.wait(5)
            flight = tm._flows.start_flight
            assert flight is not None
            other.start()
            # Until `other` waits on the flight's Future (its Condition has a waiter).
            wait_until(lambda: len(flight._condition._waiters) > 0)  # type: ignore[attr-defined]
            answer.set()
            assert in_prompt.wait(5)
            other.join(1.0)
            assert out and isinstance(out[0], Pending), "get_token blocked on another's prompt"
        finally:
            answer.set()
            release.set()
            first.join(5)
            other.join(5)


# Fixed bug: wait_for_token(timeout=None) retries a retryable Failed forever (capped 10 s
# delay, no overall bound): a script's login hangs for ever while the device-code
# endpoint answers 503. It should give up (e.g. after the code lifetime / a max).
@pytest.mark.timeout(15)
def test_wait_for_token_without_timeout_is_bounded_when_the_server_stays_down() -> None:
    clock = FakeClock(auto_advance=True)
    tm, transport = mock_manager(lambda r: json_response(503, {}), clock)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            tm.wait_for_token()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=body, daemon=True)
    worker.start()
    worker.join(3.0)
    ended = not worker.is_alive()
    tm.close()  # unblocks the worker in either case
    worker.join(5)
    assert ended, f"still retrying after {routes(transport, '/device/code')} requests"
    assert isinstance(errors[0], AuthorizationError)


class CountingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        self.waits += 1
        return super().wait(seconds, cancel)


# Fixed bug: background=False: while one thread is inside an inline poll, wait_for_token in
# another thread spins: next_poll_at is in the past, so it waits 0 s, fails to claim the
# poll, and loops (100% CPU for the whole HTTP request).
def test_inline_wait_for_token_does_not_spin_while_another_thread_polls() -> None:
    clock = CountingClock()
    in_poll, release = threading.Event(), threading.Event()

    def handler(request: Request) -> Response:
        if request.url.endswith("/device/code"):
            return json_response(200, device_code_answer(interval=1))
        in_poll.set()
        release.wait(5)
        return json_response(400, {"error": "authorization_pending"})

    tm, _ = mock_manager(handler, clock, background=False, min_poll_interval=0)
    try:
        assert isinstance(tm.get_token(), Pending)
        clock.advance(1)
        poller = threading.Thread(target=tm.get_token)
        poller.start()
        assert in_poll.wait(5)

        def wait_quietly() -> None:
            with contextlib.suppress(AuthorizationError):
                tm.wait_for_token()

        waiter = threading.Thread(target=wait_quietly, daemon=True)
        before = clock.waits
        waiter.start()
        time.sleep(0.05)
        spins = clock.waits - before
        release.set()
        poller.join(5)
        assert spins < 20, f"{spins} clock waits in 50 ms: busy loop"
    finally:
        release.set()
        tm.close()


# ---------------------------------------------------------------- P2: flow semantics


# Fixed bug: wait_for_token reads self._flow after get_token() returned Pending. If the poll
# thread ended the flow with a denial in between, _flow is None, the loop `continue`s
# and get_token() starts a SECOND device flow: the denial is lost and the user is
# prompted again (or the script waits on a new code).
def test_denial_racing_wait_for_token_raises_denied_and_starts_no_second_flow(
    server, clock
) -> None:
    calls: list[str] = []
    holder: dict[str, TokenManager] = {}

    def deny_at_once(pending: Pending) -> None:
        calls.append(pending.user_code)
        if len(calls) > 1:
            return
        tm = holder["tm"]
        flow = tm._flows.current
        assert flow is not None
        server.deny(pending.user_code)
        clock.wait_for_waiters(1)
        clock.advance(5)
        assert flow.done.wait(5)

    tm = manager(server, clock, MemoryTokenCache(), prompt=deny_at_once)
    holder["tm"] = tm
    errors: list[BaseException] = []

    def body() -> None:
        try:
            tm.wait_for_token()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=body, daemon=True)
    worker.start()
    worker.join(2.0)
    tm.close()
    worker.join(5)
    assert server.count(CODE) == 1
    assert errors and isinstance(errors[0], AuthorizationDenied), errors


# Fixed bug: logout() while another thread's device-code request is in flight: the answer
# installs a new flow (and a poll thread) after logout returned, so a sign-in is pending
# and can bring tokens back after the user signed out.
def test_logout_during_the_device_code_request_leaves_no_flow(clock) -> None:
    entered, release = threading.Event(), threading.Event()

    def handler(request: Request) -> Response:
        entered.set()
        release.wait(5)
        return json_response(200, device_code_answer())

    tm, _ = mock_manager(handler, clock)
    with tm:
        starter = threading.Thread(target=tm.get_token)
        starter.start()
        assert entered.wait(5)
        tm.logout()
        release.set()
        starter.join(5)
        assert tm.status().pending is None


def test_close_wakes_a_blocked_wait_for_token(server, clock, cache) -> None:
    tm = manager(server, clock, cache)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            tm.wait_for_token()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=body)
    worker.start()
    clock.wait_for_waiters(2)  # the poll thread and the waiter
    tm.close()
    worker.join(5)
    assert not worker.is_alive()
    assert errors and isinstance(errors[0], AuthorizationError)


def test_64_threads_after_a_denial_share_one_new_code(server, clock, cache) -> None:
    with manager(server, clock, cache) as tm:
        first = tm.get_token()
        assert isinstance(first, Pending)
        server.deny(first.user_code)
        clock.wait_for_waiters(1)
        clock.advance(5)
        flow_done = time.monotonic() + 5
        while tm.status().pending is not None and time.monotonic() < flow_done:
            time.sleep(0.002)
        barrier = threading.Barrier(64)
        results: list[object] = []
        lock = threading.Lock()

        def body() -> None:
            barrier.wait()
            r = tm.get_token()
            with lock:
                results.append(r)

        threads = [threading.Thread(target=body) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert server.count(CODE) == 2
    codes = {r.user_code for r in results if isinstance(r, Pending)}
    assert len(codes) == 1 and first.user_code not in codes


# BUG (P3): with an unreadable exp (opaque tokens), a token another process just rotated
# is installed from the cache with received_at=None, i.e. "expired now", so every other
# process refreshes it again: N processes -> N rotations instead of one.
def test_second_process_does_not_rerotate_an_opaque_token_just_rotated(
    server, clock, tmp_path
) -> None:
    path = tmp_path / "textstack" / "mcp-token.json"
    cache_a, cache_b = FileTokenCache(path), FileTokenCache(path)
    seed(server, cache_a)
    clock.advance(1000)
    server.inject(
        REFRESH,
        status=200,
        times=10,
        json={"accessToken": "opaque-access", "refreshToken": "opaque-refresh"},
    )
    with manager(server, clock, cache_a) as a, manager(server, clock, cache_b) as b:
        assert a.get_token() == Authorized("opaque-access")
        assert b.get_token() == Authorized("opaque-access")
    assert server.count(REFRESH) == 1


# ---------------------------------------------------------------- secrets


# Fixed bug: a non-JSON 200 from POST /auth/device/code (e.g. a form-encoded OAuth answer, as
# GitHub sends without Accept: json) is put into Failed.message, status().last_error and
# a WARNING log through snippet(): the device_code leaks.
def test_form_encoded_device_code_answer_does_not_leak_the_device_code(clock, caplog) -> None:
    body = (
        f"device_code={DEVICE_CODE_SECRET}&user_code=ABCD-EFGH&"
        "verification_uri=https%3A%2F%2Fx%2Fdevice&expires_in=900&interval=5"
    ).encode()
    tm, _ = mock_manager(
        lambda r: Response(200, {"content-type": "application/x-www-form-urlencoded"}, body),
        clock,
    )
    caplog.set_level(logging.DEBUG)
    with tm:
        result = tm.get_token()
        assert isinstance(result, Failed)
        texts = [result.message, repr(result), str(tm.status())]
    texts += [r.getMessage() for r in caplog.records]
    assert not any(DEVICE_CODE_SECRET in t for t in texts)


def test_hostile_refresh_answers_leak_nothing_and_keep_the_tokens(clock, caplog) -> None:
    secret_access, secret_refresh = "SECRETaccess0123456789", "SECRETrefresh0123456789"
    answers = iter(
        [
            Response(200, {}, f"accessToken={secret_access}".encode()),
            Response(200, {}, b'{"accessToken": "bad token\\r\\nX-Evil: 1"}'),
            Response(200, {}, ("[" * 100000 + "]" * 100000).encode()),
            Response(500, {}, f'{{"refreshToken":"{secret_refresh}"}}'.encode()),
        ]
    )
    caplog.set_level(logging.DEBUG)
    cache = MemoryTokenCache(TokenSet("old-access", "old-refresh", None))
    tm, transport = mock_manager(lambda r: next(answers), clock, cache)
    with tm:
        seen: list[object] = []
        for _ in range(4):
            seen.append(tm.get_token())
            clock.advance(120)
        assert all(isinstance(r, Failed) and r.retryable for r in seen), seen
        assert cache.load() == TokenSet("old-access", "old-refresh", None)
        texts = [repr(r) for r in seen] + [str(tm.status())]
    texts += [r.getMessage() for r in caplog.records]
    for t in texts:
        assert secret_access not in t and secret_refresh not in t and "old-refresh" not in t
    assert routes(transport, "/auth/device/code") == 0


def test_failed_and_pending_messages_never_carry_a_device_code_or_token(
    server, clock, cache, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    with manager(server, clock, cache) as tm:
        pending = tm.get_token()
        assert isinstance(pending, Pending)
        flow = tm._flows.current
        assert flow is not None
        device_code = flow.auth.device_code
        texts = [
            repr(pending),
            str(pending),
            pending._repr_html_(),
            pending._repr_markdown_(),
            repr(flow),
            repr(flow.auth),
            repr(tm),
            str(tm.status()),
        ]
        server.approve(pending.user_code)
        clock.wait_for_waiters(1)
        clock.advance(5)
        token = tm.wait_for_token(timeout=60)
        texts += [repr(token), str(token), str(tm.status()), repr(tm._tokens)]
        tm.logout()
    texts += [r.getMessage() for r in caplog.records]
    for t in texts:
        assert device_code not in t
        assert token.access_token not in t


# ---------------------------------------------------------------- contract


def test_pending_message_is_exact() -> None:
    p = Pending(verification_uri="https://textstack.app/device", user_code="WDJB-MJHT")
    assert p.message == (
        "authentication required — open https://textstack.app/device and enter code "
        "WDJB-MJHT to connect TextStack, then retry."
    )


def test_pending_from_a_hostile_server_is_sanitised(clock) -> None:
    answer = device_code_answer(
        user_code="AB\x1b[2JCD\r\nEF",
        verification_uri_complete='https://x/"><script>alert(1)</script>',
    )
    tm, _ = mock_manager(lambda r: json_response(200, answer), clock)
    with tm:
        pending = tm.get_token()
    assert isinstance(pending, Pending)
    assert "\x1b" not in pending.message and "\r" not in pending.message
    assert "\n" not in pending.message
    assert "<script>" not in pending._repr_html_()


@pytest.mark.parametrize(
    "answer",
    [
        [],
        None,
        "x",
        device_code_answer(verification_uri="javascript:alert(1)"),
        device_code_answer(device_code="has space"),
        device_code_answer(expires_in=True),
        device_code_answer(expires_in="nan"),
        device_code_answer(user_code=""),
    ],
)
def test_hostile_device_code_answers_fail_cleanly(clock, answer) -> None:
    tm, transport = mock_manager(lambda r: json_response(200, answer), clock)
    with tm:
        result = tm.get_token()
        assert isinstance(result, Failed) and result.retryable
        assert tm.status().pending is None
    assert routes(transport, "/device/token") == 0


def test_static_provider_messages() -> None:
    assert StaticTokenProvider(None).get_token() == Failed("no TEXTSTACK_MCP_TOKEN configured")
    assert StaticTokenProvider("").get_token() == Failed("no TEXTSTACK_MCP_TOKEN configured")
    assert StaticTokenProvider("tok").get_token() == Authorized("tok")
    assert "tok" not in repr(StaticTokenProvider("tok"))


def test_provider_from_env_with_a_token_touches_no_file(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    env = {
        "TEXTSTACK_MCP_TOKEN": "ci-token",
        "TEXTSTACK_MCP_TOKEN_CACHE": str(tmp_path / "c" / "t.json"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "HOME": str(home),
    }
    before = {p for p in tmp_path.rglob("*")}
    provider = provider_from_env(env)
    assert provider.get_token() == Authorized("ci-token")
    assert {p for p in tmp_path.rglob("*")} == before


def test_hot_path_is_a_snapshot_not_a_mix_of_generations(server, clock, cache) -> None:
    seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, cache) as tm:
        stop = threading.Event()
        lock = threading.Lock()
        # Tokens refused so far; a reader records which were refused when its call began.
        refused: list[str] = []
        seen: list[tuple[int, str]] = []

        def reader() -> None:
            while not stop.is_set():
                with lock:
                    known = len(refused)
                r = tm.get_token()
                if isinstance(r, Authorized):
                    with lock:
                        seen.append((known, r.access_token))

        readers = [threading.Thread(target=reader) for _ in range(4)]
        for t in readers:
            t.start()
        try:
            for _ in range(3):
                wait_until(lambda: any(tok not in refused for _, tok in list(seen)))
                with lock:
                    current = next(tok for _, tok in reversed(seen) if tok not in refused)
                tm.invalidate(current)  # the server said 401: a new generation must come
                with lock:
                    refused.append(current)
                clock.advance(1)
        finally:
            stop.set()
            for t in readers:
                t.join(5)
        # No call that began after a token was refused ever returned it.
        for known, token in seen:
            assert token not in refused[:known]

        def current() -> object:
            return tm.get_token()

        wait_until(lambda: isinstance(r := current(), Authorized) and r.access_token not in refused)
        disk = cache.load()
        assert disk is not None and tm.get_token() == Authorized(disk.access_token)
        assert disk.access_token not in refused
    assert server.count(REFRESH) == 4  # the expired seed, then one per refusal
    assert server.count(CODE) == 0


def test_pid_is_checked_for_forks_without_hooks() -> None:
    # Documented uWSGI case: a child that skipped register_at_fork still resets.
    tm, _ = mock_manager(lambda r: json_response(500, {}), FakeClock())
    with tm:
        old_lock = tm._lock
        tm._pid = -1
        tm.status()
        assert tm._pid == os.getpid() and tm._lock is not old_lock
