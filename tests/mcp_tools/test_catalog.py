"""The MCP tool catalog over a real client and the local server (real sockets).

The expected listing below is written from shared/MCP_SERVER.md §1 (state B), not from
the catalog's own data, so a drift in either shows.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textstack_sdk import (
    Authorized,
    MemoryTokenCache,
    StaticTokenProvider,
    TextStackApiClient,
    TokenManager,
    TokenResult,
)
from textstack_sdk.mcp._catalog import ABSENT, ToolCatalog, UnknownTool
from textstack_sdk.testing import FakeTextStackServer

# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


def _client(server: FakeTextStackServer, provider: Any = None, **options: Any) -> Any:
    if provider is None:
        provider = StaticTokenProvider(server.issue_tokens()[0])
    return TextStackApiClient(
        server.api_url, site_host=server.site_host, token_provider=provider, **options
    )


@pytest.fixture
def catalog(server: FakeTextStackServer) -> Iterator[ToolCatalog]:
    with _client(server) as client:
        yield ToolCatalog(client)
    server.clear_faults()


@pytest.fixture
def ids(server: FakeTextStackServer) -> dict[str, str]:
    return server.sample_ids


def call(catalog: ToolCatalog, name: str, args: Any) -> tuple[bool, str]:
    result = catalog.call(name, args, threading.Event())
    assert set(result) == {"content", "isError"}
    (block,) = result["content"]
    assert block["type"] == "text"
    return result["isError"], block["text"]


def ok(catalog: ToolCatalog, name: str, args: Any) -> Any:
    is_error, text = call(catalog, name, args)
    assert not is_error, text
    return json.loads(text)


def fails(catalog: ToolCatalog, name: str, args: Any) -> str:
    is_error, text = call(catalog, name, args)
    assert is_error, text
    return text


# ------------------------------------------------------------------ the listing

UUID = {"type": "string", "format": "uuid"}
COLOR = {"type": "string", "enum": ["yellow", "green", "blue", "pink"]}


def s(lo: Optional[int] = None, hi: Optional[int] = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string"}
    if lo is not None:
        out["minLength"] = lo
    if hi is not None:
        out["maxLength"] = hi
    return out


def i(lo: int, hi: Optional[int] = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "minimum": lo}
    if hi is not None:
        out["maximum"] = hi
    return out


READ = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True}
ADD = {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False}
REPLACE = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True}

# name, title, hints, properties, required
EXPECTED: list[tuple[str, str, dict[str, bool], dict[str, Any], list[str]]] = [
    (
        "search_books",
        "Search the catalog",
        READ,
        {"query": s(2, 200), "limit": i(1, 50)},
        ["query"],
    ),
    ("get_book", "Get a catalog book", READ, {"slug": s(1, 300)}, ["slug"]),
    (
        "get_chapter",
        "Read a catalog chapter",
        READ,
        {"slug": s(1, 300), "chapterSlug": s(1, 300)},
        ["slug", "chapterSlug"],
    ),
    (
        "search_my_library",
        "Search my uploaded books",
        READ,
        {"query": s(2, 200), "tags": s(hi=200)},
        ["query"],
    ),
    ("get_my_book", "Get one of my uploaded books", READ, {"bookId": UUID}, ["bookId"]),
    (
        "get_my_chapter",
        "Read a chapter of my uploaded book",
        READ,
        {"bookId": UUID, "chapterSlug": s(1, 300)},
        ["bookId", "chapterSlug"],
    ),
    ("list_my_highlights", "List my highlights", READ, {"editionId": UUID}, ["editionId"]),
    (
        "list_my_vocabulary",
        "List my vocabulary",
        READ,
        {"stage": i(0, 4), "search": s(hi=100), "limit": i(1, 100), "offset": i(0)},
        [],
    ),
    (
        "save_highlight",
        "Save a highlight",
        ADD,
        {
            "editionId": UUID,
            "chapterId": UUID,
            "selectedText": s(1, 5000),
            "noteText": s(hi=2000),
            "color": COLOR,
        },
        ["editionId", "chapterId", "selectedText"],
    ),
    (
        "save_my_highlight",
        "Save a highlight in my uploaded book",
        ADD,
        {
            "bookId": UUID,
            "chapterId": UUID,
            "selectedText": s(1, 5000),
            "noteText": s(hi=2000),
            "color": COLOR,
        },
        ["bookId", "chapterId", "selectedText"],
    ),
    (
        "list_my_book_highlights",
        "List highlights in my uploaded book",
        READ,
        {"bookId": UUID},
        ["bookId"],
    ),
    (
        "save_insight",
        "Save an insight",
        REPLACE,
        {
            "bookId": UUID,
            "editionId": UUID,
            "text": s(1, 20000),
            "chapterSlug": s(hi=300),
            "question": s(hi=1000),
        },
        ["text"],
    ),
    ("get_my_insights", "Get my insights", READ, {"bookId": UUID, "editionId": UUID}, []),
    ("get_my_reading", "Get my reading shelf", READ, {}, []),
    ("get_book_progress", "Get book progress", READ, {"bookId": UUID, "editionId": UUID}, []),
    (
        "set_book_progress",
        "Mark a chapter finished",
        REPLACE,
        {"chapterSlug": s(1, 300), "bookId": UUID, "slug": s(1, 300)},
        ["chapterSlug"],
    ),
    (
        "get_chapter_review",
        "Get a chapter review",
        READ,
        {"bookId": UUID, "editionId": UUID, "chapterSlug": s(1, 300), "part": i(1, 20)},
        ["chapterSlug"],
    ),
]


def test_the_listing_is_the_dotnet_catalog_in_order(catalog: ToolCatalog) -> None:
    tools = catalog.list_tools()
    names = [t["name"] for t in tools]
    assert names == [row[0] for row in EXPECTED] + ["save_chapter_review"]
    for tool, (name, title, hints, props, required) in zip(tools, EXPECTED):
        assert set(tool) == {"name", "title", "description", "inputSchema", "annotations"}, name
        assert tool["title"] == title
        assert tool["annotations"] == {"title": title, **hints, "openWorldHint": False}
        assert tool["inputSchema"] == {
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": False,
        }, name
        assert isinstance(tool["description"], str) and len(tool["description"]) > 40
    # The listing is JSON as it stands (no tuples, no non-finite numbers).
    assert json.loads(json.dumps(tools, allow_nan=False)) == tools


def test_the_review_schema_is_the_rich_one(catalog: ToolCatalog) -> None:
    tool = catalog.list_tools()[-1]
    assert tool["title"] == "Save a chapter review"
    assert tool["annotations"] == {
        "title": "Save a chapter review",
        **REPLACE,
        "openWorldHint": False,
    }
    schema = tool["inputSchema"]
    assert schema["required"] == ["chapterSlug", "review"]
    assert schema["additionalProperties"] is False
    review = schema["properties"]["review"]
    assert review["type"] == "object" and review["additionalProperties"] is False
    assert review["required"] == ["blocks", "applications"]
    blocks = review["properties"]["blocks"]
    assert (blocks["minItems"], blocks["maxItems"]) == (3, 6)
    block = blocks["items"]
    assert block["additionalProperties"] is False
    assert block["required"] == [
        "title",
        "problem",
        "rootCause",
        "rule",
        "highlightIds",
        "question",
    ]
    assert block["properties"]["highlightIds"] == {"type": "array", "maxItems": 20, "items": UUID}
    assert block["properties"]["question"]["additionalProperties"] is False
    apps = review["properties"]["applications"]
    assert (apps["minItems"], apps["maxItems"]) == (1, 5)
    assert review["properties"]["openThreads"]["maxItems"] == 10
    assert review["properties"]["openThreads"]["items"]["additionalProperties"] is False
    assert review["properties"]["closedThreadIds"]["maxItems"] == 20


def test_descriptions_name_only_listed_tools_and_keep_the_quoted_phrases(
    catalog: ToolCatalog,
) -> None:
    tools = catalog.list_tools()
    names = {t["name"] for t in tools}
    by_name = {t["name"]: t["description"] for t in tools}
    assert "plain text (HTML stripped, length-capped)" in by_name["get_chapter"]
    assert "there is a hard limit of 200 per book" in by_name["save_my_highlight"]
    assert "search_my_library" in by_name["search_books"]
    for description in by_name.values():
        assert "ask_book" not in description
        for word in description.replace(",", " ").replace(".", " ").split():
            if "_" in word and word.strip("`:;()") in {
                "ask_book",
                "add_vocabulary_words",
                "update_vocabulary_word",
                "delete_vocabulary_word",
            }:
                pytest.fail(f"{word} is not a listed tool")
    assert names == set(by_name)


def test_the_listing_is_a_fresh_copy(catalog: ToolCatalog) -> None:
    first = catalog.list_tools()
    first[0]["inputSchema"]["properties"].clear()
    first.pop()
    again = catalog.list_tools()
    assert len(again) == 18
    assert again[0]["inputSchema"]["properties"]


def test_an_unknown_tool_raises_with_the_dotnet_text(catalog: ToolCatalog) -> None:
    with pytest.raises(UnknownTool) as info:
        catalog.call("ask_book", {}, threading.Event())
    assert str(info.value) == "Unknown tool 'ask_book'."
    assert info.value.name == "ask_book"


# ------------------------------------------------------------------ happy paths


def test_search_books(catalog: ToolCatalog, server: FakeTextStackServer) -> None:
    out = ok(catalog, "search_books", {"query": "truth universally", "limit": 5})
    assert out["results"][0] == {
        "title": "Pride and Prejudice",
        "author": "Jane Austen",
        "chapterTitle": "Chapter 1",
        "editionSlug": "pride-and-prejudice",
        "snippet": out["results"][0]["snippet"],
    }
    assert "<b>" in out["results"][0]["snippet"]
    (req,) = [r for r in server.requests if r.route == "GET /search"]
    assert req.query == {"q": "truth universally", "limit": "5"}
    assert "authorization" not in req.headers


def test_get_book(catalog: ToolCatalog, ids: dict[str, str]) -> None:
    out = ok(catalog, "get_book", {"slug": "pride-and-prejudice"})
    assert out["editionId"] == ids["pride-and-prejudice"]
    assert out["authors"] == ["Jane Austen"]
    assert out["genres"] == ["Romance", "Classics"]
    assert out["chapters"][0] == {
        "chapterId": ids["pride-and-prejudice/chapter-1"],
        "chapterNumber": 1,
        "slug": "chapter-1",
        "title": "Chapter 1",
        "wordCount": out["chapters"][0]["wordCount"],
    }
    assert set(out) == {
        "editionId", "title", "slug", "language", "description", "authors", "genres", "chapters",
    }  # fmt: skip


def test_get_chapter_is_plain_text(catalog: ToolCatalog, server: FakeTextStackServer) -> None:
    out = ok(catalog, "get_chapter", {"slug": "pride-and-prejudice", "chapterSlug": "chapter-1"})
    assert out["prevSlug"] is None and out["nextSlug"] == "chapter-2"
    assert out["truncated"] is False
    assert out["text"].startswith("It is a truth universally acknowledged")
    assert "<p>" not in out["text"] and "  " not in out["text"]
    assert list(out) == [
        "chapterNumber", "slug", "title", "prevSlug", "nextSlug", "truncated", "text",
    ]  # fmt: skip
    assert all("authorization" not in r.headers for r in server.requests)


def test_search_my_library(catalog: ToolCatalog, ids: dict[str, str]) -> None:
    out = ok(catalog, "search_my_library", {"query": "war", "tags": "  "})
    hit = out["results"][0]
    assert hit["source"] == "userbook" and hit["bookId"] == ids["the-art-of-war"]
    assert set(hit) == {"source", "bookId", "title", "author", "language", "chapterSlug", "excerpt"}


def test_search_my_library_leaves_blank_tags_out(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    ok(catalog, "search_my_library", {"query": "war", "tags": " \u3000"})
    ok(catalog, "search_my_library", {"query": "war", "tags": "strategy"})
    queries = [r.query for r in server.requests if r.route == "GET /me/library/search"]
    assert queries == [{"q": "war"}, {"q": "war", "tags": "strategy"}]


def test_get_my_book_echoes_the_id_lowercase(
    catalog: ToolCatalog, server: FakeTextStackServer, ids: dict[str, str]
) -> None:
    book = ids["the-art-of-war"]
    out = ok(catalog, "get_my_book", {"bookId": "{" + book.upper() + "}"})
    assert out["bookId"] == book
    assert out["source"] == "userbook" and out["rendersAsOriginalPdf"] is False
    assert out["chapters"][0]["chapterId"] == ids["the-art-of-war/laying-plans"]
    (req,) = [r for r in server.requests if r.route == "GET /me/books/{bookId}"]
    assert req.path.endswith("/" + book)
    assert req.headers["authorization"].startswith("Bearer ")


def test_get_my_chapter(catalog: ToolCatalog, ids: dict[str, str]) -> None:
    book = ids["the-art-of-war"]
    out = ok(
        catalog, "get_my_chapter", {"bookId": book.replace("-", ""), "chapterSlug": "waging-war"}
    )
    assert out["bookId"] == book
    assert out["chapterId"] == ids["the-art-of-war/waging-war"]
    assert out["prevSlug"] == "laying-plans" and out["nextSlug"] is None
    assert out["text"].startswith("Sun Tzu said")


def test_highlights_round_trip(catalog: ToolCatalog, server: FakeTextStackServer) -> None:
    ids = server.sample_ids
    edition, chapter = ids["moby-dick"], ids["moby-dick/loomings"]
    text = "Call me Ishmael \U0001f40b"
    saved = ok(
        catalog,
        "save_highlight",
        {"editionId": edition, "chapterId": chapter, "selectedText": text, "noteText": "n"},
    )
    assert saved["saved"] is True and saved["color"] == "yellow"
    assert saved["selectedText"] == text and saved["chapterId"] == chapter
    assert list(saved) == [
        "id", "chapterId", "color", "selectedText", "noteText", "createdAt", "saved",
    ]  # fmt: skip
    (post,) = [r for r in server.requests if r.route == "POST /me/highlights"]
    body = post.json()
    assert body["color"] == "yellow" and body["editionId"] == edition
    assert json.loads(body["anchorJson"]) == {
        "prefix": "",
        "exact": text,
        "suffix": "",
        "startOffset": 0,
        "endOffset": 18,  # UTF-16 units: the whale counts two
        "chapterId": chapter,
        "source": "mcp",
    }
    listed = ok(catalog, "list_my_highlights", {"editionId": edition})
    assert saved["id"] in [h["id"] for h in listed["highlights"]]


def test_my_book_highlights_round_trip(catalog: ToolCatalog, ids: dict[str, str]) -> None:
    book, chapter = ids["meditations"], ids["meditations/book-two"]
    saved = ok(
        catalog,
        "save_my_highlight",
        {
            "bookId": book,
            "chapterId": chapter,
            "selectedText": "Begin the morning",
            "color": "pink",
        },
    )
    assert saved["source"] == "userbook" and saved["bookId"] == book
    assert saved["chapterId"] == chapter and saved["color"] == "pink" and saved["saved"] is True
    assert list(saved)[:3] == ["id", "source", "bookId"]
    listed = ok(catalog, "list_my_book_highlights", {"bookId": book})
    assert listed["source"] == "userbook" and listed["bookId"] == book
    mine = [h for h in listed["highlights"] if h["id"] == saved["id"]]
    assert mine and mine[0]["chapterId"] == chapter


def test_list_my_vocabulary_filters(catalog: ToolCatalog, server: FakeTextStackServer) -> None:
    out = ok(catalog, "list_my_vocabulary", {"stage": 0, "search": "", "limit": 10, "offset": 0})
    assert out["total"] >= 1 and {w["stage"] for w in out["items"]} == {"new"}
    assert set(out["items"][0]) == {
        "word", "language", "translation", "definition", "stage", "bookTitle", "nextReviewAt",
    }  # fmt: skip
    everything = ok(catalog, "list_my_vocabulary", {})
    assert everything["total"] > out["total"]
    queries = [r.query for r in server.requests if r.route == "GET /me/vocabulary/words"]
    assert queries == [{"stage": "0", "limit": "10", "offset": "0"}, {}]


def test_insights_round_trip(catalog: ToolCatalog, ids: dict[str, str]) -> None:
    edition = ids["pride-and-prejudice"]
    saved = ok(
        catalog,
        "save_insight",
        {"editionId": edition, "chapterSlug": "chapter-2", "text": "**Bennet**", "question": "q?"},
    )
    assert saved == {
        "id": saved["id"],
        "editionId": edition,
        "bookId": None,
        "chapterSlug": "chapter-2",
        "question": "q?",
        "updatedAt": saved["updatedAt"],
        "saved": True,
    }
    got = ok(catalog, "get_my_insights", {"editionId": edition})
    mine = [x for x in got["insights"] if x["id"] == saved["id"]]
    assert mine and mine[0]["text"] == "**Bennet**" and mine[0]["chapterSlug"] == "chapter-2"
    assert set(mine[0]) == {
        "id", "chapterSlug", "chapterNumber", "chapterTitle", "question", "text", "updatedAt",
    }  # fmt: skip


def test_get_my_reading_takes_no_arguments(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    out = ok(catalog, "get_my_reading", ABSENT)
    assert set(out) == {"reading", "finishedRecently", "allBooks"}
    sources = {item["source"] for item in out["reading"]}
    assert sources <= {"userbook", "savedbook"}
    for item in out["reading"] + out["finishedRecently"]:
        assert (item["bookId"] is None) == (item["source"] != "userbook")
        assert (item["editionId"] is None) == (item["source"] != "savedbook")
    assert {b["bookId"] for b in out["allBooks"]} == {
        server.sample_ids["the-art-of-war"],
        server.sample_ids["meditations"],
    }
    assert set(out["allBooks"][0]) == {
        "source", "bookId", "title", "author", "status", "chapterCount", "progressPercent",
        "chapterSlug", "finishedAt",
    }  # fmt: skip
    routes = [r.route for r in server.requests]
    assert routes == ["GET /me/library/shelves", "GET /me/books"]
    assert fails(catalog, "get_my_reading", {"x": 1}) == "Unknown argument 'x'."


def test_book_progress_for_an_upload(catalog: ToolCatalog, server: FakeTextStackServer) -> None:
    book = server.sample_ids["the-art-of-war"]
    done = ok(catalog, "set_book_progress", {"bookId": book, "chapterSlug": "laying-plans"})
    assert done == {
        "bookId": book,
        "finishedChapterSlug": "laying-plans",
        "resumeChapterSlug": "waging-war",
        "progressPercent": 0.5,
        "bookFinished": False,
        "saved": True,
    }
    (put,) = [r for r in server.requests if r.route == "PUT /me/books/{bookId}/progress"]
    assert put.json() == {
        "chapterSlug": "waging-war",
        "locator": "scroll:waging-war:0",
        "percent": 0.5,
        "percentUnit": "book",
        "locatorKind": "scroll",
    }
    got = ok(catalog, "get_book_progress", {"bookId": book})
    assert got["opened"] is True and got["chapterSlug"] == "waging-war"
    assert got["progressPercent"] == 0.5
    assert list(got) == [
        "source", "bookId", "opened", "chapterSlug", "progressPercent", "lastReadAt",
    ]  # fmt: skip


def test_book_progress_for_a_catalog_book(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    ids = server.sample_ids
    edition = ids["pride-and-prejudice"]
    last = ok(
        catalog, "set_book_progress", {"slug": "pride-and-prejudice", "chapterSlug": "chapter-3"}
    )
    assert last == {
        "editionId": edition,
        "finishedChapterSlug": "chapter-3",
        "resumeChapterSlug": "chapter-3",
        "progressPercent": 1,
        "bookFinished": True,
        "saved": True,
    }
    ok(catalog, "set_book_progress", {"slug": "pride-and-prejudice", "chapterSlug": "chapter-1"})
    puts = [r.json() for r in server.requests if r.route == "PUT /me/progress/{editionId}"]
    assert [(p["chapterId"], p["locator"], p["percent"]) for p in puts] == [
        (ids["pride-and-prejudice/chapter-3"], '{"type":"end"}', 1),
        (ids["pride-and-prejudice/chapter-2"], '{"type":"start"}', pytest.approx(1 / 3)),
    ]
    assert all(p["percentUnit"] == "book" for p in puts)
    got = ok(catalog, "get_book_progress", {"editionId": edition.upper()})
    assert got["source"] == "edition" and got["editionId"] == edition and got["opened"] is True
    assert set(got) == {
        "source", "editionId", "opened", "chapterSlug", "progressPercent", "lastReadAt",
        "finishedAt",
    }  # fmt: skip


def test_progress_of_a_book_never_opened(catalog: ToolCatalog, server: FakeTextStackServer) -> None:
    edition = server.sample_ids["moby-dick"]
    got = ok(catalog, "get_book_progress", {"editionId": edition})
    if got["opened"]:
        pytest.skip("the local server's seed data opened this book")
    assert got == {"source": "edition", "editionId": edition, "opened": False}


def test_chapter_review_round_trip(catalog: ToolCatalog, ids: dict[str, str]) -> None:
    book = ids["meditations"]
    review = {
        "blocks": [
            {
                "title": "Gratitude",
                "problem": "Ingratitude — отвлечение",
                "rootCause": "c",
                "rule": "r",
                "highlightIds": [],
                "question": {"prompt": "p", "answer": "a"},
            }
        ]
        * 3,
        "applications": ["apply"],
    }
    saved = ok(
        catalog,
        "save_chapter_review",
        {"bookId": book, "chapterSlug": "book-one", "review": review},
    )
    assert saved["review"] == review and saved["userBookId"] == book
    got = ok(catalog, "get_chapter_review", {"bookId": book, "chapterSlug": "book-one", "part": 1})
    assert got["review"] == review and got["part"] == 1
    # Passed through unescaped: the Cyrillic is in the text as itself.
    _, text = call(catalog, "get_chapter_review", {"bookId": book, "chapterSlug": "book-one"})
    assert "отвлечение" in text


# ------------------------------------------------------------------ validation


VALIDATION = [
    ("search_books", {"query": "x"}, "'query' must be between 2 and 200 characters."),
    ("search_books", {"query": None}, "'query' is required and must be a string."),
    ("search_books", {"query": "ab", "limit": 5.0}, "'limit' must be an integer."),
    ("search_books", {"query": "ab", "limit": "5"}, "'limit' must be an integer."),
    ("search_books", {"query": "ab", "limit": True}, "'limit' must be an integer."),
    ("search_books", {"query": "ab", "limit": None}, "'limit' must be an integer."),
    ("search_books", {"query": "ab", "limit": 51}, "'limit' must be between 1 and 50."),
    ("search_books", {"query": "ab", "limit": 2**31}, "'limit' must be an integer."),
    ("search_books", {"query": "ab", "page": 1}, "Unknown argument 'page'."),
    ("search_books", [], "Arguments must be an object."),
    ("search_books", {"limit": 0}, "'query' is required and must be a string."),
    ("get_book", {}, "'slug' is required and must be a string."),
    ("get_book", {"slug": ""}, "'slug' must be between 1 and 300 characters."),
    ("get_chapter", {"slug": "a"}, "'chapterSlug' is required and must be a string."),
    ("search_my_library", {"query": "ab", "tags": None}, "'tags' must be a string."),
    (
        "search_my_library",
        {"query": "ab", "tags": "t" * 201},
        "'tags' must be at most 200 characters.",
    ),
    ("get_my_book", {"bookId": "nope"}, "'bookId' is required and must be a UUID."),
    ("get_my_book", {"bookId": None}, "'bookId' is required and must be a UUID."),
    (
        "get_my_chapter",
        {"bookId": str(uuid.uuid4())},
        "'chapterSlug' is required and must be a string.",
    ),
    ("list_my_highlights", {"editionId": 5}, "'editionId' is required and must be a UUID."),
    ("list_my_vocabulary", {"stage": 5}, "'stage' must be between 0 and 4."),
    ("list_my_vocabulary", {"offset": -1}, "'offset' must be between 0 and 2147483647."),
    ("list_my_vocabulary", {"search": "s" * 101}, "'search' must be at most 100 characters."),
    ("list_my_vocabulary", {"limit": 0}, "'limit' must be between 1 and 100."),
    (
        "save_highlight",
        {
            "editionId": str(uuid.uuid4()),
            "chapterId": str(uuid.uuid4()),
            "selectedText": "x",
            "color": "red",
        },
        "'color' must be one of: yellow, green, blue, pink.",
    ),
    (
        "save_highlight",
        {
            "editionId": str(uuid.uuid4()),
            "chapterId": str(uuid.uuid4()),
            "selectedText": "x",
            "color": None,
        },
        "'color' must be a string.",
    ),
    (
        "save_highlight",
        {
            "editionId": str(uuid.uuid4()),
            "chapterId": str(uuid.uuid4()),
            "selectedText": "x",
            "color": "c" * 21,
        },
        "'color' must be at most 20 characters.",
    ),
    (
        "save_highlight",
        # noteText is checked before color, whatever the order they come in.
        {
            "color": "red",
            "editionId": str(uuid.uuid4()),
            "chapterId": str(uuid.uuid4()),
            "selectedText": "x",
            "noteText": 1,
        },
        "'noteText' must be a string.",
    ),
    (
        "save_highlight",
        {"editionId": str(uuid.uuid4()), "chapterId": str(uuid.uuid4()), "selectedText": ""},
        "'selectedText' must be between 1 and 5000 characters.",
    ),
    (
        "save_my_highlight",
        {"bookId": str(uuid.uuid4()), "selectedText": "x"},
        "'chapterId' is required and must be a UUID.",
    ),
    ("list_my_book_highlights", {}, "'bookId' is required and must be a UUID."),
    (
        "save_insight",
        {"text": "t"},
        "Pass either 'bookId' (an uploaded book) or 'editionId' (a catalog book).",
    ),
    (
        "save_insight",
        {"text": "t", "bookId": str(uuid.uuid4()), "editionId": str(uuid.uuid4())},
        "Pass either 'bookId' (an uploaded book) or 'editionId' (a catalog book), not both.",
    ),
    ("save_insight", {"bookId": "x"}, "'bookId' must be a UUID."),
    ("save_insight", {"editionId": None}, "'editionId' must be a UUID."),
    ("save_insight", {"bookId": str(uuid.uuid4())}, "'text' is required and must be a string."),
    (
        "save_insight",
        {"bookId": str(uuid.uuid4()), "text": "t", "chapterSlug": "c" * 301},
        "'chapterSlug' must be at most 300 characters.",
    ),
    (
        "save_insight",
        {"bookId": str(uuid.uuid4()), "text": "t", "question": "q" * 1001},
        "'question' must be at most 1000 characters.",
    ),
    ("get_my_reading", {"bookId": None}, "Unknown argument 'bookId'."),
    ("get_my_reading", "{}", "Arguments must be an object."),
    (
        "get_my_insights",
        {},
        "Pass either 'bookId' (an uploaded book) or 'editionId' (a catalog book).",
    ),
    (
        "get_book_progress",
        ABSENT,
        "Pass either 'bookId' (an uploaded book) or 'editionId' (a catalog book).",
    ),
    # A JSON null for the arguments is not their absence: .NET refuses it.
    ("get_book_progress", None, "Arguments must be an object."),
    (
        "set_book_progress",
        {"slug": "a"},
        "'chapterSlug' is required and must be a string.",
    ),
    (
        "set_book_progress",
        {"chapterSlug": "c"},
        "Pass either 'bookId' (an uploaded book) or 'slug' (a catalog book), not both.",
    ),
    (
        "set_book_progress",
        {"chapterSlug": "c", "slug": "s", "bookId": str(uuid.uuid4())},
        "Pass either 'bookId' (an uploaded book) or 'slug' (a catalog book), not both.",
    ),
    ("set_book_progress", {"chapterSlug": "c", "bookId": "b"}, "'bookId' must be a UUID."),
    ("set_book_progress", {"chapterSlug": "c", "slug": None}, "'slug' must be a string."),
    (
        "get_chapter_review",
        {"bookId": str(uuid.uuid4()), "chapterSlug": "c", "part": 21},
        "'part' must be between 1 and 20.",
    ),
    (
        "get_chapter_review",
        {"bookId": str(uuid.uuid4())},
        "'chapterSlug' is required and must be a string.",
    ),
    (
        "save_chapter_review",
        {"bookId": str(uuid.uuid4()), "chapterSlug": "c", "review": "text"},
        "'review' is required and must be an object.",
    ),
    (
        "save_chapter_review",
        {"bookId": str(uuid.uuid4()), "chapterSlug": "c"},
        "'review' is required and must be an object.",
    ),
    (
        "save_chapter_review",
        {"chapterSlug": "c", "review": {}},
        "Pass either 'bookId' (an uploaded book) or 'editionId' (a catalog book).",
    ),
]


@pytest.mark.parametrize(("name", "args", "text"), VALIDATION)
def test_validation_texts_and_nothing_is_sent(
    catalog: ToolCatalog, server: FakeTextStackServer, name: str, args: Any, text: str
) -> None:
    server.reset_counters()
    assert fails(catalog, name, args) == text
    assert server.count("*") == 0


def test_every_tool_has_validation_cases() -> None:
    assert {row[0] for row in VALIDATION} == {row[0] for row in EXPECTED} | {"save_chapter_review"}


# ------------------------------------------------------------------ not found


def test_not_found_texts(catalog: ToolCatalog) -> None:
    ghost = str(uuid.uuid4())
    assert (
        fails(catalog, "get_book", {"slug": "no-such"})
        == "get_book: no book found for slug 'no-such'"
    )
    assert (
        fails(catalog, "get_chapter", {"slug": "moby-dick", "chapterSlug": "x"})
        == "get_chapter: no chapter 'x' in book 'moby-dick'"
    )
    assert (
        fails(catalog, "get_my_book", {"bookId": ghost.upper()})
        == f"get_my_book: no uploaded book found with id '{ghost}'"
    )
    assert (
        fails(catalog, "get_my_chapter", {"bookId": ghost, "chapterSlug": "c"})
        == f"get_my_chapter: no chapter 'c' in uploaded book '{ghost}'"
    )
    assert (
        fails(catalog, "list_my_book_highlights", {"bookId": ghost})
        == f"list_my_book_highlights: no uploaded book found with id '{ghost}'"
    )
    assert (
        fails(catalog, "get_my_insights", {"bookId": ghost})
        == f"get_my_insights: no uploaded book found with id '{ghost}'"
    )
    assert (
        fails(catalog, "get_my_insights", {"editionId": ghost})
        == f"get_my_insights: no catalog book found with editionId '{ghost}'"
    )


def test_set_book_progress_not_found_texts(catalog: ToolCatalog, ids: dict[str, str]) -> None:
    ghost = str(uuid.uuid4())
    assert (
        fails(catalog, "set_book_progress", {"bookId": ghost, "chapterSlug": "c"})
        == f"set_book_progress failed: no uploaded book '{ghost}'"
    )
    assert (
        fails(catalog, "set_book_progress", {"bookId": ids["meditations"], "chapterSlug": "c"})
        == "set_book_progress failed: no chapter 'c' in 'Meditations'"
    )
    assert (
        fails(catalog, "set_book_progress", {"slug": "no-such", "chapterSlug": "c"})
        == "set_book_progress failed: no catalog book 'no-such'"
    )
    assert (
        fails(catalog, "set_book_progress", {"slug": "moby-dick", "chapterSlug": "c"})
        == "set_book_progress failed: no chapter 'c' in 'moby-dick'"
    )


def test_a_404_for_edition_highlights_is_an_error_not_an_empty_list(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    server.inject("GET /me/highlights/{editionId}", status=404, json={"error": "not_found"})
    text = fails(catalog, "list_my_highlights", {"editionId": str(uuid.uuid4())})
    assert text == "list_my_highlights failed: upstream answered 404"


# ------------------------------------------------------------------ the failure wrapper

A_BOOK = "c45fda3c-b374-5e24-9263-0a892b288f9b"  # the local server's "the-art-of-war"

# Every upstream route a tool uses, with arguments that reach it.
ROUTED: list[tuple[str, dict[str, Any], str]] = [
    ("search_books", {"query": "war"}, "GET /search"),
    ("get_book", {"slug": "moby-dick"}, "GET /books/{slug}"),
    (
        "get_chapter",
        {"slug": "moby-dick", "chapterSlug": "loomings"},
        "GET /books/{slug}/chapters/{chapterSlug}",
    ),
    ("get_my_book", {"bookId": A_BOOK}, "GET /me/books/{bookId}"),
    (
        "get_my_chapter",
        {"bookId": A_BOOK, "chapterSlug": "waging-war"},
        "GET /me/books/{bookId}/chapters/{chapterSlug}",
    ),
    ("list_my_highlights", {"editionId": A_BOOK}, "GET /me/highlights/{editionId}"),
    ("list_my_vocabulary", {}, "GET /me/vocabulary/words"),
    ("list_my_book_highlights", {"bookId": A_BOOK}, "GET /me/highlights/userbook/{bookId}"),
    ("get_my_insights", {"bookId": A_BOOK}, "GET /me/insights"),
    ("get_book_progress", {"bookId": A_BOOK}, "GET /me/books/{bookId}/progress"),
    ("get_book_progress", {"editionId": A_BOOK}, "GET /me/progress/{editionId}"),
    ("get_my_reading", {}, "GET /me/books"),
    (
        "set_book_progress",
        {"bookId": A_BOOK, "chapterSlug": "waging-war"},
        "GET /me/books/{bookId}",
    ),
    (
        "set_book_progress",
        {"bookId": A_BOOK, "chapterSlug": "waging-war"},
        "PUT /me/books/{bookId}/progress",
    ),
    ("set_book_progress", {"slug": "moby-dick", "chapterSlug": "loomings"}, "GET /books/{slug}"),
    (
        "set_book_progress",
        {"slug": "moby-dick", "chapterSlug": "loomings"},
        "PUT /me/progress/{editionId}",
    ),
    (
        "save_highlight",
        {"editionId": A_BOOK, "chapterId": A_BOOK, "selectedText": "x"},
        "POST /me/highlights",
    ),
    (
        "save_my_highlight",
        {"bookId": A_BOOK, "chapterId": A_BOOK, "selectedText": "x"},
        "POST /me/highlights",
    ),
    ("save_insight", {"bookId": A_BOOK, "text": "t"}, "POST /me/insights"),
]


@pytest.mark.parametrize(("name", "args", "route"), ROUTED)
@pytest.mark.parametrize("status", [500, 501])
def test_a_server_failure_is_never_an_empty_result(
    catalog: ToolCatalog, server: FakeTextStackServer, name: str, args: Any, route: str, status: int
) -> None:
    server.inject(route, status=status, json={"error": "boom", "message": "down"})
    assert fails(catalog, name, args) == f"{name} failed: upstream answered {status}"


@pytest.mark.parametrize(
    ("name", "args", "route"), [row for row in ROUTED if not row[2].startswith("PUT")]
)
def test_a_non_json_200_is_upstream_unavailable(
    catalog: ToolCatalog, server: FakeTextStackServer, name: str, args: Any, route: str
) -> None:
    server.inject(route, status=200, body="<html>proxy</html>", content_type="text/html")
    assert fails(catalog, name, args) == f"{name} failed: upstream unavailable"


@pytest.mark.parametrize(("name", "args", "route"), ROUTED[:4])
def test_a_dropped_connection_is_upstream_unavailable(
    catalog: ToolCatalog, server: FakeTextStackServer, name: str, args: Any, route: str
) -> None:
    server.inject(route, drop=True, effect=False, times=5)
    assert fails(catalog, name, args) == f"{name} failed: upstream unavailable"


def test_a_timeout_is_upstream_timed_out(server: FakeTextStackServer) -> None:
    server.inject("GET /books/{slug}", delay=1.0, effect=False)
    with _client(server, timeout=0.1) as client:
        text = fails(ToolCatalog(client), "get_book", {"slug": "moby-dick"})
    assert text == "get_book failed: upstream timed out"


def test_a_mapping_defect_is_an_unexpected_error(
    server: FakeTextStackServer, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "canary-token-5f0c2a"

    class Broken:
        def get_token(self) -> TokenResult:
            raise RuntimeError(f"a detail quoting {canary}")

    with caplog.at_level(logging.DEBUG), _client(server, Broken()) as client:
        text = fails(ToolCatalog(client), "get_my_book", {"bookId": A_BOOK})
    assert text == "get_my_book failed: unexpected error"
    assert "RuntimeError" in caplog.text and "get_my_book" in caplog.text
    assert canary not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)


def test_blank_slugs_are_not_found_without_a_request(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    server.reset_counters()
    # .NET counts "  " as two characters; no book or chapter has that slug.
    assert fails(catalog, "get_book", {"slug": "  "}) == "get_book: no book found for slug '  '"
    assert (
        fails(catalog, "get_chapter", {"slug": "moby-dick", "chapterSlug": "\t"})
        == "get_chapter: no chapter '\t' in book 'moby-dick'"
    )
    assert (
        fails(catalog, "get_my_chapter", {"bookId": A_BOOK, "chapterSlug": " "})
        == f"get_my_chapter: no chapter ' ' in uploaded book '{A_BOOK}'"
    )
    assert (
        fails(catalog, "set_book_progress", {"slug": " ", "chapterSlug": "c"})
        == "set_book_progress failed: no catalog book ' '"
    )
    assert (
        fails(catalog, "get_chapter_review", {"bookId": A_BOOK, "chapterSlug": " "})
        == "get_chapter_review: no chapter ' ' in this book"
    )
    assert (
        fails(
            catalog,
            "save_chapter_review",
            {"bookId": A_BOOK, "chapterSlug": " ", "review": {"a": 1}},
        )
        == "save_chapter_review refused: no chapter ' ' in this book"
    )
    assert server.count("*") == 0


def test_slashes_and_spaces_in_slugs_stay_one_path_segment(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    fails(catalog, "get_chapter", {"slug": "a/b c", "chapterSlug": ".."})
    (req,) = server.requests
    assert req.path == "/api/books/a%2Fb%20c/chapters/%2E%2E"


REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    (
        "save_highlight",
        {"editionId": A_BOOK, "chapterId": A_BOOK, "selectedText": "x"},
        "save_highlight failed: the book or chapter was not found, or the save was rejected",
    ),
    (
        "save_my_highlight",
        {"bookId": A_BOOK, "chapterId": A_BOOK, "selectedText": "x"},
        "save_my_highlight failed: the book or chapter was not found, or the save was rejected",
    ),
    (
        "save_insight",
        {"bookId": A_BOOK, "text": "t", "chapterSlug": "nope"},
        "save_insight failed: the book was not found, that chapter slug does not exist in it, "
        "or the chapter has a structured review (replace that with save_chapter_review)",
    ),
]


@pytest.mark.parametrize(("name", "args", "text"), REFUSALS)
def test_write_refusals_keep_the_dotnet_texts(
    catalog: ToolCatalog, name: str, args: Any, text: str
) -> None:
    # Real 400s of the local server: a chapter id that is not the book's, an unknown slug.
    assert fails(catalog, name, args) == text


def test_progress_write_refusals_keep_the_dotnet_texts(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    server.inject("PUT /me/books/{bookId}/progress", status=409, json={"error": "space"})
    assert fails(catalog, "set_book_progress", {"bookId": A_BOOK, "chapterSlug": "waging-war"}) == (
        "set_book_progress failed: the position was refused. The book's stored position may be "
        "in a coordinate space this write cannot replace."
    )
    server.inject("PUT /me/progress/{editionId}", status=400, json={"error": "bad"})
    text = fails(catalog, "set_book_progress", {"slug": "moby-dick", "chapterSlug": "loomings"})
    assert text == "set_book_progress failed: the position could not be saved"


def test_a_retried_503_that_persists_is_reported(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    # Enough faults to outlast the transport's retries of a GET.
    server.inject("GET /me/vocabulary/words", status=503, times=10)
    assert (
        fails(catalog, "list_my_vocabulary", {})
        == "list_my_vocabulary failed: upstream answered 503"
    )


def test_library_search_and_shelf_failures_keep_the_dotnet_texts(
    catalog: ToolCatalog, server: FakeTextStackServer
) -> None:
    server.inject("GET /me/library/search", status=500, times=10)
    assert (
        fails(catalog, "search_my_library", {"query": "war"})
        == "search_my_library failed: the library search is unavailable"
    )
    server.inject("GET /me/library/shelves", status=502, times=10)
    assert fails(catalog, "get_my_reading", {}) == "get_my_reading failed: the shelf is unavailable"


def test_chapter_review_refusals_reach_the_model(
    catalog: ToolCatalog, server: FakeTextStackServer, ids: dict[str, str]
) -> None:
    book = ids["meditations"]
    text = fails(
        catalog, "get_chapter_review", {"bookId": book, "chapterSlug": "book-one", "part": 9}
    )
    assert text.startswith("get_chapter_review: This chapter has ")
    assert text.split("\n")[1].startswith("part: This chapter has ")
    gate = "Call set_book_progress first: the reader has not reached this chapter."
    server.inject(
        "GET /me/chapter-review",
        status=409,
        json={
            "error": "spoiler_gate",
            "message": gate,
            "errors": [{"path": "chapterSlug", "code": "ahead", "message": "ahead of the reader"}],
        },
    )
    text = fails(catalog, "get_chapter_review", {"bookId": book, "chapterSlug": "book-one"})
    assert text == f"get_chapter_review: {gate}\nchapterSlug: ahead of the reader"
    server.inject("GET /me/chapter-review", status=500, body="oops", content_type="text/plain")
    text = fails(catalog, "get_chapter_review", {"bookId": book, "chapterSlug": "book-one"})
    assert text == "get_chapter_review: upstream answered 500"
    text = fails(
        catalog, "save_chapter_review", {"bookId": book, "chapterSlug": "book-one", "review": {}}
    )
    empty = "'review' must not be empty."
    assert text == f"save_chapter_review refused: {empty}\nreview: {empty}"
    server.inject("PUT /me/chapter-review", status=503, times=10)
    text = fails(
        catalog,
        "save_chapter_review",
        {"bookId": book, "chapterSlug": "book-one", "review": {"a": 1}},
    )
    assert text == "save_chapter_review refused: upstream answered 503"


# ------------------------------------------------------------------ sign-in


def test_no_token_answers_at_once_with_the_sign_in_text(server: FakeTextStackServer) -> None:
    manager = TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        cache=MemoryTokenCache(),
        prompt=False,
        min_poll_interval=0.05,
    )
    with manager, _client(server, manager) as client:
        catalog = ToolCatalog(client)
        text = fails(catalog, "list_my_vocabulary", {})
        code = server.pending_user_codes()[-1]
        uri = f"{server.base_url}/device"
        assert text == (
            f"authentication required — open {uri} and enter code {code} to connect TextStack, "
            "then retry."
        )
        # The sign-in's own device-code request went out; no API request did.
        assert server.count("GET /me/*") == 0
        assert server.counts().keys() <= {"POST /auth/device/code", "POST /auth/device/token"}
        # A second call joins the same flow.
        assert fails(catalog, "get_my_reading", {}) == text
        assert server.count("POST /auth/device/code") == 1
        server.approve(code)
        assert isinstance(manager.wait_for_token(timeout=10), Authorized)
        assert ok(catalog, "list_my_vocabulary", {})["total"] >= 0


def test_no_static_token_is_the_dotnet_failed_text(server: FakeTextStackServer) -> None:
    with _client(server, StaticTokenProvider(None)) as client:
        text = fails(ToolCatalog(client), "get_my_reading", {})
    assert text == "authentication required — no TEXTSTACK_MCP_TOKEN configured"
    assert server.count("*") == 0


def test_public_tools_need_no_sign_in(server: FakeTextStackServer) -> None:
    with _client(server, StaticTokenProvider(None)) as client:
        assert ok(ToolCatalog(client), "get_book", {"slug": "moby-dick"})["slug"] == "moby-dick"


def test_a_rejected_token_is_authentication_required(server: FakeTextStackServer) -> None:
    with _client(server) as client:
        server.revoke_all()
        text = fails(ToolCatalog(client), "get_my_reading", {})
    assert text.startswith("authentication required — ")
    assert "Bearer" not in text and "eyJ" not in text


# ------------------------------------------------------------------ cancellation


def test_a_cancelled_call_sends_nothing(catalog: ToolCatalog, server: FakeTextStackServer) -> None:
    cancel = threading.Event()
    cancel.set()
    server.reset_counters()
    result = catalog.call("get_book", {"slug": "moby-dick"}, cancel)
    assert result["isError"] is True
    assert server.count("*") == 0


def test_cancel_between_the_two_requests_of_a_tool(server: FakeTextStackServer) -> None:
    cancel = threading.Event()

    class CancelAfterFirst:
        def __init__(self, token: str) -> None:
            self.token = token
            self.calls = 0

        def get_token(self) -> TokenResult:
            self.calls += 1
            if self.calls == 1:
                # Past the first request's cancel check, before the second's.
                cancel.set()
            return Authorized(self.token)

    provider = CancelAfterFirst(server.issue_tokens()[0])
    with _client(server, provider) as client:
        server.reset_counters()
        result = ToolCatalog(client).call("get_my_reading", {}, cancel)
    assert result["isError"] is True
    # The shelves went out before the cancel; /me/books was never sent.
    assert server.count("GET /me/library/shelves") == 1
    assert server.count("GET /me/books") == 0


def test_calls_run_concurrently_on_one_catalog(catalog: ToolCatalog) -> None:
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def worker(n: int) -> None:
        barrier.wait(timeout=10)
        results.append(catalog.call("get_book", {"slug": "moby-dick"}, threading.Event()))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(results) == 4 and not any(r["isError"] for r in results)


# ------------------------------------------------------------------ any input, well-formed output

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from([row[0] for row in EXPECTED] + ["save_chapter_review"]),
    st.one_of(
        st.none(),
        _json,
        st.dictionaries(
            st.sampled_from(["bookId", "editionId", "slug", "chapterSlug", "query", "text", "x"]),
            _json | st.uuids().map(str),
            max_size=4,
        ),
    ),
)
def test_any_arguments_give_one_well_formed_result(name: str, arguments: Any) -> None:
    # Cancelled up front, so nothing is sent and no server is needed.
    cancel = threading.Event()
    cancel.set()
    with TextStackApiClient(
        "http://127.0.0.1:9/api", token_provider=StaticTokenProvider(None)
    ) as client:
        result = ToolCatalog(client).call(name, arguments, cancel)
    assert set(result) == {"content", "isError"}
    (block,) = result["content"]
    assert block["type"] == "text" and isinstance(block["text"], str)
    block["text"].encode("utf-8")
    assert result["isError"] is True
