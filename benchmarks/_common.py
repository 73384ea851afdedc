"""Shared measurement helpers: interleaved rounds, thread throughput, statistics, rows."""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

__all__ = [
    "Config",
    "Row",
    "Spread",
    "calibrate",
    "interleaved",
    "machine_facts",
    "ns_per_call",
    "spread",
    "threaded_rate",
]


@dataclass(frozen=True)
class Config:
    """Sizes of one run. ``smoke`` exercises every path in seconds and judges nothing."""

    smoke: bool
    rounds: int
    batch_seconds: float
    rate_seconds: float
    http_seconds: float
    thread_counts: Sequence[int]
    process_counts: Sequence[int]
    process_repeats: int
    import_runs: int

    @classmethod
    def full(cls) -> Config:
        return cls(
            smoke=False,
            rounds=11,
            batch_seconds=0.04,
            rate_seconds=0.25,
            http_seconds=0.6,
            thread_counts=(1, 4, 16, 64, 256, 1024),
            process_counts=(1, 2, 4, 8, 16),
            process_repeats=2,
            import_runs=7,
        )

    @classmethod
    def short(cls) -> Config:
        """The full run's measurements with fewer rounds and sizes: judged, but noisier."""
        return cls(
            smoke=False,
            rounds=5,
            batch_seconds=0.04,
            rate_seconds=0.25,
            http_seconds=0.6,
            thread_counts=(1, 16, 256),
            process_counts=(1, 4),
            process_repeats=1,
            import_runs=5,
        )

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            smoke=True,
            rounds=2,
            batch_seconds=0.002,
            rate_seconds=0.02,
            http_seconds=0.05,
            thread_counts=(1, 4),
            process_counts=(1, 2),
            process_repeats=1,
            import_runs=1,
        )


@dataclass(frozen=True)
class Spread:
    """Median and spread of a list of samples."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    n: int


def spread(samples: Sequence[float]) -> Spread:
    """Median, min, max and quartiles (quartiles equal min/max below 4 samples)."""
    data = sorted(samples)
    if not data:
        raise ValueError("no samples")
    if len(data) >= 4:
        q1, _, q3 = statistics.quantiles(data, n=4)
    else:
        q1, q3 = data[0], data[-1]
    return Spread(statistics.median(data), data[0], data[-1], q1, q3, len(data))


@dataclass
class Row:
    """One reported figure, beside what it is compared with.

    ``ratio`` is value / baseline of the same round (median over rounds), and
    ``ratio_spread`` its min-max. ``value`` is None when the figure is "n/a" (then
    ``note`` says why).
    """

    section: str
    name: str
    value: Optional[float]
    unit: str
    spread: Optional[list[float]] = None  # [min, max] of value
    baseline: Optional[str] = None
    ratio: Optional[float] = None
    ratio_spread: Optional[list[float]] = None  # [min, max] of the per-round ratio
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(fn: Callable[[], object], target_seconds: float, *, minimum: int = 100) -> int:
    """How many calls of ``fn`` take about ``target_seconds`` (rounded to a power of ten step)."""
    n = minimum
    while True:
        elapsed = _run_batch(fn, n)
        if elapsed >= target_seconds * 1e9 / 10 or n >= 10_000_000:
            break
        n *= 10
    per_call = max(elapsed / n, 1.0)
    wanted = int(target_seconds * 1e9 / per_call)
    return max(minimum, min(wanted, 10_000_000))


def _run_batch(fn: Callable[[], object], n: int) -> int:
    repeat = itertools.repeat
    start = time.perf_counter_ns()
    for _ in repeat(None, n):
        fn()
    return time.perf_counter_ns() - start


def ns_per_call(fn: Callable[[], object], n: int) -> float:
    """Nanoseconds per call of ``fn`` over one batch of ``n`` calls."""
    return _run_batch(fn, n) / n


def interleaved(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Runs each measurement once per round, rotating the order round by round."""
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(candidates[name]())
    return samples


def threaded_rate(
    fn: Callable[[], object], threads: int, seconds: float, *, chunk: int = 1000
) -> float:
    """Calls per second of ``threads`` threads each calling ``fn`` in a tight loop.

    The threads start together (a Barrier) and stop at the same deadline; the rate is
    total calls over the time from the start to the last thread's stop.
    """
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    ends = [0.0] * threads
    start_box: list[float] = []
    repeat = itertools.repeat
    perf = time.perf_counter

    def work(index: int) -> None:
        barrier.wait()
        deadline = start_box[0] + seconds
        done = 0
        while True:
            for _ in repeat(None, chunk):
                fn()
            done += chunk
            if perf() >= deadline:
                break
        counts[index] = done
        ends[index] = perf()

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    start_box.append(perf())
    barrier.wait()
    for worker in workers:
        worker.join()
    return sum(counts) / (max(ends) - start_box[0])


def machine_facts() -> dict[str, Any]:
    """CPU count, affinity, Python and platform of this run."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model() or platform.processor(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def ratio_rows(
    section: str,
    samples: dict[str, list[float]],
    baseline: str,
    unit: str,
    *,
    notes: Optional[dict[str, str]] = None,
) -> list[Row]:
    """Rows with each candidate's per-round ratio to ``baseline`` of the same round."""
    base = samples[baseline]
    rows = []
    for name, values in samples.items():
        ratios = [v / b for v, b in zip(values, base)]
        s, rs = spread(values), spread(ratios)
        rows.append(
            Row(
                section=section,
                name=name,
                value=s.median,
                unit=unit,
                spread=[s.low, s.high],
                baseline=baseline,
                ratio=rs.median,
                ratio_spread=[rs.low, rs.high],
                note=(notes or {}).get(name, ""),
            )
        )
    return rows
