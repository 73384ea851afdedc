"""The real-Redis harness itself: it must start its own server and never leave one behind."""
# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _redis_harness import RedisFleet, RedisProcess, redis_binary, redis_fleet  # noqa: F401

pytestmark = pytest.mark.timeout(30)

TESTS = Path(__file__).parent


def test_a_port_taken_by_another_server_is_not_mistaken_for_ours(
    redis_fleet: RedisFleet, redis_binary: str, tmp_path: Path
) -> None:
    """Engineers share the machine: between the port probe and the bind, another test's
    server may take the port. Ours then fails to bind, while the other one answers PING;
    the harness must not hand out a server it did not start (freeze or kill would then hit
    the wrong process, and the test would share another one's data)."""
    theirs = redis_fleet.server()
    ours = RedisProcess(redis_binary, tmp_path / "ours")
    try:
        with pytest.raises(RuntimeError, match="did not start"):
            ours._start(theirs.port)
    finally:
        ours.stop()
    client = theirs.client()
    try:
        assert client.ping()
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its (new) parent.
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        return "\nState:\tZ" not in status.read_text()
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_servers_die_with_a_test_run_that_is_killed(redis_binary: str, tmp_path: Path) -> None:
    """A run killed outright (SIGKILL from a CI timeout, the OOM killer) runs no teardown;
    its servers must not outlive it."""
    script = (
        "import sys, pathlib\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from _redis_harness import RedisFleet\n"
        f"fleet = RedisFleet({redis_binary!r}, pathlib.Path({str(tmp_path)!r}))\n"
        "print(fleet.server().process.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert runner.stdout is not None
        server_pid = int(runner.stdout.readline())
        assert _alive(server_pid)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
    deadline = time.monotonic() + 5
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # another process's death: nothing to wait on
    leaked = _alive(server_pid)
    if leaked:
        os.kill(server_pid, signal.SIGKILL)
    assert not leaked, "the server outlived the run that started it"
