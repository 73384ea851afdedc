"""Fixtures shared by the token-layer tests: a virtual clock shared with a local server.

Test modules that need another kind of server (real time, tiny intervals) define their
own ``server`` fixture, which takes precedence over this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from textstack_sdk import FileTokenCache
from textstack_sdk.testing import FakeClock, FakeTextStackServer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(clock=clock, interval=5) as srv:
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> FileTokenCache:
    return FileTokenCache(tmp_path / "textstack" / "mcp-token.json")


@pytest.fixture(autouse=True)
def _no_cache_key_from_the_developer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in the developer's environment must not change what the tests see."""
    monkeypatch.delenv("TEXTSTACK_CACHE_KEY", raising=False)
    monkeypatch.delenv("TEXTSTACK_CACHE_KEY_FILE", raising=False)
