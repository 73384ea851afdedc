"""Benchmark 1: ``TokenManager.get_token()`` on a valid token vs floors and peers.

One thread: ns per call, batches timed with ``perf_counter_ns``, candidates interleaved
round by round. Eight threads: total calls per second of tight loops against the same
floors, to show that the lock-free hot path has no lock convoy.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Callable

from textstack_sdk import Authorized, MemoryTokenCache, TokenManager, TokenSet
from textstack_sdk._http import Request, Response
from textstack_sdk.testing import MockTransport

from ._common import Config, Row, calibrate, interleaved, ns_per_call, ratio_rows, threaded_rate
from .token_peers import PEERS, setup_peer

__all__ = ["run"]

SECTION_NS = "hot path, 1 thread (ns/call)"
SECTION_MT = "hot path, calls/s"
FLOOR_TIME = "floor: attr read + time.time()"
SDK = "textstack get_token()"


def _unsigned_jwt(exp: float) -> str:
    def part(data: dict[str, object]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return part({"alg": "none", "typ": "JWT"}) + "." + part({"sub": "bench", "exp": exp}) + ".x"


def _no_network(request: Request) -> Response:
    raise AssertionError(f"the hot path sent a request: {request.route}")


class Floors:
    """Plain method calls with the same call overhead as ``get_token()``. Thread-safe."""

    def __init__(self, value: object) -> None:
        self._value = value
        self._lock = threading.Lock()

    def read(self) -> object:
        return self._value

    def read_locked(self) -> object:
        with self._lock:
            return self._value

    def read_time(self) -> object:
        value = self._value
        time.time()
        return value

    def read_time_locked(self) -> object:
        with self._lock:
            time.time()
            return self._value


def make_manager() -> tuple[TokenManager, MockTransport]:
    """A manager holding a valid token (exp in 10 years) that fails if it sends anything."""
    transport = MockTransport(_no_network)
    token = _unsigned_jwt(time.time() + 10 * 365 * 86400)
    cache = MemoryTokenCache(TokenSet(token, "refresh", time.time() + 10 * 365 * 86400))
    manager = TokenManager(
        api_url="http://127.0.0.1:9/api",
        site_host="textstack.app",
        cache=cache,
        transport=transport,
        prompt=False,
        environ={},
    )
    first = manager.get_token()  # slow path once: loads the cache, builds the snapshot
    if not isinstance(first, Authorized):
        raise RuntimeError(f"the seeded token was not accepted: {first!r}")
    return manager, transport


def run(config: Config) -> list[Row]:
    """Runs the hot-path benchmarks and returns their rows."""
    manager, transport = make_manager()
    floors = Floors(Authorized("x"))
    local: dict[str, Callable[[], object]] = {
        SDK: manager.get_token,
        "floor: attr read": floors.read,
        "floor: attr read under Lock": floors.read_locked,
        FLOOR_TIME: floors.read_time,
    }
    rows: list[Row] = []
    peers: dict[str, Callable[[], object]] = {}
    cleanups: list[Callable[[], None]] = []
    for name in PEERS:
        made, why = setup_peer(name)
        if made is None:
            rows.append(Row(SECTION_NS, name, None, "ns", note=f"n/a: {why}"))
            continue
        peers[name] = made[0]
        cleanups.append(made[1])
    try:
        single = {**local, **peers}
        sizes = {name: calibrate(fn, config.batch_seconds) for name, fn in single.items()}
        samples = interleaved(
            {
                name: (lambda fn=fn, n=sizes[name]: ns_per_call(fn, n))
                for name, fn in single.items()
            },
            config.rounds,
        )
        notes = {
            "botocore SSO get_frozen_token": "per-request call of botocore's signer",
        }
        ns_rows = ratio_rows(SECTION_NS, samples, FLOOR_TIME, "ns", notes=notes)
        for row in ns_rows:
            row.extra["batch_calls"] = sizes[row.name]
        rows = ns_rows + rows
        rows.extend(
            _threaded(
                config, {**local, "floor: read+time.time() under Lock": floors.read_time_locked}
            )
        )
    finally:
        for cleanup in cleanups:
            cleanup()
        manager.close()
    if transport.requests:
        raise RuntimeError("get_token() sent requests during the hot-path benchmark")
    return rows


def _threaded(config: Config, fns: dict[str, Callable[[], object]]) -> list[Row]:
    """Calls/s with 1 and 8 threads, interleaved; ratio of 8 threads to 1 thread."""
    measures: dict[str, Callable[[], float]] = {}
    for name, fn in fns.items():
        for threads in (1, 8):
            measures[f"{name} @{threads}"] = lambda fn=fn, t=threads: threaded_rate(
                fn, t, config.rate_seconds
            )
    # Eight threads are noisier than one (GIL hand-offs, neighbours): more rounds.
    samples = interleaved(measures, config.rounds if config.smoke else config.rounds + 2)
    rows = []
    for name in fns:
        one, eight = samples[f"{name} @1"], samples[f"{name} @8"]
        for threads, values in ((1, one), (8, eight)):
            ratios = [v / b for v, b in zip(values, one)]
            from ._common import spread

            s, rs = spread(values), spread(ratios)
            rows.append(
                Row(
                    SECTION_MT,
                    f"{name}, {threads} thread{'s' if threads > 1 else ''}",
                    s.median,
                    "calls/s",
                    [s.low, s.high],
                    baseline=f"{name}, 1 thread",
                    ratio=rs.median,
                    ratio_spread=[rs.low, rs.high],
                    extra={"candidate": name, "threads": threads},
                )
            )
    return rows
