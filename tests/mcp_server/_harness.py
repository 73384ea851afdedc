"""Starting ``textstack mcp`` (or the stand-in catalog server) as a child, two ways.

``server_env`` builds the child's whole environment (the official client passes only a
few variables through). ``RawServer`` speaks the wire by hand for the cases a real client
never produces (broken JSON, floods, cancellation races, signals).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]
FAKE_CATALOG = ["-m", "tests.mcp_server._fake_catalog"]
REAL_SERVER = ["-m", "textstack_sdk", "mcp"]


def server_env(
    api_url: str, site_host: str, cache: Path, *, token: Optional[str] = None, **extra: str
) -> dict[str, str]:
    env = {
        key: os.environ[key]
        for key in ("PATH", "HOME", "SYSTEMROOT", "LANG", "LC_ALL")
        if key in os.environ
    }
    env.update(
        PYTHONPATH=str(ROOT),
        TEXTSTACK_API_URL=api_url,
        TEXTSTACK_SITE_HOST=site_host,
        TEXTSTACK_MCP_TOKEN_CACHE=str(cache),
        TEXTSTACK_MIN_POLL_INTERVAL="0.02",
        TEXTSTACK_MCP_TIMEOUT_SECONDS="5",
    )
    if token is not None:
        env["TEXTSTACK_MCP_TOKEN"] = token
    env.update(extra)
    return env


class RawServer:
    """A child server driven line by line. Not thread-safe: one test thread uses it."""

    def __init__(self, env: dict[str, str], args: list[str] = FAKE_CATALOG) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
        )
        self.lines: queue.Queue[Optional[bytes]] = queue.Queue()
        self.stderr = b""
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def send_bytes(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: Any) -> None:
        self.send_bytes(json.dumps(message).encode() + b"\n")

    def request(self, id_: Any, method: str, params: Optional[dict[str, Any]] = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def notify(self, method: str, params: Optional[dict[str, Any]] = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def read_raw(self, timeout: float = 10.0) -> Optional[bytes]:
        return self.lines.get(timeout=timeout)

    def read(self, timeout: float = 10.0) -> dict[str, Any]:
        line = self.read_raw(timeout)
        assert line is not None, "the server closed stdout"
        message = json.loads(line)
        assert isinstance(message, dict)
        return message

    def initialize(self) -> None:
        self.request("init", "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
        assert self.read()["id"] == "init"
        self.notify("notifications/initialized")

    def close(self, timeout: float = 10.0) -> int:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def rest(self, timeout: float = 10.0) -> list[bytes]:
        """Every line still to come until stdout closes."""
        out = []
        while True:
            line = self.read_raw(timeout)
            if line is None:
                return out
            out.append(line)


def official_client() -> Any:
    """The ``mcp`` package: skipped on Python 3.9 (it needs 3.10+), required in CI."""
    import pytest

    if sys.version_info < (3, 10):
        pytest.skip("the official mcp client needs Python 3.10+", allow_module_level=True)
    try:
        import mcp
    except ImportError:
        why = "the official MCP client is missing: pip install -e '.[test]' (mcp>=2.3,<3)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why, allow_module_level=True)
    return mcp
