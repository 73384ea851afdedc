"""The stdio server as a child process, driven by hand: what real clients never send.

Bad input never kills it, stdout carries only JSON-RPC (even from a noisy process),
cancelled calls send nothing, stdin EOF and SIGTERM end it promptly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from textstack_sdk.testing import FakeTextStackServer

from ._harness import FAKE_CATALOG, ROOT, RawServer, server_env

PRINTING_CALL = {"name": "echo", "arguments": {"print": True}}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture
def api() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.02) as srv:
        yield srv


@pytest.fixture
def raw(api: FakeTextStackServer, tmp_path: Path) -> Iterator[RawServer]:
    server = RawServer(server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t"))
    yield server
    server.close()


def _error_code(message: dict[str, Any]) -> int:
    code = message["error"]["code"]
    assert isinstance(code, int)
    return code


def test_bad_input_gets_errors_and_the_server_goes_on(raw: RawServer) -> None:
    raw.send_bytes(b"{not json\n")
    assert raw.read() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error: not valid JSON"},
    }
    raw.send_bytes(b'{"jsonrpc":"2.0","id":1,"method":"ping","x":"\xff\xfe"}\n')
    assert _error_code(raw.read()) == -32700
    raw.send_bytes(b"[" * 100_000 + b"\n")
    assert _error_code(raw.read()) == -32700
    raw.send_bytes(b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":NaN}}\n')
    assert _error_code(raw.read()) == -32700
    raw.send([{"jsonrpc": "2.0", "id": 3, "method": "ping"}])
    assert raw.read()["error"]["code"] == -32600
    raw.send(42)
    assert raw.read()["error"]["code"] == -32600
    raw.send({"jsonrpc": "2.0", "id": None, "method": "ping"})
    assert raw.read()["error"]["code"] == -32600
    raw.request(0, "ping")
    assert raw.read() == {"jsonrpc": "2.0", "id": 0, "result": {}}
    raw.request("0", "no/such/method")
    reply = raw.read()
    assert reply["id"] == "0" and _error_code(reply) == -32601
    raw.notify("no/such/notification")
    raw.initialize()
    raw.request(5, "tools/call", {"arguments": {}})
    assert _error_code(raw.read()) == -32602
    raw.request(6, "tools/list", {"cursor": "bogus"})
    assert _error_code(raw.read()) == -32602
    raw.request(7, "tools/list", {"_meta": MODERN_META})
    assert _error_code(raw.read()) == -32600  # an enveloped request on a handshake connection
    raw.request(8, "tools/list")
    assert [t["name"] for t in raw.read()["result"]["tools"]] == ["echo", "wait", "my_books"]
    assert raw.close() == 0
    assert raw.rest() == []  # the notifications were never answered


def test_an_oversized_line_is_refused_and_the_next_line_served(raw: RawServer) -> None:
    raw.initialize()
    chunk = b"x" * (1 << 20)
    raw.send_bytes(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"a":"')
    for _ in range(100):  # 100 MB in one line
        raw.send_bytes(chunk)
    raw.send_bytes(b'"}}\n')
    reply = raw.read(timeout=60)
    assert reply["id"] is None and _error_code(reply) == -32600
    assert "longer than" in reply["error"]["message"]
    raw.request(2, "ping")
    assert raw.read() == {"jsonrpc": "2.0", "id": 2, "result": {}}


def test_a_flood_of_calls_is_refused_beyond_the_bound(raw: RawServer) -> None:
    raw.initialize()
    for i in range(80):
        raw.request(i, "tools/call", {"name": "wait", "arguments": {}})
    refusals = [raw.read() for _ in range(16)]
    assert {_error_code(m) for m in refusals} == {-32000}
    assert sorted(m["id"] for m in refusals) == list(range(64, 80))
    raw.request("p", "ping")
    assert raw.read()["id"] == "p"  # answered while 64 calls wait
    for i in range(64):
        raw.notify("notifications/cancelled", {"requestId": i})
    raw.request("q", "ping")
    assert raw.read()["id"] == "q"
    assert raw.close() == 0
    assert raw.rest() == []  # no cancelled call answered


def test_ping_and_cancel_while_a_call_waits(raw: RawServer) -> None:
    raw.request("m1", "tools/call", {"name": "wait", "arguments": {}, "_meta": MODERN_META})
    raw.request("m2", "tools/list", {"_meta": MODERN_META})
    listing = raw.read()
    assert listing["id"] == "m2"
    assert listing["result"]["resultType"] == "complete"
    assert listing["result"]["ttlMs"] >= 0 and listing["result"]["cacheScope"] == "public"
    assert listing["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "textstack"
    raw.notify("notifications/cancelled", {"requestId": "m1", "reason": "user"})
    raw.request("m3", "tools/call", {"name": "echo", "arguments": {"k": 1}, "_meta": MODERN_META})
    reply = raw.read()
    assert reply["id"] == "m3" and reply["result"]["resultType"] == "complete"
    raw.request("m4", "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
    reply = raw.read()
    assert _error_code(reply) == -32022
    assert reply["error"]["data"] == {"supported": ["2026-07-28"], "requested": "2025-11-25"}
    assert raw.close() == 0
    assert raw.rest() == []  # the cancelled m1 never answered


def test_stdin_eof_waits_for_calls_in_flight(raw: RawServer) -> None:
    raw.initialize()
    raw.request(1, "tools/call", {"name": "echo", "arguments": {"delay": 0.3}})
    assert raw.close() == 0
    (line,) = raw.rest()
    assert json.loads(line)["id"] == 1


def test_eof_with_a_stuck_call_exits_within_the_bound(
    api: FakeTextStackServer, tmp_path: Path
) -> None:
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t")
    env["FAKE_MCP_DRAIN_SECONDS"] = "0.3"
    raw = RawServer(env)
    raw.initialize()
    raw.request(1, "tools/call", {"name": "wait", "arguments": {}})
    raw.request(2, "ping")
    assert raw.read()["id"] == 2
    started = time.monotonic()
    assert raw.close(timeout=15) == 0
    assert time.monotonic() - started < 10  # the tool would wait 20 s
    assert raw.rest() == []  # given up on, not answered


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_ends_it_promptly(raw: RawServer) -> None:
    raw.initialize()
    raw.request(1, "tools/call", {"name": "wait", "arguments": {}})
    raw.request(2, "ping")
    assert raw.read()["id"] == 2
    raw.proc.send_signal(signal.SIGTERM)
    assert raw.proc.wait(10) == 0
    assert raw.rest() == []


NOISY_SITE = """
import logging, subprocess, sys, warnings
logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, force=True)
logging.getLogger("textstack_sdk").setLevel(logging.DEBUG)
warnings.simplefilter("always")
warnings.showwarning = lambda *a, **k: print("warning:", a[0])
import textstack_sdk.mcp._stdio as stdio
_orig = stdio.StdioServer.serve
def serve(self):
    print("print while serving")
    logging.getLogger("noise").warning("log line on stdout")
    warnings.warn("a warning")
    subprocess.run([sys.executable, "-c", "print('child process output')"], check=True)
    import os; os.write(1, b"raw write to fd 1\\n")
    return _orig(self)
stdio.StdioServer.serve = serve
"""


def test_stdout_carries_only_json_rpc_in_a_noisy_process(
    api: FakeTextStackServer, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(NOISY_SITE)
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t")
    env["PYTHONPATH"] = f"{tmp_path}:{ROOT}"
    raw = RawServer(env)
    raw.initialize()
    raw.request(1, "tools/call", {"name": "echo", "arguments": {"print": True}})
    raw.request(2, "tools/call", {"name": "my_books", "arguments": {}})
    assert raw.close() == 0
    lines = raw.rest()
    assert len(lines) == 2
    for line in lines:
        message = json.loads(line)
        assert message["jsonrpc"] == "2.0" and "result" in message
    err = raw.stderr.decode()
    for noise in (
        "print while serving",
        "log line on stdout",
        "a warning",
        "child process output",
        "raw write to fd 1",
        "stray print from a tool",
    ):
        assert noise in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX descriptors")
@pytest.mark.parametrize("stderr", ["closed", "broken"])
def test_a_stray_print_never_reaches_stdout_when_stderr_is_unusable(
    api: FakeTextStackServer, tmp_path: Path, stderr: str
) -> None:
    # A print that stderr refused stays in sys.stdout's buffer; it used to be flushed to
    # the real stdout when the guard put fd 1 back (after the answers, before exit).
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t")
    command = [sys.executable, *FAKE_CATALOG]
    if stderr == "closed":
        command = ["/bin/sh", "-c", 'exec "$0" "$@" 2>&-', *command]
    read_end, write_end = os.pipe()
    os.close(read_end)  # "broken": every write to stderr fails with EPIPE
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}}
    requests = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": PRINTING_CALL},
    ]
    try:
        done = subprocess.run(
            command,
            input=b"".join(json.dumps(r).encode() + b"\n" for r in requests),
            stdout=subprocess.PIPE,
            stderr=write_end,
            cwd=str(ROOT),
            env=env,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    lines = done.stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1], done.stdout[-300:]
    assert json.loads(lines[1])["result"]["isError"] is False


GUARD_WITHOUT_STDERR = """
import os
os.close(2)
from textstack_sdk.mcp._stdio import guard_stdio
with guard_stdio() as (read_fd, write_fd):
    diverted = os.readlink("/proc/self/fd/1")
print(read_fd > 2, write_fd > 2, diverted)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_without_stderr_the_guard_sends_fd_1_to_devnull() -> None:
    # A plain dup would take the free fd 2 for the wire, and fd 1 would follow it there.
    done = subprocess.run(
        [sys.executable, "-c", GUARD_WITHOUT_STDERR],
        stdin=subprocess.PIPE,
        capture_output=True,
        cwd=str(ROOT),
        timeout=30,
        check=True,
    )
    assert done.stdout.decode().split() == ["True", "True", "/dev/null"]
