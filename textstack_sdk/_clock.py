"""The clock seam: wall time for token expiry, monotonic time for intervals and deadlines."""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    """What the SDK needs to know about time. Implementations must be thread-safe."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (JWT exp is compared against this)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, deadlines)."""
        ...

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        """Waits up to ``seconds``; returns True at once if ``cancel`` is or becomes set."""
        ...


class SystemClock:
    """The real clock. Thread-safe (stateless)."""

    __slots__ = ()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        return cancel.wait(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
