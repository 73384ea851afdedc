"""Fidelity gaps found by an adversarial review of the tool catalog, each pinned here.

Every expected text is the .NET tool's (shared/MCP_SERVER.md §1.0 and §1.1), written out
in full rather than taken from the catalog's own constants.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textstack_sdk import MemoryTokenCache, StaticTokenProvider, TextStackApiClient, TokenManager
from textstack_sdk.mcp._args import parse_guid
from textstack_sdk.mcp._catalog import ABSENT, ToolCatalog
from textstack_sdk.mcp._render import strip_and_cap
from textstack_sdk.mcp._tools import HANDLERS
from textstack_sdk.testing import FakeTextStackServer

UNAUTHORIZED = "authentication required — Unauthorized: no valid TextStack token."


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


def _client(server: FakeTextStackServer, token: Any = "") -> TextStackApiClient:
    if token == "":
        token = server.issue_tokens()[0]
    return TextStackApiClient(
        server.api_url, site_host=server.site_host, token_provider=StaticTokenProvider(token)
    )


def _call(catalog: ToolCatalog, name: str, arguments: Any) -> tuple[bool, str]:
    result = catalog.call(name, arguments, threading.Event())
    (block,) = result["content"]
    return result["isError"], block["text"]


# ------------------------------------------------------------------ null is not absent


@pytest.mark.parametrize("name", ["get_my_reading", "list_my_vocabulary", "search_books"])
def test_null_arguments_are_refused_and_send_nothing(
    server: FakeTextStackServer, name: str
) -> None:
    with _client(server) as client:
        server.reset_counters()
        assert _call(ToolCatalog(client), name, None) == (True, "Arguments must be an object.")
    assert server.count("*") == 0


def test_absent_arguments_read_as_an_empty_object(server: FakeTextStackServer) -> None:
    with _client(server) as client:
        is_error, text = _call(ToolCatalog(client), "get_my_reading", ABSENT)
        assert not is_error, text
        is_error, text = _call(ToolCatalog(client), "get_book", ABSENT)
        assert (is_error, text) == (True, "'slug' is required and must be a string.")


# ------------------------------------------------------------------ the API's 401


def test_a_token_the_api_rejects_gives_the_dotnet_401_text(server: FakeTextStackServer) -> None:
    with _client(server) as client:
        server.revoke_all()
        catalog = ToolCatalog(client)
        assert _call(catalog, "get_my_reading", {}) == (True, UNAUTHORIZED)
        assert _call(
            catalog, "save_insight", {"bookId": server.sample_ids["meditations"], "text": "x"}
        ) == (True, UNAUTHORIZED)


def test_a_401_on_a_public_route_is_a_server_failure(server: FakeTextStackServer) -> None:
    # No token went out, so it is not a sign-in problem; .NET shows "no book found".
    server.inject("GET /books/{slug}", status=401, json={"error": "unauthorized"})
    with _client(server, None) as client:
        got = _call(ToolCatalog(client), "get_book", {"slug": "moby-dick"})
    assert got == (True, "get_book failed: upstream answered 401")


# ------------------------------------------------------------------ Guid.TryParse's compat forms

G = "6f1d2b8e-3c1a-4e4f-9a57-2f4c0b7d9e10"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The "D" shape (and "B"/"P" around it) lets a component before the last eight
        # digits start with "+" and/or "0x", inside its fixed width.
        ("0x6f1d2b-3c1a-4e4f-9a57-2f4c0b7d9e10", "006f1d2b-3c1a-4e4f-9a57-2f4c0b7d9e10"),
        ("+6f1d2b8-+c1a-0X4f-+0x7-0x2f4c0b7d9e", "06f1d2b8-0c1a-004f-0007-002f4c0b7d9e"),
        ("{0x6f1d2b-3c1a-4e4f-9a57-2f4c0b7d9e10}", "006f1d2b-3c1a-4e4f-9a57-2f4c0b7d9e10"),
        ("(6f1d2b8e-+c1a-4e4f-9a57-2f4c0b7d9e10)", "6f1d2b8e-0c1a-4e4f-9a57-2f4c0b7d9e10"),
        # "X": each number may carry a "+" and a second "0x"; the two shorts keep their
        # low 16 bits of up to eight digits.
        (
            "{0x+6f1d2b8e,0x0x3c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x0b,0x7d,0x9e,0x10}}",
            G,
        ),
        ("{0x6f1d2b8e,0x123c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x0b,0x7d,0x9e,0x10}}", G),
    ],
)
def test_guid_compat_forms_dotnet_accepts(text: str, expected: str) -> None:
    assert parse_guid(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # Never in the last eight digits, and never wider than the component.
        "6f1d2b8e-3c1a-4e4f-9a57-2f40x7d9e100",
        "6f1d2b8e-3c1a-4e4f-9a57-2f4c+b7d9e10",
        "0x6f1d2b8e-3c1a-4e4f-9a57-2f4c0b7d9e10",
        "6f1d2b8e-0x+c-4e4f-9a57-2f4c0b7d9e10",
        # "X": a byte above 255, nine significant digits, junk after the end.
        "{0x6f1d2b8e,0x3c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x100,0x7d,0x9e,0x10}}",
        "{0x16f1d2b8e,0x3c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x0b,0x7d,0x9e,0x10}}",
        "{0x6f1d2b8e,0x3c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x0b,0x7d,0x9e,0x10}}}",
    ],
)
def test_guid_compat_forms_dotnet_refuses(text: str) -> None:
    assert parse_guid(text) is None


def test_a_compat_guid_is_echoed_lowercase_hyphenated(server: FakeTextStackServer) -> None:
    with _client(server) as client:
        text = "{0X" + G[2:].upper() + "}"
        is_error, shown = _call(ToolCatalog(client), "get_my_book", {"bookId": text})
    assert (is_error, shown) == (True, f"get_my_book: no uploaded book found with id '00{G[2:]}'")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0xX+-{}(),  \t19afAF", min_size=30, max_size=80))
def test_guid_parsing_never_raises(text: str) -> None:
    parsed = parse_guid(text)
    assert parsed is None or str(uuid.UUID(parsed)) == parsed


# ------------------------------------------------------------------ HtmlText.StripAndCap


def test_every_greater_than_sign_becomes_a_space() -> None:
    # .NET's loop turns each '>' into a space, inside a tag or not.
    assert strip_and_cap("a>b") == ("a b", False)
    assert strip_and_cap("<p>1 > 0</p>") == ("1 0", False)


def test_an_unclosed_tag_drops_the_rest() -> None:
    assert strip_and_cap("x <b>y</b> z < w") == ("x y z", False)
    assert strip_and_cap("tail <") == ("tail", False)


def test_numeric_entities_as_webutility_decodes_them() -> None:
    # Surrogate code points stay literal; a decimal reference may carry a sign and spaces
    # (uint.TryParse with NumberStyles.Integer).
    assert strip_and_cap("&#xD800; &#55296; &#xDFFF;")[0] == "&#xD800; &#55296; &#xDFFF;"
    assert strip_and_cap("&#+65;&# 66 ;&#-0;")[0] == "AB\x00"
    assert strip_and_cap("&#-1; &#x+41; &#x 41;")[0] == "&#-1; &#x+41; &#x 41;"
    assert strip_and_cap("&#x0000000041;&#0000000000066;")[0] == "AB"


# ------------------------------------------------------------------ chapter-review refusals


@pytest.mark.parametrize(
    "body",
    [
        {"error": "spoiler_gate"},
        {"error": "invalid", "errors": [{"path": "review", "code": "c", "message": "bad"}]},
        {"errors": [{"path": "review", "code": "c", "message": "bad"}]},
    ],
)
def test_a_refusal_without_a_message_is_a_status_line(
    server: FakeTextStackServer, body: dict[str, Any]
) -> None:
    # .NET relays the refusal only when it carries a non-empty "message".
    book = server.sample_ids["meditations"]
    server.inject("GET /me/chapter-review", status=409, json=body)
    server.inject("PUT /me/chapter-review", status=400, json=body)
    with _client(server) as client:
        catalog = ToolCatalog(client)
        got = _call(catalog, "get_chapter_review", {"bookId": book, "chapterSlug": "book-one"})
        assert got == (True, "get_chapter_review: upstream answered 409")
        got = _call(
            catalog,
            "save_chapter_review",
            {"bookId": book, "chapterSlug": "book-one", "review": {}},
        )
        assert got == (True, "save_chapter_review refused: upstream answered 400")


# ------------------------------------------------------------------ nothing escapes call()


def test_a_defect_while_reading_arguments_is_a_result_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "eyJ-canary-token"

    def broken(a: Any) -> Any:
        raise ValueError(secret)

    monkeypatch.setitem(HANDLERS, "get_book", broken)
    with (
        TextStackApiClient(
            "http://127.0.0.1:9/api", token_provider=StaticTokenProvider(None)
        ) as client,
        caplog.at_level(logging.DEBUG),
    ):
        got = _call(ToolCatalog(client), "get_book", {"slug": "x"})
    assert got == (True, "get_book failed: unexpected error")
    assert secret not in caplog.text


# ------------------------------------------------------------------ the device flow cannot start


@pytest.mark.parametrize("fault", [{"status": 500}, {"drop": True}])
def test_a_device_flow_that_cannot_start_gives_the_dotnet_text(
    server: FakeTextStackServer, fault: dict[str, Any]
) -> None:
    server.inject("POST /auth/device/code", times=20, **fault)
    # No flow ever starts, so nothing polls and nothing prompts.
    where = {"api_url": server.api_url, "site_host": server.site_host}
    manager = TokenManager(**where, cache=MemoryTokenCache(), prompt=False)
    with (
        manager,
        TextStackApiClient(
            server.api_url, site_host=server.site_host, token_provider=manager
        ) as client,
    ):
        catalog = ToolCatalog(client)
        expected = (
            True,
            "authentication required — could not reach TextStack to start device authorization",
        )
        assert _call(catalog, "get_my_reading", {}) == expected
        # Still the same text while the manager backs off before asking again.
        assert _call(catalog, "list_my_vocabulary", {}) == expected
    assert server.count("GET /me/*") == 0


# ------------------------------------------------------------------ secrets


def test_a_rejected_token_never_reaches_a_result_or_the_log(
    server: FakeTextStackServer, caplog: pytest.LogCaptureFixture
) -> None:
    from .test_catalog import ROUTED

    canary = "canaryTOKEN0a1b2c3d4e5f"
    with _client(server, canary) as client, caplog.at_level(logging.DEBUG):
        catalog = ToolCatalog(client)
        for name, arguments, _ in ROUTED:
            is_error, text = _call(catalog, name, arguments)
            assert canary not in text
            if name not in ("search_books", "get_book", "get_chapter"):
                assert (is_error, text) == (True, UNAUTHORIZED), name
    assert canary not in caplog.text
