"""The stdio loop around the protocol core: read lines, run tool calls on workers, write.

Threads: the calling thread reads stdin and answers everything but ``tools/call``
inline; tool calls run on a few daemon worker threads, so ``ping`` and cancellations are
answered while a call waits on the network. One lock serializes the core and the writes:
a message is written whole, one per line, and flushed before the next. Workers are
daemons because a urllib3 request cannot be interrupted: shutdown waits a bounded time,
then leaves them behind rather than hang the process. A client that stops reading blocks
the writer holding the lock; shutdown then gives up on output instead of on the process.
The reader waits for input with ``poll`` where it exists, watching stdout too, so a client
that closes our stdout ends the server even while it keeps stdin open.

stdout discipline: while serving, the real fd 1 is duplicated to a private descriptor
that only this loop writes to, and fd 1 is pointed at stderr, so a stray ``print``, a
logging handler on stdout, a warning or any child process (a browser) lands on stderr.
fd 0 is pointed at ``/dev/null`` so children cannot eat protocol input. Both are put
back when the loop ends (the technique of the official ``mcp`` server).
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, Callable, Optional, Protocol, TextIO

from ._protocol import Action, Send, ServerCore, Start

__all__ = ["Catalog", "StdioServer", "flush_or_drop", "guard_stdio"]

MAX_LINE_BYTES = 8 * 1024 * 1024
_READ_CHUNK = 256 * 1024
# How long shutdown waits for the write lock beyond the drain: a line is written in
# microseconds unless the client stopped reading, and then the wait would be forever.
_STUCK_WRITE_GRACE = 0.25
_GONE = (
    getattr(select, "POLLERR", 0) | getattr(select, "POLLHUP", 0) | getattr(select, "POLLNVAL", 0)
)


class Catalog(Protocol):
    """What the server needs from the tool catalog (``_catalog.ToolCatalog``)."""

    def list_tools(self) -> list[dict[str, Any]]: ...

    def call(self, name: str, arguments: Any, cancel: threading.Event) -> dict[str, Any]: ...


class _Terminated(BaseException):
    """Raised in the reading thread by the SIGTERM handler to stop reading."""


def _private(fd: int) -> int:
    """A close-on-exec copy of ``fd`` that cannot land on 0, 1 or 2.

    With stderr closed, a plain ``dup`` would take fd 2 itself, and diverting fd 1 to
    "stderr" would then point it at whatever that copy is.
    """
    if sys.platform != "win32":
        import fcntl

        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    return os.dup(fd)


def _private_devnull(flags: int) -> int:
    fd = os.open(os.devnull, flags)
    try:
        return _private(fd)
    finally:
        os.close(fd)


def flush_or_drop(stream: Optional[TextIO], fd: int) -> None:
    """Flushes ``stream`` (on ``fd``); what ``fd`` refuses is sent to ``/dev/null`` instead.

    A write that failed (stderr closed, or its reader gone) stays in the stream's buffer:
    a stray print would reach the client once fd 1 is put back, and the interpreter's
    last flush of stderr would turn the exit code into 120. When the flush fails, ``fd``
    is pointed at ``/dev/null`` so the buffer can empty.
    """
    if stream is None:
        return
    try:
        stream.flush()
    except Exception:  # noqa: BLE001 - EPIPE, EBADF and the like: drop, below
        with contextlib.suppress(Exception):
            if stream.fileno() != fd:
                return  # a stream put in place of the standard one: not ours to redirect
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
            stream.flush()


@contextlib.contextmanager
def guard_stdio() -> Iterator[tuple[int, int]]:
    """Yields ``(read_fd, write_fd)`` private copies of stdin/stdout; fd 1 goes to stderr.

    Everything that writes to fd 1 while the guard is held (print, logging, warnings,
    children) reaches stderr instead (``/dev/null`` when stderr is closed); only the
    yielded descriptor reaches the client.
    """
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    read_fd, write_fd = _private(0), _private(1)
    saved_in, saved_out = _private(0), _private(1)
    null_in = _private_devnull(os.O_RDONLY)
    null_out = _private_devnull(os.O_WRONLY)
    try:
        try:
            os.dup2(2, 1)
        except OSError:
            os.dup2(null_out, 1)  # no stderr at all
        os.dup2(null_in, 0)
        yield read_fd, write_fd
    finally:
        flush_or_drop(sys.stdout, 1)  # fd 1 is still diverted here
        os.dup2(saved_out, 1)
        os.dup2(saved_in, 0)
        for fd in (null_in, null_out, saved_in, saved_out, read_fd, write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class StdioServer:
    """Serves one MCP connection over two file descriptors. Thread-safe; ``serve`` once.

    Args:
        core: The protocol core (this object serializes every call into it).
        catalog: Runs the tool calls.
        read_fd: Where requests come from, one JSON-RPC message per line.
        write_fd: Where responses go; nothing else is written there.
        workers: Tool calls that may run at once.
        max_line: Longest line accepted; a longer one is refused and skipped.
        drain_timeout: Seconds to wait for calls in flight after stdin ends.
    """

    def __init__(
        self,
        core: ServerCore,
        catalog: Catalog,
        *,
        read_fd: int,
        write_fd: int,
        workers: int = 4,
        max_line: int = MAX_LINE_BYTES,
        drain_timeout: float = 5.0,
    ) -> None:
        self._core = core
        self._catalog = catalog
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._workers = max(1, int(workers))
        self._max_line = max(1024, int(max_line))
        self._drain_timeout = max(0.0, float(drain_timeout))
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs: queue.SimpleQueue[Optional[Start]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._broken = False  # no more output: the client is gone, or shutdown gave up on it

    # -- writing -----------------------------------------------------------------------

    def _apply_locked(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._write_locked(action.line)
            else:
                self._start_worker_locked()
                self._jobs.put(action)

    def _write_locked(self, line: bytes) -> None:
        if self._broken:
            return
        view = memoryview(line)
        try:
            # ``_broken`` is checked per piece: shutdown may give up while a write is stuck.
            while view and not self._broken:
                written = os.write(self._write_fd, view)
                view = view[written:]
        except OSError:
            # The client is gone (EPIPE): nothing can be answered any more, so reading ends.
            self._broken = True

    # -- tool calls --------------------------------------------------------------------

    def _start_worker_locked(self) -> None:
        if len(self._threads) < self._workers:
            thread = threading.Thread(
                target=self._work, name=f"textstack-mcp-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            outcome: Any
            if job.cancel.is_set():
                outcome = {}
            else:
                try:
                    outcome = self._catalog.call(job.name, job.arguments, job.cancel)
                except Exception as exc:  # noqa: BLE001 - the core answers "unexpected error"
                    outcome = exc
            with self._lock:
                self._apply_locked(self._core.finish(job.key, outcome))
                self._idle.notify_all()

    # -- reading -----------------------------------------------------------------------

    def _poller(self) -> Optional[Any]:
        if not hasattr(select, "poll"):
            return None  # Windows: a plain blocking read; a closed stdout shows at the next write
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN | select.POLLPRI)
        poller.register(self._write_fd, 0)  # errors and hang-ups are always reported
        return poller

    def _read(self, poller: Optional[Any]) -> bytes:
        """The next chunk of input; empty at its end, or when the client closed our stdout."""
        while not self._broken:
            if poller is not None:
                for fd, events in poller.poll():
                    if fd == self._write_fd and events & _GONE:
                        self._broken = True
                        return b""
            try:
                return os.read(self._read_fd, _READ_CHUNK)
            except BlockingIOError:
                if poller is None:
                    return b""  # nothing to wait with: give up rather than spin
                continue  # stdin shared in non-blocking mode: poll waits for data
            except OSError:
                return b""  # EIO and the like: the input is gone, as at EOF
        return b""

    def _lines(self) -> Iterator[Optional[bytes]]:
        """Lines without their ``\\n``; None for a line over the limit (already skipped)."""
        buffer = bytearray()
        skipping = False
        poller = self._poller()
        while True:
            chunk = self._read(poller)
            if not chunk:
                if buffer and not skipping:
                    yield bytes(buffer)
                return
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                if end < 0:
                    if not skipping:
                        buffer += chunk[start:]
                        if len(buffer) > self._max_line:
                            buffer.clear()
                            skipping = True
                            yield None
                    break
                if skipping:
                    skipping = False
                else:
                    buffer += chunk[start:end]
                    if len(buffer) > self._max_line:
                        yield None
                    else:
                        yield bytes(buffer)
                    buffer.clear()
                start = end + 1

    def serve(self) -> int:
        """Serves until stdin ends or SIGTERM (exit code 0), or Ctrl-C (130)."""
        restore = self._on_sigterm()
        drain, code = self._drain_timeout, 0
        try:
            for line in self._lines():
                with self._lock:
                    if line is None:
                        actions = self._core.oversized(self._max_line)
                    else:
                        actions = self._core.receive(line)
                    self._apply_locked(actions)
                if self._broken:
                    break
        except _Terminated:
            drain = 0.0  # the client already waited after closing stdin
        except KeyboardInterrupt:
            drain, code = 0.0, 130
        finally:
            restore()
            self._shutdown(drain)
        return code

    def _shutdown(self, drain: float) -> None:
        deadline = time.monotonic() + drain
        if self._lock.acquire(timeout=drain + _STUCK_WRITE_GRACE):
            try:
                while self._core.in_flight and not self._broken:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._idle.wait(left)
                self._core.cancel_all()
            finally:
                self._lock.release()
        else:
            # A worker is stuck writing to a client that stopped reading: send nothing more
            # (the stuck writer stops at its next piece) and let the process end.
            self._broken = True
        for _ in self._threads:
            self._jobs.put(None)
        # Idle workers end at once on their None; one stuck in a call is left behind.
        end = max(deadline, time.monotonic() + _STUCK_WRITE_GRACE)
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    def _on_sigterm(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: Optional[FrameType]) -> None:
            raise _Terminated

        try:
            previous = signal.signal(signal.SIGTERM, handler)
        except (ValueError, OSError):
            return lambda: None

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous)

        return restore
