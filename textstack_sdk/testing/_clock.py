"""A virtual clock for deterministic tests of threaded code."""

from __future__ import annotations

import threading
import time

__all__ = ["FakeClock"]


class FakeClock:
    """A manually advanced clock. Thread-safe.

    ``wait()`` blocks the calling thread until the test advances virtual time past the
    deadline, or until the cancel event is set, so a poll thread runs one step per
    ``advance()`` and never sleeps real seconds. With ``auto_advance=True`` every wait
    advances the clock by its own length and returns at once.
    """

    def __init__(
        self,
        *,
        start_time: float = 1_800_000_000.0,
        start_monotonic: float = 1_000.0,
        auto_advance: bool = False,
    ) -> None:
        self._cond = threading.Condition()
        self._wall_offset = start_time - start_monotonic
        self._mono = start_monotonic
        self._auto = auto_advance
        self._waiting: list[tuple[float, threading.Event]] = []

    def time(self) -> float:
        with self._cond:
            return self._mono + self._wall_offset

    def monotonic(self) -> float:
        with self._cond:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Moves both clocks forward and wakes every wait whose deadline has passed."""
        with self._cond:
            self._mono += max(0.0, seconds)
            self._cond.notify_all()

    def jump_wall(self, seconds: float) -> None:
        """Moves only the wall clock (NTP step, suspend): monotonic time is unchanged."""
        with self._cond:
            self._wall_offset += seconds
            self._cond.notify_all()

    def _blocked(self) -> int:
        # Only waits still short of their deadline count: a thread whose deadline has
        # passed is about to wake and is no longer "waiting" for the test's purposes.
        return sum(
            1 for deadline, cancel in self._waiting if deadline > self._mono and not cancel.is_set()
        )

    @property
    def waiters(self) -> int:
        """How many threads are blocked in ``wait()`` with a deadline still ahead."""
        with self._cond:
            return self._blocked()

    def wait_for_waiters(self, count: int = 1, timeout: float = 10.0) -> None:
        """Blocks (real time, bounded) until at least ``count`` threads are in ``wait()``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._blocked() < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} waiting thread(s), saw {self._blocked()}"
                    )
                self._cond.wait(min(left, 0.05))

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        with self._cond:
            if cancel.is_set():
                return True
            if self._auto:
                self._mono += max(0.0, seconds)
                self._cond.notify_all()
                return cancel.is_set()
            entry = (self._mono + max(0.0, seconds), cancel)
            self._waiting.append(entry)
            self._cond.notify_all()
            try:
                while not cancel.is_set() and self._mono < entry[0]:
                    # Short real-time slices so a cancel set from outside is seen quickly.
                    self._cond.wait(0.01)
                return cancel.is_set()
            finally:
                self._waiting.remove(entry)
                self._cond.notify_all()

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self.monotonic():.3f})"
