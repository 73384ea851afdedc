"""``textstack mcp`` as a command: options reach the server, bad settings exit 5, raw input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from textstack_sdk.testing import FakeTextStackServer

from ._harness import REAL_SERVER, ROOT, RawServer, server_env


@pytest.fixture
def api() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.02) as srv:
        yield srv


def test_global_options_win_over_the_environment(api: FakeTextStackServer, tmp_path: Path) -> None:
    env = server_env("http://127.0.0.1:9/api", "wrong.example", tmp_path / "env.json", token="t")
    args = ["-m", "textstack_sdk", "mcp", "--api-url", api.api_url]
    raw = RawServer(env, [*args, "--site-host", api.site_host])
    raw.initialize()
    raw.request(1, "tools/call", {"name": "get_book", "arguments": {"slug": "moby-dick"}})
    result = raw.read()["result"]
    assert not result["isError"], result
    assert json.loads(result["content"][0]["text"])["slug"] == "moby-dick"
    assert raw.close() == 0


def test_a_relative_cache_option_is_used_from_the_working_directory(
    api: FakeTextStackServer, tmp_path: Path
) -> None:
    env = server_env(api.api_url, api.site_host, tmp_path / "unused.json")
    raw = RawServer(env, ["-m", "textstack_sdk", "mcp", "--cache", str(tmp_path / "c.json")])
    raw.initialize()
    raw.request(1, "tools/call", {"name": "get_my_reading", "arguments": {}})
    assert raw.read()["result"]["isError"] is True  # sign-in started
    assert raw.close() == 0
    created = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.startswith("c.json") for name in created), created
    assert not any(name.startswith("unused.json") for name in created), created


def test_a_bad_setting_is_one_line_on_stderr_and_exit_5(tmp_path: Path) -> None:
    env = server_env("http://example.com/api", "textstack.app", tmp_path / "c.json", token="t")
    done = subprocess.run(
        [sys.executable, "-m", "textstack_sdk", "mcp"],
        input=b"",
        capture_output=True,
        cwd=str(ROOT),
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 5
    assert done.stdout == b""
    assert done.stderr.decode().startswith("textstack: error: ")


def test_arguments_that_are_not_an_object_get_the_dotnet_text(
    api: FakeTextStackServer, tmp_path: Path
) -> None:
    # The official client cannot send these; the .NET tool answers them with a result.
    raw = RawServer(
        server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t"), list(REAL_SERVER)
    )
    raw.initialize()
    for i, arguments in enumerate([[], "x", 3, True]):
        raw.request(i, "tools/call", {"name": "get_book", "arguments": arguments})
        result = raw.read()["result"]
        assert result["isError"] is True
        assert result["content"][0]["text"] == "Arguments must be an object."
    assert api.count("*") == 0
    assert raw.close() == 0


@pytest.mark.parametrize("token", ["", "  \t"])
def test_a_blank_static_token_means_the_device_sign_in(
    api: FakeTextStackServer, tmp_path: Path, token: str
) -> None:
    # As the .NET tool: only a token that is not null or whitespace replaces the sign-in.
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json", token=token)
    raw = RawServer(env, list(REAL_SERVER))
    raw.initialize()
    raw.request(1, "tools/call", {"name": "get_my_reading", "arguments": {}})
    result = raw.read()["result"]
    (code,) = api.pending_user_codes()
    assert result["isError"] is True
    assert result["content"][0]["text"] == (
        f"authentication required — open {api.base_url}/device and enter code {code}"
        " to connect TextStack, then retry."
    )
    assert api.count("GET /me/*") == 0
    assert raw.close() == 0
