"""Many processes, one login: real processes (fork and spawn) share one token cache."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from textstack_sdk import Authorized, FileTokenCache, TokenManager, TokenSet
from textstack_sdk._filelock import InterProcessLock
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeTextStackServer

sys.path.insert(0, str(Path(__file__).parent))
import _mp_workers as workers

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(os.name == "nt", reason="POSIX")]

REFRESH = "POST /auth/refresh-mobile"
CODE = "POST /auth/device/code"
CONTEXTS = ["fork", "spawn"]


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


@pytest.fixture
def cache_path(tmp_path: Path) -> str:
    return str(tmp_path / "textstack" / "mcp-token.json")


def seed_expired(server: FakeTextStackServer, cache_path: str) -> TokenSet:
    """A live refresh token with an access token that expired ten seconds ago."""
    _, refresh = server.issue_tokens()
    expired = server.make_jwt({"sub": server.user_id, "exp": int(time.time()) - 10})
    tokens = TokenSet(expired, refresh, decode_exp(expired))
    assert FileTokenCache(cache_path).save(tokens)
    return tokens


def collect(out: Any, n: int, timeout: float = 30) -> list[Any]:
    return [out.get(timeout=timeout) for _ in range(n)]


def join_all(procs: list[Any]) -> None:
    for p in procs:
        p.join(30)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


@pytest.mark.parametrize("method", CONTEXTS)
def test_8_processes_expiring_together_send_one_refresh(server, cache_path, method) -> None:
    old = seed_expired(server, cache_path)
    ctx = multiprocessing.get_context(method)
    barrier, out = ctx.Barrier(8), ctx.Queue()
    args = (server.api_url, server.site_host, cache_path, barrier, out)
    procs = [ctx.Process(target=workers.get_token_together, args=args) for _ in range(8)]
    for p in procs:
        p.start()
    results = collect(out, 8)
    join_all(procs)
    assert server.count(REFRESH) == 1
    assert {kind for _, kind, _ in results} == {"authorized"}
    tokens = {token for _, _, token in results}
    assert len(tokens) == 1
    assert old.access_token not in tokens
    stored = FileTokenCache(cache_path).load()
    assert stored is not None and stored.access_token in tokens


@pytest.mark.parametrize("method", CONTEXTS)
def test_8_processes_without_a_login_show_one_code_and_all_sign_in(
    server, cache_path, method
) -> None:
    ctx = multiprocessing.get_context(method)
    barrier, out = ctx.Barrier(8), ctx.Queue()
    args = (server.api_url, server.site_host, cache_path, barrier, out)
    procs = [ctx.Process(target=workers.login_together, args=args) for _ in range(8)]
    for p in procs:
        p.start()
    codes = [value for kind, value in collect(out, 8) if kind == "code"]
    assert len(set(codes)) == 1, codes
    assert server.count(CODE) == 1
    server.approve(codes[0])
    tokens = [value for kind, value in collect(out, 8) if kind == "token"]
    join_all(procs)
    assert len(set(tokens)) == 1
    assert server.count(CODE) == 1
    # One poller at a time: polls stay within what one process would send.
    assert server.count("POST /auth/device/token") <= 2 + 30 / 0.05


def test_a_killed_lock_holder_does_not_stop_the_others(server, cache_path, tmp_path) -> None:
    seed_expired(server, cache_path)
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import _mp_workers as w;"
            " w.hold_lock_forever(sys.argv[2], sys.argv[3])",
            str(Path(__file__).parent),
            cache_path,
            str(ready),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline, "the holder never took the lock"
            assert holder.poll() is None, "the holder died"
            time.sleep(0.01)
        # While the holder stalls: a bounded wait, then a retryable failure, no refresh.
        with workers._manager(server.api_url, server.site_host, cache_path, lock_timeout=0.2) as tm:
            started = time.monotonic()
            result = tm.get_token()
            assert time.monotonic() - started < 5
            assert not isinstance(result, Authorized)
            assert result.retryable  # type: ignore[union-attr]
        assert server.count(REFRESH) == 0
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with workers._manager(server.api_url, server.site_host, cache_path) as tm:
            started = time.monotonic()
            assert isinstance(tm.get_token(), Authorized)
            assert time.monotonic() - started < 5
        assert server.count(REFRESH) == 1
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_a_dead_poller_is_replaced_before_the_code_expires(server, cache_path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    poller = ctx.Process(
        target=workers.poll_then_die, args=(server.api_url, server.site_host, cache_path, out)
    )
    poller.start()
    try:
        code = out.get(timeout=30)
        with workers._manager(server.api_url, server.site_host, cache_path) as tm:
            pending = tm.get_token()
            assert getattr(pending, "user_code", None) == code  # adopted, not a new code
            poller.kill()
            poller.join(10)
            server.approve(code)
            token = tm.wait_for_token(timeout=20)
            assert isinstance(token, Authorized)
        assert server.count(CODE) == 1
    finally:
        if poller.is_alive():
            poller.kill()


def test_fork_while_a_thread_is_inside_get_token_does_not_deadlock(server, cache_path) -> None:
    seed_expired(server, cache_path)
    release = threading.Event()
    # The parent's refresh answer is held until after the fork.
    server.inject(REFRESH, delay=20, release=release)
    tm = workers._manager(server.api_url, server.site_host, cache_path)
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(tm.get_token()))
    t.start()
    try:
        # Inside the refresh: its request is at the server, and it holds the cache lock
        # (another open file of the lock cannot take it).
        deadline = time.monotonic() + 10
        while server.count(REFRESH) < 1:
            assert time.monotonic() < deadline, "the refresh never started"
            time.sleep(0.002)
        probe = InterProcessLock(FileTokenCache(cache_path).lock_path)
        assert not probe.acquire(0), "the refreshing thread does not hold the cache lock"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                result = tm.get_token()
                code = 0 if isinstance(result, Authorized) else 2
            finally:
                os._exit(code)
    finally:
        release.set()
    _, status = os.waitpid(pid, 0)
    t.join(10)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert isinstance(results[0], Authorized)
    # The child waited for the parent's refresh and adopted it: one refresh in total.
    assert server.count(REFRESH) == 1
    tm.close()


def test_child_after_fork_has_no_poll_thread_and_new_locks(server, cache_path) -> None:
    tm = workers._manager(server.api_url, server.site_host, cache_path)
    pending = tm.get_token()
    assert not isinstance(pending, Authorized)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = False
        try:
            names = {t.name for t in threading.enumerate()}
            again = tm.get_token()  # adopts the shared sign-in, starts its own watcher
            ok = (
                "textstack-device-poll" not in names
                and getattr(again, "user_code", None) == pending.user_code
            )  # type: ignore[union-attr]
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert server.count(CODE) == 1
    tm.close()


def test_refresh_without_any_background_thread(server, cache_path) -> None:
    seed_expired(server, cache_path)
    before = set(threading.enumerate())
    with TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        cache=FileTokenCache(cache_path),
        background=False,
        prompt=False,
    ) as tm:
        assert isinstance(tm.get_token(), Authorized)
        ours = [t for t in set(threading.enumerate()) - before if t.name.startswith("textstack")]
        assert ours == []
