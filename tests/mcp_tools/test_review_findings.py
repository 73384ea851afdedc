"""Fidelity gaps found by an adversarial review of the tool catalog, each pinned here.

Every expected text is the .NET tool's (shared/MCP_SERVER.md §1.0 and §1.1), written out
in full rather than taken from the catalog's own constants.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from textstack_sdk import StaticTokenProvider, TextStackApiClient
from textstack_sdk.mcp._catalog import ABSENT, ToolCatalog
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


def test_a_401_on_a_public_route_gives_the_dotnet_401_text(server: FakeTextStackServer) -> None:
    server.inject("GET /books/{slug}", status=401, json={"error": "unauthorized"})
    with _client(server, None) as client:
        assert _call(ToolCatalog(client), "get_book", {"slug": "moby-dick"}) == (True, UNAUTHORIZED)
