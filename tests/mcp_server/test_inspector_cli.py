"""``textstack mcp`` driven by the MCP Inspector CLI (npm ``@modelcontextprotocol/inspector``).

An independent client in another language: ``tools/list`` and ``tools/call`` in its
default (handshake) era, and the 2026-07-28 era through a config entry. ``.ci/run``
installs Node 22 and the Inspector from npm and sets ``TEXTSTACK_INSPECTOR``; elsewhere the
test skips when no Inspector is found, and under ``CI=true`` a missing one fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from textstack_sdk.testing import FakeTextStackServer

from ._harness import ROOT

pytestmark = pytest.mark.slow

ENV_INSPECTOR = "TEXTSTACK_INSPECTOR"
GET_BOOK = ["--tool-args-json", '{"slug":"moby-dick"}']
SHORT_QUERY = ["--tool-args-json", '{"query":"x"}']
CACHED = Path(tempfile.gettempdir()) / "textstack-inspector" / "node_modules" / ".bin"


def _inspector() -> Optional[Path]:
    for candidate in (os.environ.get(ENV_INSPECTOR), CACHED / "mcp-inspector"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("mcp-inspector")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def inspector() -> Path:
    path = _inspector()
    if path is None:
        why = f"MCP Inspector CLI not found (set {ENV_INSPECTOR}; .ci/run installs it from npm)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture
def api() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.02) as srv:
        yield srv


def _run(inspector: Path, home: Path, args: list[str]) -> tuple[int, Any]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    # The npm-installed Node sits beside the Inspector; the system one may be too old.
    env["PATH"] = os.pathsep.join([str(inspector.parent), env.get("PATH", "")])
    env.update(HOME=str(home), MCP_INSPECTOR_SECRET_STORE="memory", NO_COLOR="1")
    done = subprocess.run(
        [str(inspector), "--cli", *args, "--format", "json"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
        timeout=50,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return done.returncode, json.loads(lines[0])


def _server_env(api: FakeTextStackServer) -> dict[str, str]:
    return {
        "PYTHONPATH": str(ROOT),
        "TEXTSTACK_API_URL": api.api_url,
        "TEXTSTACK_SITE_HOST": api.site_host,
        "TEXTSTACK_MCP_TOKEN": "inspector-token",
    }


def test_tools_list_and_call_in_the_default_era(
    inspector: Path, api: FakeTextStackServer, tmp_path: Path
) -> None:
    target = [sys.executable, "-m", "textstack_sdk", "mcp"]
    for key, value in _server_env(api).items():
        target += ["-e", f"{key}={value}"]
    code, listing = _run(inspector, tmp_path, [*target, "--method", "tools/list"])
    assert code == 0
    tools = listing["result"]["tools"]
    assert len(tools) == 18 and tools[0]["name"] == "search_books"
    code, called = _run(
        inspector,
        tmp_path,
        [*target, "--method", "tools/call", "--tool-name", "get_book", *GET_BOOK],
    )
    assert code == 0
    assert json.loads(called["result"]["content"][0]["text"])["slug"] == "moby-dick"


def test_the_2026_era_through_a_config_entry(
    inspector: Path, api: FakeTextStackServer, tmp_path: Path
) -> None:
    config = tmp_path / "servers.json"
    entry = {
        "command": sys.executable,
        "args": ["-m", "textstack_sdk", "mcp"],
        "env": _server_env(api),
        "protocolEra": "modern",
    }
    config.write_text(json.dumps({"mcpServers": {"textstack": entry}}))
    pick = ["--config", str(config), "--server", "textstack"]
    code, hello = _run(inspector, tmp_path, [*pick, "--method", "initialize"])
    assert code == 0
    assert hello["result"]["protocolVersion"] == "2026-07-28"
    assert hello["result"]["serverInfo"]["name"] == "textstack"
    code, refused = _run(
        inspector,
        tmp_path,
        [*pick, "--method", "tools/call", "--tool-name", "search_books", *SHORT_QUERY],
    )
    assert code == 5  # the Inspector's exit code for an isError result
    assert refused["result"]["isError"] is True
    assert refused["result"]["content"][0]["text"] == (
        "'query' must be between 2 and 200 characters."
    )
