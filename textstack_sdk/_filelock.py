"""A cross-process exclusive lock on a dedicated lock file (``flock``), fork-safe.

Why a dedicated file: the token cache is written with ``os.replace``, which swaps the
inode; a lock taken on the cache file itself would stop excluding anyone after the first
save. The lock file is created once (``O_CREAT`` without ``O_TRUNC``, ``O_NOFOLLOW``, 0600)
and is never replaced, truncated or deleted by this package.

How exclusion works:

- Across processes: ``fcntl.flock(LOCK_EX)`` on a descriptor opened for each acquisition.
  The kernel drops the lock when the holder dies, so a killed holder never wedges anyone.
  Waiting is bounded: non-blocking attempts with short sleeps (at most 50 ms) until the
  timeout, measured with ``time.monotonic``.
- Across threads of one process: a ``threading.Lock`` is taken first, so threads queue
  without polling the file. ``flock`` locks belong to the open file description, so two
  descriptors opened separately by one process would also exclude each other; the
  thread lock is the primary mechanism and the separate descriptors a second line.
  One process holds the lock through exactly one descriptor at a time.
- Re-entrancy: the thread that holds the lock may acquire it again (a nested ``with``);
  it is released when every acquisition has been released.

Fork: a child inherits the parent's open file description, and ``LOCK_UN`` on it would
unlock the parent. So a child never unlocks what it inherited: an ``os.register_at_fork``
hook resets every lock object in the child (closing, not unlocking, the inherited
descriptor), and each call also compares ``os.getpid()`` with the recorded pid because
uWSGI may fork without running Python's fork hooks. In a child, ``release()`` of a lock
acquired by the parent raises ``RuntimeError`` and unlocks nothing.

Limits (documented, not solved): ``flock`` may not exclude across NFS clients (Linux
emulates it with POSIX byte-range locks there, other systems may not lock at all). On
platforms without ``fcntl`` (Windows) the cross-process part is a no-op; threads of one
process are still serialised, and a debug line says so.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import stat
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Optional

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

__all__ = ["InterProcessLock"]

_log = logging.getLogger("textstack_sdk.cache")

_POSIX = os.name != "nt"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_MAX_SLEEP = 0.05
_FIRST_SLEEP = 0.001

_INSTANCES: weakref.WeakSet[InterProcessLock] = weakref.WeakSet()


class InterProcessLock:
    """Thread-safe and fork-safe exclusive lock shared by processes through a lock file.

    Use ``acquire(timeout)``/``release()``, ``with lock.hold(timeout) as acquired:``, or
    ``with lock as acquired:`` (which uses the ``timeout`` given to the constructor).
    ``acquire`` never blocks longer than its timeout and returns False when it could
    not get the lock: on timeout, or at once when the lock file is unusable (a symlink,
    not a regular file, owned by someone else, or not creatable); the latter is logged.

    Args:
        path: The lock file. Its folder must exist.
        timeout: Default bound, in seconds, for ``with lock:``.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        self._path = os.fspath(path)
        self._default_timeout = _check_timeout(timeout)
        self._local = threading.local()
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()
        self._fd: Optional[int] = None
        self._fd_id: Optional[tuple[int, int]] = None
        self._owner: Optional[int] = None
        self._count = 0
        _INSTANCES.add(self)

    @property
    def path(self) -> str:
        """The lock file."""
        return self._path

    @property
    def held(self) -> bool:
        """True when the calling thread of this process holds the lock."""
        self._check_fork()
        return self._owner == threading.get_ident()

    def acquire(self, timeout: float) -> bool:
        """Takes the lock, waiting at most ``timeout`` seconds.

        Args:
            timeout: Seconds to wait; 0 or less means a single attempt.

        Returns:
            True when the calling thread now holds the lock; False on timeout or when
            the lock file is unusable.

        Raises:
            ValueError: ``timeout`` is NaN or infinite (every wait must be bounded).
        """
        timeout = max(0.0, _check_timeout(timeout))
        deadline = time.monotonic() + timeout
        self._check_fork()
        me = threading.get_ident()
        if self._owner == me:
            self._count += 1
            return True
        thread_lock = self._thread_lock
        got = thread_lock.acquire(timeout=timeout) if timeout > 0 else thread_lock.acquire(False)
        if not got:
            return False
        try:
            fd = self._lock_file(deadline)
        except BaseException:
            thread_lock.release()
            raise
        if fd is None:
            thread_lock.release()
            return False
        self._fd = fd
        self._owner = me
        self._count = 1
        return True

    def release(self) -> None:
        """Releases one acquisition; the lock is freed when the last one is released.

        Raises:
            RuntimeError: The calling thread does not hold the lock (this includes a
                forked child calling release on a lock its parent acquired: the
                parent's lock stays held).
        """
        self._check_fork()
        if self._owner != threading.get_ident():
            raise RuntimeError("release of an InterProcessLock not held by this thread")
        self._count -= 1
        if self._count > 0:
            return
        fd = self._fd
        self._fd = None
        self._owner = None
        try:
            if fd is not None:
                try:
                    if _fcntl is not None:
                        _fcntl.flock(fd, _fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        finally:
            self._thread_lock.release()

    @contextlib.contextmanager
    def hold(self, timeout: float) -> Iterator[bool]:
        """Context manager around ``acquire(timeout)``; yields whether it was acquired.

        On exit it releases only what it acquired, and never in a forked child.
        """
        acquired = self.acquire(timeout)
        pid = os.getpid()
        try:
            yield acquired
        finally:
            if acquired and os.getpid() == pid:
                self.release()

    def __enter__(self) -> bool:
        acquired = self.acquire(self._default_timeout)
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append((os.getpid(), acquired))
        return acquired

    def __exit__(self, *exc_info: object) -> None:
        stack = getattr(self._local, "stack", None)
        if not stack:
            return
        pid, acquired = stack.pop()
        if acquired and pid == os.getpid():
            self.release()

    def __repr__(self) -> str:
        return f"InterProcessLock({self._path!r})"

    # -- internals ---------------------------------------------------------------------

    def _reset(self, pid: int) -> None:
        # A thread that held the lock at fork time does not exist in the child, so its
        # thread lock would stay taken forever: every child starts from a fresh state.
        self._pid = pid
        self._thread_lock = threading.Lock()
        self._fd = None
        self._fd_id = None
        self._owner = None
        self._count = 0

    def _after_fork_in_child(self, *, fd_is_ours: bool) -> None:
        fd, fd_id = self._fd, self._fd_id
        self._reset(os.getpid())
        self._local = threading.local()
        if fd is None:
            return
        # Closing (never LOCK_UN) drops only the child's reference; the parent keeps its
        # lock. Without the fork hook the number may have been reused by now, so it is
        # closed only if it still refers to the lock file.
        if not fd_is_ours:
            try:
                st = os.fstat(fd)
            except OSError:
                return
            if (st.st_dev, st.st_ino) != fd_id:
                return
        with contextlib.suppress(OSError):
            os.close(fd)

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._after_fork_in_child(fd_is_ours=False)

    def _lock_file(self, deadline: float) -> Optional[int]:
        """Opens the lock file and flocks it before the deadline; None if it cannot."""
        sleep = _FIRST_SLEEP
        while True:
            fd = self._open_checked()
            if fd is None:
                return None
            keep = False
            try:
                if _fcntl is None:  # pragma: no cover - Windows
                    _log.debug("no fcntl on this platform: %s only serialises threads", self._path)
                    keep = True
                    return fd
                while True:
                    try:
                        _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                            _log.warning(
                                "cannot lock %s (%s); is it on a file system without "
                                "flock support?",
                                self._path,
                                exc.strerror or exc.__class__.__name__,
                            )
                            return None
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    time.sleep(min(sleep, remaining))
                    sleep = min(sleep * 2, _MAX_SLEEP)
                if self._still_at_path(fd):
                    keep = True
                    return fd
                # The file was deleted or replaced while we waited: the lock we hold is
                # on an orphan inode that nobody else will ever lock. Start over.
                if time.monotonic() >= deadline:
                    return None
            finally:
                if not keep:
                    os.close(fd)

    def _open_checked(self) -> Optional[int]:
        try:
            fd = os.open(self._path, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                _log.warning(
                    "refusing lock file %s: it is a symbolic link; fix: rm %s",
                    self._path,
                    self._path,
                )
            else:
                _log.warning(
                    "cannot open lock file %s (%s); fix the folder's permissions",
                    self._path,
                    exc.strerror or exc.__class__.__name__,
                )
            return None
        try:
            st = os.fstat(fd)
            problem = None
            if not stat.S_ISREG(st.st_mode):
                problem = "it is not a regular file; fix: remove it"
            elif _POSIX and st.st_uid != os.getuid():
                problem = (
                    f"it is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
                    "fix: remove it"
                )
            if problem is not None:
                _log.warning("refusing lock file %s: %s", self._path, problem)
                os.close(fd)
                return None
        except BaseException:
            os.close(fd)
            raise
        self._fd_id = (st.st_dev, st.st_ino)
        return fd

    def _still_at_path(self, fd: int) -> bool:
        try:
            now = os.stat(self._path, follow_symlinks=False)
            mine = os.fstat(fd)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _check_timeout(timeout: float) -> float:
    value = float(timeout)
    if not math.isfinite(value):
        raise ValueError("timeout must be a finite number of seconds")
    return value


def _reset_all_in_child() -> None:
    for lock in list(_INSTANCES):
        lock._after_fork_in_child(fd_is_ours=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_in_child)
