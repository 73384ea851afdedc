"""``python -m textstack_sdk.mcp`` with the real 18-tool catalog, through the official client.

The catalog's own tests cover every tool's texts in-process; these prove the assembled
server end to end: the listing as a host sees it, a public call, a refused argument,
a failure-wrapper text, and the sign-in path of a user-scoped tool.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from textstack_sdk.testing import FakeTextStackServer

from ._harness import REAL_SERVER, ROOT, official_client, server_env

mcp = official_client()

CATALOG_ORDER = [
    "search_books",
    "get_book",
    "get_chapter",
    "search_my_library",
    "get_my_book",
    "get_my_chapter",
    "list_my_highlights",
    "list_my_vocabulary",
    "save_highlight",
    "save_my_highlight",
    "list_my_book_highlights",
    "save_insight",
    "get_my_insights",
    "get_my_reading",
    "get_book_progress",
    "set_book_progress",
    "get_chapter_review",
    "save_chapter_review",
]


@pytest.fixture
def api() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.02) as srv:
        yield srv


def _client(env: dict[str, str], mode: str) -> Any:
    params = mcp.StdioServerParameters(
        command=sys.executable, args=list(REAL_SERVER), env=env, cwd=str(ROOT)
    )
    return mcp.Client(params, mode=mode)


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 45))


@pytest.mark.parametrize("mode", ["legacy", "auto", "2026-07-28"])
def test_the_catalog_as_a_host_sees_it(api: FakeTextStackServer, tmp_path: Path, mode: str) -> None:
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json", token="t")

    async def main() -> None:
        async with _client(env, mode) as client:
            tools = (await client.list_tools()).tools
            assert [t.name for t in tools] == CATALOG_ORDER
            for tool in tools:
                assert tool.title and tool.description
                assert tool.input_schema["type"] == "object"
                assert tool.input_schema["additionalProperties"] is False
                assert tool.annotations.title == tool.title
                assert tool.annotations.open_world_hint is False
                assert tool.output_schema is None
            if mode != "2026-07-28":
                named = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", client.instructions or ""))
                assert named and named <= set(CATALOG_ORDER)
            book = await client.call_tool("get_book", {"slug": "moby-dick"})
            assert not book.is_error
            assert json.loads(book.content[0].text)["slug"] == "moby-dick"
            refused = await client.call_tool("search_books", {"query": "x"})
            assert refused.is_error
            assert refused.content[0].text == "'query' must be between 2 and 200 characters."
            api.inject("GET /books/*", status=503, times=10)  # outlasts any retry
            failed = await client.call_tool("get_book", {"slug": "moby-dick"})
            assert failed.is_error
            assert failed.content[0].text == "get_book failed: upstream answered 503"

    _run(main())


def test_a_user_tool_asks_for_sign_in_then_works(api: FakeTextStackServer, tmp_path: Path) -> None:
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json")

    async def main() -> None:
        async with _client(env, "legacy") as client:
            api.reset_counters()
            first = await client.call_tool("get_my_reading", {})
            assert first.is_error
            (code,) = api.pending_user_codes()
            assert first.content[0].text == (
                f"authentication required — open {api.base_url}/device and enter code "
                f"{code} to connect TextStack, then retry."
            )
            assert api.count("GET /me/*") == 0
            assert api.count("POST /auth/device/code") == 1
            api.approve(code)
            for _ in range(500):
                again = await client.call_tool("get_my_reading", {})
                if not again.is_error:
                    break
                await asyncio.sleep(0.02)
            assert not again.is_error, again.content[0].text
            assert set(json.loads(again.content[0].text)) >= {"reading", "allBooks"}

    _run(main())
