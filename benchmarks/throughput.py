"""Benchmark 2: authenticated GETs per second through ``TextStackApiClient`` vs bare clients.

The server (``python -m textstack_sdk.testing``) runs in its own process, pinned to a
CPU of its own when there are two or more. Every candidate sends the same GET
(``/api/me/books``, a 447-byte JSON answer) with the same ``Host``, ``Authorization``
and ``Accept`` headers and decodes the JSON (the client into typed results, the bare
``PoolManager`` with ``json.loads``, requests and httpx with ``.json()``; the raw
``http.client`` ceiling probe only reads the bytes); candidates are interleaved round
by round. Besides requests
per second, the client process's CPU time per request is reported: it is the client's
own cost even when the server is the bottleneck.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import http.client
import io
import json
import pstats
import socket
import threading
import time
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from textstack_sdk import MemoryTokenCache, TextStackApiClient, TokenManager

from ._common import Config, Row, interleaved, spread
from ._server_proc import ServerProcess, pin, unpin

__all__ = ["run"]

SECTION = "client throughput (req/s)"
SECTION_CPU = "client CPU per request (µs)"
SECTION_PAIRED = "client vs bare urllib3, alternating (req/s ratio)"
BARE = "bare urllib3 PoolManager"
CLIENT = "TextStackApiClient.list_my_books"
CEILING = "raw http.client keep-alive (server ceiling probe)"
RAW_SOCKET = "raw socket keep-alive (client CPU floor)"
SITE = "textstack.app"
PATH = "/me/books"

Call = Callable[[], object]


def _candidates(
    api_url: str, token: str, manager: TokenManager
) -> tuple[dict[str, Call], dict[str, str], list[Callable[[], None]]]:
    url = api_url + PATH
    headers = {"Host": SITE, "Authorization": "Bearer " + token, "Accept": "application/json"}
    calls: dict[str, Call] = {}
    missing: dict[str, str] = {}
    closers: list[Callable[[], None]] = []

    client = TextStackApiClient(api_url, site_host=SITE, token_provider=manager, environ={})
    closers.append(client.close)
    calls[CLIENT] = client.list_my_books

    import urllib3

    pool = urllib3.PoolManager(maxsize=16)
    closers.append(pool.clear)

    def bare() -> object:
        response = pool.request("GET", url, headers=headers)
        if response.status != 200:
            raise RuntimeError(f"bare urllib3 got HTTP {response.status}")
        return json.loads(response.data)

    calls[BARE] = bare

    try:
        import requests
    except ImportError:
        missing["requests.Session"] = "n/a: requests is not installed"
    else:
        session = requests.Session()
        closers.append(session.close)

        def with_requests() -> object:
            response = session.get(url, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"requests got HTTP {response.status_code}")
            return response.json()

        calls["requests.Session"] = with_requests

    try:
        import httpx
    except ImportError:
        missing["httpx.Client"] = "n/a: httpx is not installed"
    else:
        hclient = httpx.Client(
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16)
        )
        closers.append(hclient.close)

        def with_httpx() -> object:
            response = hclient.get(url, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"httpx got HTTP {response.status_code}")
            return response.json()

        calls["httpx.Client"] = with_httpx

    split = urlsplit(url)
    local = threading.local()
    raw_path = split.path
    connections: list[http.client.HTTPConnection] = []

    def raw() -> object:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(split.hostname, split.port)
            connections.append(conn)
        conn.request("GET", raw_path, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"http.client got HTTP {response.status}")
        return data

    calls[CEILING] = raw
    closers.append(lambda: [c.close() for c in connections])

    # The least a client can do: one prebuilt request, the answer split by hand.
    wire = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request_bytes = f"GET {raw_path} HTTP/1.1\r\n{wire}\r\n".encode("latin-1")
    socks: list[socket.socket] = []

    def raw_socket() -> object:
        sock = getattr(local, "sock", None)
        if sock is None:
            sock = local.sock = socket.create_connection((split.hostname, split.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(sock)
            local.rest = b""
        sock.sendall(request_bytes)
        data: bytes = local.rest
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                raise RuntimeError("raw socket: the server closed the connection")
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            more = sock.recv(65536)
            if not more:
                raise RuntimeError("raw socket: the server closed the connection")
            body += more
        local.rest = body[length:]
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"raw socket got {head[:20]!r}")
        return body[:length]

    calls[RAW_SOCKET] = raw_socket
    closers.append(lambda: [s.close() for s in socks])
    return calls, missing, closers


def _rate_and_cpu(fn: Call, threads: int, seconds: float) -> tuple[float, float]:
    """(requests/s, client-process CPU µs per request) of ``threads`` tight loops."""
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    ends = [0.0] * threads
    box: list[float] = []
    errors: list[BaseException] = []
    perf = time.perf_counter

    def work(i: int) -> None:
        barrier.wait()
        deadline = box[0] + seconds
        n = 0
        try:
            while perf() < deadline:
                fn()
                n += 1
        except BaseException as exc:
            errors.append(exc)
        counts[i] = n
        ends[i] = perf()

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    cpu0 = time.process_time()
    box.append(perf())
    barrier.wait()
    for w in workers:
        w.join()
    cpu = time.process_time() - cpu0
    if errors:
        raise RuntimeError(f"a request failed during the benchmark: {errors[0]!r}") from errors[0]
    total = sum(counts)
    return total / (max(ends) - box[0]), cpu / max(total, 1) * 1e6


def _paired(a: Call, b: Call, threads: int, seconds: float, slice_calls: int = 20) -> float:
    """a's request rate over b's, the two alternating every ``slice_calls`` in each thread.

    Side by side at the finest grain: both see the same server, the same machine load and
    the same moment, so drift between measurement slots (the noisiest part of a shared
    2-core machine) cancels out. Half the threads start with each candidate.
    """
    barrier = threading.Barrier(threads + 1)
    spent = [[0.0, 0.0] for _ in range(threads)]
    done = [[0, 0] for _ in range(threads)]
    box: list[float] = []
    errors: list[BaseException] = []
    perf = time.perf_counter

    def work(i: int) -> None:
        barrier.wait()
        end = box[0] + seconds
        turn = i % 2
        try:
            # At least one slice of each, however slow the machine: a ratio needs both.
            while perf() < end or 0 in done[i]:
                fn = a if turn == 0 else b
                t0 = perf()
                for _ in range(slice_calls):
                    fn()
                spent[i][turn] += perf() - t0
                done[i][turn] += slice_calls
                turn ^= 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    box.append(perf())
    barrier.wait()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"a request failed during the benchmark: {errors[0]!r}") from errors[0]
    rate_a = sum(d[0] for d in done) / max(sum(t[0] for t in spent), 1e-9)
    rate_b = sum(d[1] for d in done) / max(sum(t[1] for t in spent), 1e-9)
    return rate_a / rate_b


def _paired_rows(calls: dict[str, Call], config: Config) -> list[Row]:
    rows = []
    for threads in (1, 8):
        ratios = [
            _paired(calls[CLIENT], calls[BARE], threads, config.http_seconds)
            for _ in range(config.rounds)
        ]
        s = spread(ratios)
        rows.append(
            Row(
                SECTION_PAIRED,
                f"{CLIENT}, {threads} thread{'s' if threads > 1 else ''}",
                s.median,
                "x",
                [s.low, s.high],
                baseline=f"{BARE}, alternating every 20 requests",
                ratio=s.median,
                ratio_spread=[s.low, s.high],
                extra={"threads": threads, "rounds": len(ratios)},
            )
        )
    return rows


def _profile(fn: Call, seconds: float) -> list[dict[str, Any]]:
    """The client's per-request cost by function (cProfile, one thread)."""
    profiler = cProfile.Profile()
    n = 0
    end = time.perf_counter() + seconds
    profiler.enable()
    while time.perf_counter() < end:
        fn()
        n += 1
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename.replace("\\", "/")
        for marker in ("textstack_sdk/", "urllib3/", "http/client.py", "socket.py", "json/"):
            if marker in where:
                where = where[where.index(marker) :]
                break
        else:
            where = where.rsplit("/", 1)[-1]
        rows.append(
            {
                "function": f"{where}:{line}({func})",
                "calls_per_request": nc / n,
                "self_us_per_request": tt / n * 1e6,
                "cum_us_per_request": ct / n * 1e6,
            }
        )
    rows.sort(key=lambda r: -r["self_us_per_request"])
    return [{"requests_profiled": n}, *rows[:40], *_wanted(rows[40:])]


def _wanted(rest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = [(m, f) for _, m, f in _BREAKDOWN]
    return [
        r
        for r in rest
        if any(m in r["function"] and r["function"].endswith(f"({f})") for m, f in keys)
    ]


# (label, file marker, function name): cumulative cost per request under cProfile.
_BREAKDOWN = (
    ("whole call", "_client.py", "list_my_books"),
    ("token: provider get_token()", "_token_manager.py", "get_token"),
    ("transport: handle_request()", "_transport.py", "handle_request"),
    ("  check_url()", "_transport.py", "check_url"),
    ("  _headers() validation", "_transport.py", "_headers"),
    ("  _send(): exchange, body, Response", "_transport.py", "_send"),
    ("    request_head() (prebuilt)", "_http1.py", "request_head"),
    ("    _exchange(): conn, send, head", "_transport.py", "_exchange"),
    ("      pool checkout _get_conn()", "connectionpool.py", "_get_conn"),
    ("      response begin()", "_transport.py", "begin"),
    ("      parse_head()", "_http1.py", "parse_head"),
    ("    deadline reader makefile()", "_transport.py", "makefile"),
    ("parse: decode_json()", "_api_parse.py", "decode_json"),
    ("parse: typed result", "_api_parse.py", "parse"),
)


def breakdown_bare(profile: list[dict[str, Any]]) -> Optional[float]:
    """Cumulative µs per request of urllib3's urlopen() in the bare candidate."""
    for row in profile[1:]:
        if "connectionpool.py" in row["function"] and row["function"].endswith("(urlopen)"):
            return float(row["cum_us_per_request"])
    return None


def breakdown(profile: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cumulative µs per request of the client's main steps (from ``_profile`` rows)."""
    found = []
    for label, marker, func in _BREAKDOWN:
        for row in profile[1:]:
            name = row["function"]
            if marker in name and name.endswith(f"({func})"):
                found.append({"step": label, "cum_us_per_request": row["cum_us_per_request"]})
                break
    return found


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the throughput benchmark; returns rows and extra facts (server, profile)."""
    facts: dict[str, Any] = {}
    with ServerProcess(
        "--interval", "0.01", "--auto-approve", "--token-lifetime", "86400"
    ) as server:
        previous = pin(server.pid)
        facts["pinned"] = previous is not None
        manager = TokenManager(
            api_url=server.api_url,
            site_host=SITE,
            cache=MemoryTokenCache(),
            min_poll_interval=0,
            prompt=False,
            environ={},
        )
        closers: list[Callable[[], None]] = [manager.close]
        try:
            token = manager.wait_for_token(timeout=30).access_token
            calls, missing, more = _candidates(server.api_url, token, manager)
            closers.extend(more)
            for fn in calls.values():  # warm up: connections, imports, caches
                for _ in range(20):
                    fn()
            # This process holds every peer's modules (msal, matplotlib...), a heap no real
            # client process has; without this, full collections over that heap bill each
            # candidate in proportion to what it allocates. Same for every candidate.
            gc.collect()
            gc.freeze()
            measures: dict[str, Callable[[], tuple[float, float]]] = {}
            for threads in (1, 8):
                for name, fn in calls.items():
                    measures[f"{name} @{threads}"] = lambda fn=fn, t=threads: _rate_and_cpu(
                        fn, t, config.http_seconds
                    )
            raw = interleaved(measures, config.rounds)  # type: ignore[arg-type]
            rows = _rows(calls, raw, missing) + _paired_rows(calls, config)
            facts["profile_client_1_thread"] = _profile(calls[CLIENT], 0.3 if config.smoke else 2.0)
            facts["profile_bare_1_thread"] = _profile(calls[BARE], 0.3 if config.smoke else 2.0)
            facts["client_breakdown_us"] = breakdown(facts["profile_client_1_thread"])
            bare_urlopen = breakdown_bare(facts["profile_bare_1_thread"])
            if bare_urlopen is not None:
                facts["bare_urlopen_us"] = bare_urlopen
        finally:
            for close in reversed(closers):
                with contextlib.suppress(Exception):
                    close()
            unpin(previous)
    return rows, facts


def _rows(
    calls: dict[str, Call],
    raw: dict[str, list[tuple[float, float]]],
    missing: dict[str, str],
) -> list[Row]:
    rows: list[Row] = []
    for threads in (1, 8):
        base = raw[f"{BARE} @{threads}"]
        for name in calls:
            got = raw[f"{name} @{threads}"]
            rates = [r for r, _ in got]
            cpus = [c for _, c in got]
            ratio = spread([r / b[0] for r, b in zip(rates, base)])
            cpu_ratio = spread([c / b[1] for c, b in zip(cpus, base)])
            s, sc = spread(rates), spread(cpus)
            label = f"{name}, {threads} thread{'s' if threads > 1 else ''}"
            rows.append(
                Row(
                    SECTION,
                    label,
                    s.median,
                    "req/s",
                    [s.low, s.high],
                    baseline=f"{BARE}, {threads} thread{'s' if threads > 1 else ''}",
                    ratio=ratio.median,
                    ratio_spread=[ratio.low, ratio.high],
                    extra={"candidate": name, "threads": threads, "iqr": [s.q1, s.q3]},
                )
            )
            rows.append(
                Row(
                    SECTION_CPU,
                    label,
                    sc.median,
                    "µs",
                    [sc.low, sc.high],
                    baseline=f"{BARE}, {threads} thread{'s' if threads > 1 else ''}",
                    ratio=cpu_ratio.median,
                    ratio_spread=[cpu_ratio.low, cpu_ratio.high],
                    extra={"candidate": name, "threads": threads},
                )
            )
        for name, why in missing.items():
            label = f"{name}, {threads} thread{'s' if threads > 1 else ''}"
            rows.append(Row(SECTION, label, None, "req/s", note=why))
    return rows
