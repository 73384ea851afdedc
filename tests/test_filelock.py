from __future__ import annotations

import fcntl
import logging
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from textstack_sdk._filelock import InterProcessLock

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A process that takes the lock, says so, and holds it until told (a line on stdin).
HOLDER = r"""
import sys
from textstack_sdk._filelock import InterProcessLock
lock = InterProcessLock(sys.argv[1])
ok = lock.acquire(float(sys.argv[2]))
print("locked" if ok else "timeout", flush=True)
sys.stdin.readline()
if ok:
    lock.release()
print("released", flush=True)
sys.stdin.readline()
"""

# A process that increments a counter file under the lock, checking nobody else is inside.
COUNTER = r"""
import os, sys
from textstack_sdk._filelock import InterProcessLock
lock_path, counter, marker, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = InterProcessLock(lock_path)
print("ready", flush=True)
sys.stdin.readline()
for _ in range(rounds):
    with lock.hold(30) as ok:
        assert ok
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails on overlap
        os.close(fd)
        with open(counter) as f:
            value = int(f.read())
        with open(counter, "w") as f:
            f.write(str(value + 1))
        os.unlink(marker)
print("done", flush=True)
"""


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def _holder(
    procs: list[subprocess.Popen[str]], path: pathlib.Path, timeout: float = 5.0
) -> tuple[subprocess.Popen[str], str]:
    proc = _spawn(HOLDER, str(path), str(timeout))
    procs.append(proc)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _tell(proc: subprocess.Popen[str]) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _free_elsewhere(procs: list[subprocess.Popen[str]], path: pathlib.Path) -> bool:
    """Whether another process can take the lock right now."""
    proc, state = _holder(procs, path, timeout=0)
    _tell(proc)
    return state == "locked"


@pytest.fixture
def lock_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "cache.json.lock"


def test_acquire_creates_lock_file_0600_without_truncating(lock_path: pathlib.Path) -> None:
    old = os.umask(0)
    try:
        lock = InterProcessLock(lock_path)
        assert lock.acquire(1) is True
    finally:
        os.umask(old)
    assert lock.held
    lock.release()
    assert not lock.held
    assert os.stat(lock_path).st_mode & 0o777 == 0o600

    lock_path.write_bytes(b"keep")
    inode = os.stat(lock_path).st_ino
    with lock.hold(1) as acquired:
        assert acquired
    assert lock_path.read_bytes() == b"keep"
    assert os.stat(lock_path).st_ino == inode


def test_flock_on_two_descriptors_of_one_process_excludes(lock_path: pathlib.Path) -> None:
    # The kernel fact the thread lock backs up: flock belongs to the open file
    # description, so two separate opens in one process exclude each other.
    first = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    second = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(first, fcntl.LOCK_UN)
        fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(first)
        os.close(second)


@pytest.mark.timeout(10)
def test_two_threads_exclude_each_other(lock_path: pathlib.Path) -> None:
    lock = InterProcessLock(lock_path)
    holding, done = threading.Event(), threading.Event()
    results: list[bool] = []

    def holder() -> None:
        with lock.hold(5) as acquired:
            results.append(acquired)
            holding.set()
            done.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(5)
    assert lock.acquire(0.05) is False
    assert not lock.held
    done.set()
    thread.join(5)
    assert results == [True]
    assert lock.acquire(1) is True
    lock.release()


@pytest.mark.timeout(20)
def test_threads_serialise_a_read_modify_write(lock_path: pathlib.Path) -> None:
    lock = InterProcessLock(lock_path)
    barrier = threading.Barrier(4)
    inside = [0]
    overlaps: list[int] = []
    counter = [0]

    def worker() -> None:
        barrier.wait()
        for _ in range(300):
            with lock.hold(10) as acquired:
                assert acquired
                inside[0] += 1
                if inside[0] != 1:
                    overlaps.append(inside[0])
                value = counter[0]
                time.sleep(0)
                counter[0] = value + 1
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert overlaps == []
    assert counter[0] == 1200


def test_reentrant_in_the_holding_thread(lock_path: pathlib.Path) -> None:
    lock = InterProcessLock(lock_path)
    other: list[bool] = []

    def try_other() -> None:
        got = lock.acquire(0)
        other.append(got)
        if got:
            lock.release()

    with lock.hold(1) as outer:
        with lock.hold(1) as inner:
            assert outer and inner
        assert lock.held
        thread = threading.Thread(target=try_other)
        thread.start()
        thread.join(5)
    assert other == [False]
    assert not lock.held
    thread = threading.Thread(target=try_other)
    thread.start()
    thread.join(5)
    assert other == [False, True]


def test_release_by_a_non_holder_raises(lock_path: pathlib.Path) -> None:
    lock = InterProcessLock(lock_path)
    with pytest.raises(RuntimeError):
        lock.release()
    assert lock.acquire(1)
    errors: list[BaseException] = []

    def release_elsewhere() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=release_elsewhere)
    thread.start()
    thread.join(5)
    assert len(errors) == 1
    assert lock.held
    lock.release()


def test_with_statement_uses_default_timeout(lock_path: pathlib.Path) -> None:
    lock = InterProcessLock(lock_path, timeout=0.01)
    with lock as acquired:
        assert acquired
        result: list[bool] = []

        def other() -> None:
            with lock as got:
                result.append(got)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(5)
        assert result == [False]
        assert lock.held
    assert not lock.held


def test_timeout_must_be_finite(lock_path: pathlib.Path) -> None:
    lock = InterProcessLock(lock_path)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            lock.acquire(bad)
        with pytest.raises(ValueError):
            InterProcessLock(lock_path, timeout=bad)
    assert not lock.held


@pytest.mark.timeout(20)
def test_two_processes_exclude_each_other(
    lock_path: pathlib.Path, procs: list[subprocess.Popen[str]]
) -> None:
    proc, state = _holder(procs, lock_path)
    assert state == "locked"
    lock = InterProcessLock(lock_path)
    assert lock.acquire(0) is False
    assert _tell(proc) == "released"
    assert lock.acquire(5) is True
    try:
        assert not _free_elsewhere(procs, lock_path)
    finally:
        lock.release()
    assert _free_elsewhere(procs, lock_path)


@pytest.mark.timeout(30)
def test_processes_serialise_a_read_modify_write(
    tmp_path: pathlib.Path, lock_path: pathlib.Path, procs: list[subprocess.Popen[str]]
) -> None:
    counter, marker = tmp_path / "counter", tmp_path / "inside"
    counter.write_text("0")
    workers = [_spawn(COUNTER, str(lock_path), str(counter), str(marker), "150") for _ in range(3)]
    procs.extend(workers)
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("\n")
        worker.stdin.flush()
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "done"
        assert worker.wait(20) == 0
    assert counter.read_text() == "450"


@pytest.mark.timeout(20)
def test_timeout_is_bounded(lock_path: pathlib.Path, procs: list[subprocess.Popen[str]]) -> None:
    proc, state = _holder(procs, lock_path)
    assert state == "locked"
    lock = InterProcessLock(lock_path)
    start = time.monotonic()
    assert lock.acquire(0.2) is False
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 2.0
    start = time.monotonic()
    assert lock.acquire(0) is False
    assert time.monotonic() - start < 0.5
    assert not lock.held
    _tell(proc)


@pytest.mark.timeout(20)
def test_killed_holder_frees_the_lock(
    lock_path: pathlib.Path, procs: list[subprocess.Popen[str]]
) -> None:
    proc, state = _holder(procs, lock_path)
    assert state == "locked"
    lock = InterProcessLock(lock_path)
    assert lock.acquire(0) is False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert lock.acquire(5) is True
    lock.release()


def _exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.timeout(20)
def test_forked_child_cannot_release_the_parents_lock(
    lock_path: pathlib.Path, procs: list[subprocess.Popen[str]]
) -> None:
    lock = InterProcessLock(lock_path)
    with lock.hold(1) as acquired:
        assert acquired
        pid = os.fork()
        if pid == 0:  # child: leaves the with block too, which must not unlock
            code = 0
            try:
                try:
                    lock.release()
                    code |= 1
                except RuntimeError:
                    pass
                if lock.held:
                    code |= 2
                if lock.acquire(0):
                    code |= 4
            finally:
                os._exit(code)
        assert _exit_code(pid) == 0
        assert lock.held
        assert not _free_elsewhere(procs, lock_path)
    assert _free_elsewhere(procs, lock_path)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("form", ["with", "hold"])
def test_child_forked_inside_with_block_does_not_unlock_on_exit(
    lock_path: pathlib.Path, procs: list[subprocess.Popen[str]], form: str
) -> None:
    lock = InterProcessLock(lock_path, timeout=1)
    in_child = False
    try:
        with lock if form == "with" else lock.hold(1) as acquired:
            assert acquired
            pid = os.fork()
            if pid == 0:
                in_child = True
            else:
                assert _exit_code(pid) == 0  # the child has left the block cleanly
                assert lock.held
                assert not _free_elsewhere(procs, lock_path)
    except BaseException:
        if in_child:
            os._exit(3)
        raise
    if in_child:
        os._exit(0)
    assert _free_elsewhere(procs, lock_path)


@pytest.mark.timeout(20)
def test_child_gets_a_fresh_lock_when_another_thread_held_it(lock_path: pathlib.Path) -> None:
    lock = InterProcessLock(lock_path)
    holding, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock.hold(5):
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(5)
    go_read, go_write = os.pipe()
    tried_read, tried_write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                # The holder thread does not exist here: no inherited thread lock may
                # block us, and the parent's flock still excludes us.
                if lock.acquire(0):
                    code |= 1
                if lock.held:
                    code |= 2
                os.write(tried_write, b"x")
                os.read(go_read, 1)  # the parent has released
                if not lock.acquire(5):
                    code |= 4
                else:
                    lock.release()
            finally:
                os._exit(code)
        assert os.read(tried_read, 1) == b"x"
        done.set()
        thread.join(5)
        os.write(go_write, b"x")
        assert _exit_code(pid) == 0
    finally:
        done.set()
        for fd in (go_read, go_write, tried_read, tried_write):
            os.close(fd)


def test_pid_check_covers_forks_without_hooks(
    lock_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uWSGI may fork without running os.register_at_fork hooks: a pid change alone
    # must reset the object so that it never unlocks what it did not acquire here.
    lock = InterProcessLock(lock_path)
    assert lock.acquire(1)
    unlocks: list[int] = []
    real_flock = fcntl.flock

    def spy(fd: int, op: int) -> None:
        if op == fcntl.LOCK_UN:
            unlocks.append(fd)
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", spy)
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 100000)
    with pytest.raises(RuntimeError):
        lock.release()
    assert not lock.held
    assert unlocks == []
    assert lock.acquire(1)  # the thread lock is fresh, not the "parent's"
    lock.release()
    assert len(unlocks) == 1


def test_symlinked_lock_file_is_refused(
    tmp_path: pathlib.Path, lock_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    lock_path.symlink_to(target)
    lock = InterProcessLock(lock_path)
    with caplog.at_level(logging.WARNING, logger="textstack_sdk.cache"):
        assert lock.acquire(1) is False
    assert "symbolic link" in caplog.text and str(lock_path) in caplog.text
    assert target.read_bytes() == b"precious"
    assert not lock.held


def test_dangling_symlinked_lock_file_is_refused(
    tmp_path: pathlib.Path, lock_path: pathlib.Path
) -> None:
    target = tmp_path / "nowhere"
    lock_path.symlink_to(target)
    assert InterProcessLock(lock_path).acquire(1) is False
    assert not target.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown")
def test_lock_file_of_another_owner_is_refused(
    lock_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock_path.touch(mode=0o600)
    os.chown(lock_path, 1, 1)
    with caplog.at_level(logging.WARNING, logger="textstack_sdk.cache"):
        assert InterProcessLock(lock_path).acquire(1) is False
    assert "uid 1" in caplog.text


def test_directory_as_lock_file_is_refused(lock_path: pathlib.Path) -> None:
    lock_path.mkdir()
    start = time.monotonic()
    assert InterProcessLock(lock_path).acquire(5) is False
    assert time.monotonic() - start < 1.0


def test_missing_folder_fails_fast(tmp_path: pathlib.Path) -> None:
    lock = InterProcessLock(tmp_path / "missing" / "x.lock")
    start = time.monotonic()
    assert lock.acquire(5) is False
    assert time.monotonic() - start < 1.0
