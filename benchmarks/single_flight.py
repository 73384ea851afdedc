"""Benchmark 3: single flight at scale, across threads and across processes.

Threads: N callers released together by a Barrier against an in-process
FakeTextStackServer, (a) with no token: device-code requests sent (must be 1), the same
user code for all, time to the first and the last ``Pending``; (b) with an expired
access token: refresh requests sent (must be 1).

Processes: P processes (fork and spawn) sharing one FileTokenCache whose access token
has expired, released together by a ``multiprocessing.Barrier``: refresh requests sent
in total (one rotation, so 1 is right) and wall time until the last has a token.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import tempfile
import threading
import time
from typing import Any

from textstack_sdk import (
    Authorized,
    FileTokenCache,
    MemoryTokenCache,
    Pending,
    TokenManager,
    TokenSet,
)
from textstack_sdk.testing import FakeTextStackServer

from ._common import Config, Row, spread

__all__ = ["run"]

SECTION_T = "single flight, threads"
SECTION_P = "single flight, processes"
DEVICE = "POST /auth/device/code"
REFRESH = "POST /auth/refresh-mobile"


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _expired_login(server: FakeTextStackServer) -> TokenSet:
    """A fresh login whose access token expired a minute ago (its refresh token works)."""
    _, refresh = server.issue_tokens()
    exp = time.time() - 60
    expired = server.make_jwt({"sub": server.user_id, "exp": exp})
    return TokenSet(expired, refresh, exp)


def _release_threads(manager: TokenManager, n: int) -> tuple[list[Any], list[float]]:
    """N threads call get_token() at once; returns results and seconds from release."""
    barrier = threading.Barrier(n + 1)
    results: list[Any] = [None] * n
    stamps = [0.0] * n

    def call(i: int) -> None:
        barrier.wait()
        results[i] = manager.get_token()
        stamps[i] = time.perf_counter()

    old = threading.stack_size(256 * 1024)
    try:
        workers = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(n)]
        for w in workers:
            w.start()
    finally:
        threading.stack_size(old)
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join(60)
    return results, [s - t0 for s in stamps]


def _thread_rows(server: FakeTextStackServer, n: int) -> list[Row]:
    rows = []
    server.reset_counters()
    with TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        cache=MemoryTokenCache(),
        prompt=False,
        environ={},
    ) as manager:
        results, times = _release_threads(manager, n)
    pend = [r for r in results if isinstance(r, Pending)]
    codes = {r.user_code for r in pend}
    sent = server.count(DEVICE)
    rows.append(
        Row(
            SECTION_T,
            f"no token, N={n}: device-code requests",
            float(sent),
            "requests",
            note=""
            if sent == 1 and len(pend) == n and len(codes) == 1
            else f"UNEXPECTED: {len(pend)}/{n} Pending, {len(codes)} user codes",
            extra={
                "threads": n,
                "kind": "device",
                "pending": len(pend),
                "user_codes": len(codes),
                "first_ms": min(times) * 1e3,
                "last_ms": max(times) * 1e3,
            },
        )
    )
    server.reset_counters()
    with TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        cache=MemoryTokenCache(_expired_login(server)),
        prompt=False,
        environ={},
    ) as manager:
        results, times = _release_threads(manager, n)
    ok = [r for r in results if isinstance(r, Authorized)]
    tokens = {_fingerprint(r.access_token) for r in ok}
    sent = server.count(REFRESH)
    rows.append(
        Row(
            SECTION_T,
            f"expired token, N={n}: refresh requests",
            float(sent),
            "requests",
            note=""
            if sent == 1 and len(ok) == n and len(tokens) == 1
            else f"UNEXPECTED: {len(ok)}/{n} Authorized, {len(tokens)} distinct tokens",
            extra={
                "threads": n,
                "kind": "refresh",
                "authorized": len(ok),
                "distinct_tokens": len(tokens),
                "device_requests": server.count(DEVICE),
                "first_ms": min(times) * 1e3,
                "last_ms": max(times) * 1e3,
            },
        )
    )
    return rows


def _child(
    api_url: str, site_host: str, path: str, barrier: Any, out: Any
) -> None:  # runs in the child process
    manager = TokenManager(
        api_url=api_url,
        site_host=site_host,
        cache=FileTokenCache(path),
        prompt=False,
        environ={},
    )
    try:
        barrier.wait(60)
        result = manager.get_token()
        done = time.monotonic()
        token = _fingerprint(result.access_token) if isinstance(result, Authorized) else None
        out.put((os.getpid(), type(result).__name__, token, done))
    except BaseException as exc:
        out.put((os.getpid(), f"error: {type(exc).__name__}: {exc}", None, time.monotonic()))
    finally:
        manager.close()


def _process_run(server: FakeTextStackServer, method: str, p: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context(method)
    with tempfile.TemporaryDirectory(prefix="bench-sf-") as folder:
        path = os.path.join(folder, "textstack", "mcp-token.json")
        cache = FileTokenCache(path)
        if not cache.save(_expired_login(server)):
            raise RuntimeError("could not seed the token cache")
        server.reset_counters()
        barrier = ctx.Barrier(p + 1)
        out = ctx.Queue()
        procs = [
            ctx.Process(
                target=_child,
                args=(server.api_url, server.site_host, path, barrier, out),
                daemon=True,
            )
            for _ in range(p)
        ]
        for proc in procs:
            proc.start()
        barrier.wait(120)
        t0 = time.monotonic()
        got = []
        try:
            for _ in range(p):
                got.append(out.get(timeout=60))
        except queue.Empty:
            pass
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        kinds = [g[1] for g in got]
        tokens = {g[2] for g in got if g[2]}
        return {
            "refresh_requests": server.count(REFRESH),
            "device_requests": server.count(DEVICE),
            "authorized": kinds.count("Authorized"),
            "results": sorted(set(kinds)),
            "distinct_tokens": len(tokens),
            "wall_s": (max(g[3] for g in got) - t0) if got else None,
            "answered": len(got),
        }


def run(config: Config) -> list[Row]:
    """Runs both single-flight benchmarks and returns their rows."""
    rows: list[Row] = []
    with FakeTextStackServer(interval=5.0, record_limit=0) as server:
        for n in config.thread_counts:
            rows.extend(_thread_rows(server, n))
        methods = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
        for method in methods:
            for p in config.process_counts:
                runs = [_process_run(server, method, p) for _ in range(config.process_repeats)]
                counts = [r["refresh_requests"] for r in runs]
                walls = [r["wall_s"] for r in runs if r["wall_s"] is not None]
                good = all(
                    r["authorized"] == p and r["distinct_tokens"] == 1 and r["answered"] == p
                    for r in runs
                )
                wall = spread(walls) if walls else None
                rows.append(
                    Row(
                        SECTION_P,
                        f"{method}, P={p}: refresh requests (max of {len(runs)} runs)",
                        float(max(counts)),
                        "requests",
                        note=(
                            ""
                            if good and max(counts) == 1
                            else "UNEXPECTED: "
                            + "; ".join(
                                f"{r['authorized']}/{p} authorized, "
                                f"{r['distinct_tokens']} tokens, results {r['results']}"
                                for r in runs
                            )
                        ),
                        extra={
                            "method": method,
                            "processes": p,
                            "refresh_per_run": counts,
                            "device_per_run": [r["device_requests"] for r in runs],
                            "wall_ms_median": wall.median * 1e3 if wall else None,
                            "wall_ms_spread": [wall.low * 1e3, wall.high * 1e3] if wall else None,
                        },
                    )
                )
    return rows
