"""Benchmark 5: ``textstack mcp`` (the stdio MCP server) against the official Python server.

Three figures:

* spawn to the first ``tools/list`` answer: a fresh process, ``initialize``,
  ``notifications/initialized`` and ``tools/list`` written at once, timed until the
  answer's line is read; FastMCP (``MCPServer`` of ``mcp`` 2.x) with one tool is the peer.
* ``tools/call get_book`` round trip over stdio, sequential calls on a warm process, both
  servers making the same SDK call (``TextStackApiClient.get_book``) against the local
  server in its own process; the direct SDK call in this process is the floor.
* a user-scoped call with no sign-in: the time to the "authentication required" answer
  (one device-code request to the local server, no API request), fresh cache per round.
* the server's own overhead per call, in process: the core parsing the request line,
  dispatch, the catalog's argument checks and rendering, and the encoded answer, minus
  the SDK call it wraps (an in-memory transport, so the network is not in the figure).
  Target: under 0.3 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from ._common import Config, Row, calibrate, interleaved, ns_per_call, ratio_rows, spread
from ._server_proc import ServerProcess

__all__ = ["run"]

SECTION_SPAWN = "mcp: spawn to first tools/list (ms)"
SECTION_CALL = "mcp: tools/call get_book over stdio (µs/call)"
SECTION_PENDING = "mcp: sign-in needed, time to the answer (ms)"
SECTION_OVERHEAD = "mcp: server overhead per tools/call, in process (µs)"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = [sys.executable, "-m", "textstack_sdk", "mcp"]
FASTMCP = [sys.executable, "-m", "benchmarks._fastmcp_get_book"]
INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "b", "version": "1"},
}


def _have_mcp() -> bool:
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError:
        return False
    return True


def _env(api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.update(TEXTSTACK_API_URL=api_url, TEXTSTACK_MCP_TOKEN="bench-token")
    return env


def _line(id_: Any, method: str, params: Optional[dict[str, Any]] = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        message["id"] = id_
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"


class _Child:
    """One stdio server process, driven synchronously."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def until(self, id_: Any) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.proc.args} closed stdout")
            message = json.loads(line)
            if message.get("id") == id_:
                if "error" in message:
                    raise RuntimeError(f"{self.proc.args}: {message['error']}")
                return message  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _spawn_ms(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    child = _Child(cmd, env)
    child.send(
        _line(1, "initialize", INIT)
        + _line(None, "notifications/initialized")
        + _line(2, "tools/list")
    )
    child.until(2)
    elapsed = time.perf_counter() - start
    child.close()
    return elapsed * 1e3


def _calls_us(child: _Child, calls: int, counter: list[int]) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        counter[0] += 1
        args = {"name": "get_book", "arguments": {"slug": "moby-dick"}}
        child.send(_line(counter[0], "tools/call", args))
        result = child.until(counter[0])["result"]
        if result.get("isError"):
            raise RuntimeError(f"{child.proc.args}: {result}")
    return (time.perf_counter() - start) / calls * 1e6


def _over_stdio(config: Config, api_url: str, with_fastmcp: bool) -> list[Row]:
    from textstack_sdk import TextStackApiClient

    env = _env(api_url)
    calls = 20 if config.smoke else 200
    children = {"textstack mcp": _Child(OURS, env)}
    if with_fastmcp:
        children["FastMCP (mcp 2.x)"] = _Child(FASTMCP, env)
    counters: dict[str, list[int]] = {}
    try:
        for name, child in children.items():
            child.send(_line(0, "initialize", INIT) + _line(None, "notifications/initialized"))
            child.until(0)
            counters[name] = [0]
            _calls_us(child, 5, counters[name])  # warm: connections, imports
        client = TextStackApiClient(api_url, token_provider=None, environ=env)
        client.get_book("moby-dick")

        def direct() -> float:
            start = time.perf_counter()
            for _ in range(calls):
                client.get_book("moby-dick")
            return (time.perf_counter() - start) / calls * 1e6

        candidates = {"direct SDK call (floor)": direct}
        for name, child in children.items():
            candidates[name] = lambda c=child, k=counters[name]: _calls_us(c, calls, k)
        samples = interleaved(candidates, config.rounds)
        client.close()
    finally:
        for child in children.values():
            child.close()
    return ratio_rows(SECTION_CALL, samples, "direct SDK call (floor)", "µs")


def _pending_ms(api_url: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        env = _env(api_url)
        del env["TEXTSTACK_MCP_TOKEN"]
        env["TEXTSTACK_MCP_TOKEN_CACHE"] = os.path.join(folder, "token.json")
        child = _Child(OURS, env)
        try:
            child.send(_line(0, "initialize", INIT) + _line(None, "notifications/initialized"))
            child.until(0)
            start = time.perf_counter()
            child.send(_line(1, "tools/call", {"name": "get_my_reading", "arguments": {}}))
            result = child.until(1)["result"]
            elapsed = time.perf_counter() - start
        finally:
            child.close()
    if not result["content"][0]["text"].startswith("authentication required"):
        raise RuntimeError(f"expected a sign-in answer, got {result}")
    return elapsed * 1e3


def _in_process(config: Config, api_url: str) -> list[Row]:
    """Server path (core + catalog) minus the SDK call, both over an in-memory transport."""
    import urllib.request

    from textstack_sdk import TextStackApiClient
    from textstack_sdk._http import Response
    from textstack_sdk._providers import StaticTokenProvider
    from textstack_sdk.mcp._catalog import ToolCatalog
    from textstack_sdk.mcp._protocol import ServerCore, Start
    from textstack_sdk.testing import MockTransport

    with urllib.request.urlopen(
        urllib.request.Request(f"{api_url}/books/moby-dick", headers={"Host": "textstack.app"})
    ) as answer:
        body = answer.read()
    canned = Response(200, {"content-type": "application/json"}, body)
    client = TextStackApiClient(
        "http://127.0.0.1:9/api",
        token_provider=StaticTokenProvider("t"),
        transport=MockTransport(lambda request: canned),
    )
    catalog = ToolCatalog(client)
    core = ServerCore(tools=catalog.list_tools(), server_name="textstack", server_version="b")
    core.receive(_line(0, "initialize", INIT).rstrip(b"\n"))
    line = _line(1, "tools/call", {"name": "get_book", "arguments": {"slug": "moby-dick"}})
    line = line.rstrip(b"\n")

    def server_path() -> None:
        (start,) = core.receive(line)
        assert isinstance(start, Start)
        core.finish(start.key, catalog.call(start.name, start.arguments, start.cancel))

    def sdk_call() -> None:
        client.get_book("moby-dick")

    n = calibrate(server_path, config.batch_seconds * 10)
    samples = interleaved(
        {
            "SDK call get_book (in-memory transport)": lambda: ns_per_call(sdk_call, n) / 1e3,
            "textstack mcp: line in -> answer out": lambda: ns_per_call(server_path, n) / 1e3,
        },
        config.rounds,
    )
    rows = ratio_rows(SECTION_OVERHEAD, samples, "SDK call get_book (in-memory transport)", "µs")
    overhead = [
        s - b
        for s, b in zip(
            samples["textstack mcp: line in -> answer out"],
            samples["SDK call get_book (in-memory transport)"],
        )
    ]
    o = spread(overhead)
    rows.append(
        Row(
            SECTION_OVERHEAD,
            "overhead (server path - SDK call)",
            o.median,
            "µs",
            spread=[o.low, o.high],
            note="target < 300 µs",
        )
    )
    client.close()
    return rows


def run(config: Config) -> list[Row]:
    """Spawn time, stdio round trips (ours vs FastMCP), and the in-process overhead."""
    with_fastmcp = _have_mcp()
    server = ServerProcess("--interval", "0.05")
    rows: list[Row] = []
    try:
        env = _env(server.api_url)
        spawns = {"textstack mcp": lambda: _spawn_ms(OURS, env)}
        if with_fastmcp:
            spawns["FastMCP (mcp 2.x)"] = lambda: _spawn_ms(FASTMCP, env)
        rounds = 2 if config.smoke else 7
        rows += ratio_rows(SECTION_SPAWN, interleaved(spawns, rounds), "textstack mcp", "ms")
        pending = spread([_pending_ms(server.api_url) for _ in range(rounds)])
        rows.append(
            Row(
                SECTION_PENDING,
                "textstack mcp: get_my_reading, no token",
                pending.median,
                "ms",
                spread=[pending.low, pending.high],
                note="one device-code round trip; target < 100 ms",
            )
        )
        rows += _over_stdio(config, server.api_url, with_fastmcp)
        rows += _in_process(config, server.api_url)
    finally:
        server.close()
    if not with_fastmcp:
        for section in (SECTION_SPAWN, SECTION_CALL):
            rows.append(Row(section, "FastMCP (mcp 2.x)", None, "", note="n/a: mcp not installed"))
    return rows
