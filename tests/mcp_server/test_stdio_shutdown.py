"""The server ends when its client goes away or gets stuck, and reads an awkward stdin.

Each case drives a child server by hand with pipes the test controls (a client that
stops reading stdout, closes it early, or hands over a non-blocking stdin), and checks
the process ends within a bound far below what the old behaviour took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from textstack_sdk.testing import FakeTextStackServer

from ._harness import FAKE_CATALOG, REAL_SERVER, ROOT, server_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and signals")

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}},
}


@pytest.fixture
def api() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.02) as srv:
        yield srv


def _line(message: Any) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _spawn(env: dict[str, str], args: list[str], **pipes: Any) -> subprocess.Popen[bytes]:
    options: dict[str, Any] = {
        "stdin": subprocess.PIPE,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.DEVNULL,
    }
    options.update(pipes)
    return subprocess.Popen([sys.executable, *args], cwd=str(ROOT), env=env, **options)


def _initialized(env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = _spawn(env, FAKE_CATALOG)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(_line(INITIALIZE))
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 0
    return proc


def _ended_within(proc: subprocess.Popen[bytes], bound: float) -> tuple[int, float]:
    started = time.monotonic()
    try:
        code = proc.wait(bound + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, time.monotonic() - started


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def _pipe_is_full(fd: int) -> bool:
    import fcntl
    import termios

    size = fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", 1032))
    unread = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(unread, sys.byteorder) >= size


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the pipe's fill level")
def test_sigterm_ends_it_while_a_write_is_stuck(api: FakeTextStackServer, tmp_path: Path) -> None:
    # The client stops reading: a worker blocks writing a long answer while holding the
    # write lock. SIGTERM used to wait for that lock for ever (until SIGKILL).
    proc = _initialized(server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t"))
    assert proc.stdin is not None and proc.stdout is not None
    big = {"name": "echo", "arguments": {"pad": "x" * 300_000}}
    calls = b"".join(
        _line({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": big}) for i in (1, 2)
    )

    def feed() -> None:
        try:
            proc.stdin.write(calls)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            pass  # the server ended before it read them all

    threading.Thread(target=feed, daemon=True).start()
    out = proc.stdout.fileno()
    _until(lambda: _pipe_is_full(out), "a worker blocked on a full stdout")
    proc.send_signal(signal.SIGTERM)
    code, took = _ended_within(proc, 5)
    assert code == 0
    assert took < 5


def test_a_closed_stdout_ends_it_while_stdin_stays_open(
    api: FakeTextStackServer, tmp_path: Path
) -> None:
    proc = _initialized(server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t"))
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.close()  # nothing the server sends can arrive any more
    code, took = _ended_within(proc, 5)
    assert code == 0
    assert took < 5
    proc.stdin.close()


def test_a_non_blocking_stdin_is_read(api: FakeTextStackServer, tmp_path: Path) -> None:
    # A parent may share its stdin in non-blocking mode; reads then fail with EAGAIN.
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t")
    proc = _spawn(env, FAKE_CATALOG, stdin=read_end)
    os.close(read_end)
    try:
        assert proc.stdout is not None
        os.write(write_end, _line(INITIALIZE))
        reply = proc.stdout.readline()
        assert json.loads(reply)["id"] == 0, reply
        os.write(write_end, _line({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        assert json.loads(proc.stdout.readline()) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    finally:
        os.close(write_end)
    code, _ = _ended_within(proc, 5)
    assert code == 0


@pytest.mark.parametrize("how", ["eof", "sigterm"])
def test_exit_does_not_wait_for_a_sign_in_poll_stuck_upstream(
    api: FakeTextStackServer, tmp_path: Path, how: str
) -> None:
    # The device-flow poll is inside an HTTP request that cannot be interrupted; closing
    # the sign-in used to wait for it (up to the 15 s timeout) before the process ended.
    env = server_env(
        api.api_url, api.site_host, tmp_path / "c.json", TEXTSTACK_MCP_TIMEOUT_SECONDS="15"
    )
    api.inject("POST /auth/device/token", delay=30)
    proc = _spawn(env, list(REAL_SERVER))
    assert proc.stdin is not None and proc.stdout is not None
    call = {"name": "get_my_reading", "arguments": {}}
    proc.stdin.write(_line(INITIALIZE))
    proc.stdin.write(_line({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}))
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 0
    assert json.loads(proc.stdout.readline())["result"]["isError"] is True  # sign-in started
    _until(lambda: api.count("POST /auth/device/token") >= 1, "the sign-in poll")
    if how == "eof":
        proc.stdin.close()
    else:
        proc.send_signal(signal.SIGTERM)
    code, took = _ended_within(proc, 5)
    assert code == 0
    assert took < 5


@pytest.mark.parametrize(
    "entry", [list(REAL_SERVER), ["-m", "textstack_sdk.mcp"]], ids=["cli", "module"]
)
def test_a_broken_stderr_does_not_spoil_the_exit_code(
    api: FakeTextStackServer, tmp_path: Path, entry: list[str]
) -> None:
    # The sign-in prompt that stderr refused stayed buffered, and the interpreter's last
    # flush of it turned the exit code into 120.
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json")
    read_end, write_end = os.pipe()
    os.close(read_end)
    call = {"name": "get_my_reading", "arguments": {}}
    try:
        proc = _spawn(env, entry, stderr=write_end)
    finally:
        os.close(write_end)
    out, _ = proc.communicate(
        _line(INITIALIZE)
        + _line({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}),
        timeout=30,
    )
    assert [json.loads(line)["id"] for line in out.splitlines()] == [0, 1]
    assert proc.returncode == 0
