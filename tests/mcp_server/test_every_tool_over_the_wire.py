"""Every one of the 18 tools through the official client over stdio, in both eras.

One client session per era keeps this fast: each tool's happy path, the catalog's whole
table of refused arguments (those the client can send), the not-found texts, and each
failure-wrapper text, with the upstream faults injected in the local server. The exact
texts and renderings are pinned in process by tests/mcp_tools; this proves they cross the
wire unchanged.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_tools.test_catalog import VALIDATION

from textstack_sdk.testing import FakeTextStackServer

from ._harness import REAL_SERVER, ROOT, official_client, server_env

mcp = official_client()

REVIEW = {
    "blocks": [
        {
            "title": "Gratitude",
            "problem": "p",
            "rootCause": "c",
            "rule": "r",
            "highlightIds": [],
            "question": {"prompt": "p", "answer": "a"},
        }
    ]
    * 3,
    "applications": ["apply"],
}


def _happy(ids: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    pride, upload = ids["pride-and-prejudice"], ids["meditations"]
    return [
        ("search_books", {"query": "truth universally", "limit": 5}),
        ("get_book", {"slug": "pride-and-prejudice"}),
        ("get_chapter", {"slug": "pride-and-prejudice", "chapterSlug": "chapter-1"}),
        ("search_my_library", {"query": "war"}),
        ("get_my_book", {"bookId": upload}),
        ("get_my_chapter", {"bookId": upload, "chapterSlug": "book-one"}),
        ("list_my_highlights", {"editionId": pride}),
        ("list_my_vocabulary", {"limit": 10}),
        (
            "save_highlight",
            {
                "editionId": pride,
                "chapterId": ids["pride-and-prejudice/chapter-1"],
                "selectedText": "It is a truth",
            },
        ),
        (
            "save_my_highlight",
            {
                "bookId": upload,
                "chapterId": ids["meditations/book-two"],
                "selectedText": "Begin the morning",
                "color": "pink",
            },
        ),
        ("list_my_book_highlights", {"bookId": upload}),
        ("save_insight", {"editionId": pride, "chapterSlug": "chapter-2", "text": "Bennet"}),
        ("get_my_insights", {"editionId": pride}),
        ("get_my_reading", {}),
        ("get_book_progress", {"bookId": upload}),
        ("set_book_progress", {"slug": "pride-and-prejudice", "chapterSlug": "chapter-1"}),
        ("save_chapter_review", {"bookId": upload, "chapterSlug": "book-one", "review": REVIEW}),
        ("get_chapter_review", {"bookId": upload, "chapterSlug": "book-one"}),
    ]


FAULTS = [
    # (how the upstream fails, the text the tool answers)
    ({"status": 500, "times": 10}, "get_book failed: upstream answered 500"),
    (
        {"status": 200, "body": "<html>oops</html>", "content_type": "text/html"},
        "get_book failed: upstream unavailable",
    ),
    ({"drop": True, "effect": False, "times": 10}, "get_book failed: upstream unavailable"),
    ({"delay": 1.0, "times": 10}, "get_book failed: upstream timed out"),
]


@pytest.fixture
def api() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.02) as srv:
        yield srv


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_every_tool_over_the_wire(api: FakeTextStackServer, tmp_path: Path, mode: str) -> None:
    token, _ = api.issue_tokens()
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json", token=token)
    env["TEXTSTACK_MCP_TIMEOUT_SECONDS"] = "0.4"  # the delay fault outlasts it
    params = mcp.StdioServerParameters(
        command=sys.executable, args=list(REAL_SERVER), env=env, cwd=str(ROOT)
    )

    async def call(client: Any, name: str, args: Any) -> tuple[bool, str]:
        result = await client.call_tool(name, args)
        (block,) = result.content
        return bool(result.is_error), block.text

    async def main() -> None:
        async with mcp.Client(params, mode=mode) as client:
            listed = [t.name for t in (await client.list_tools()).tools]
            happy = _happy(api.sample_ids)
            assert [name for name, _ in happy if name not in listed] == []
            assert sorted(listed) == sorted(name for name, _ in happy)
            for name, args in happy:
                is_error, text = await call(client, name, args)
                assert not is_error, (name, text)
                json.loads(text)

            api.reset_counters()
            for name, args, expected in VALIDATION:
                if not isinstance(args, dict):
                    continue  # the official client sends objects only
                assert await call(client, name, args) == (True, expected), (name, args)
            assert api.count("*") == 0  # refused before any request

            ghost = str(uuid.uuid4())
            assert await call(client, "get_book", {"slug": "no-such"}) == (
                True,
                "get_book: no book found for slug 'no-such'",
            )
            assert await call(client, "get_my_book", {"bookId": ghost.upper()}) == (
                True,
                f"get_my_book: no uploaded book found with id '{ghost}'",
            )

            for fault, expected in FAULTS:
                api.clear_faults()
                api.inject("GET /books/*", **fault)
                assert await call(client, "get_book", {"slug": "moby-dick"}) == (True, expected)
            api.clear_faults()
            api.revoke_all()
            is_error, text = await call(client, "get_my_reading", {})
            # MCP_SERVER.md's .NET text is "... — Unauthorized: no valid TextStack token.";
            # the catalog words it as the SDK does. The prefix is what hosts key on.
            assert is_error and text.startswith("authentication required — "), text

    asyncio.run(asyncio.wait_for(main(), 50))
