"""Fixtures and helpers for tests of the token stores and the fleet refresh.

``store_kind`` runs a test once per store ("file", "redis"); ``make_store`` builds
stores ("hosts") that share one record, fresh for each test. ``OffsetClock`` is the
system clock with a wall time that tests move forward (the local server shares it, so
tokens expire when the test says), while monotonic time and waits stay real.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from _redis_harness import RedisProcess

from textstack_sdk._cache import FileTokenCache
from textstack_sdk._file_store import FileTokenStore
from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import TokenStore

MakeStore = Callable[..., TokenStore]


@pytest.fixture(params=["file", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    """Builds stores ("hosts") that share one record, fresh for each test."""
    made: list[Any] = []
    if store_kind == "redis":
        server: RedisProcess = request.getfixturevalue("shared_redis")
        namespace = f"t-{uuid.uuid4().hex[:12]}"

        def make(**options: Any) -> TokenStore:
            options.setdefault("poll_interval", 0.01)
            store = RedisTokenStore(server.url, namespace=namespace, **options)
            made.append(store)
            return store

    else:
        path = request.getfixturevalue("tmp_path") / "mcp-token.json"

        def make(**options: Any) -> TokenStore:
            options.setdefault("poll_interval", 0.01)
            # Each host its own cache object: its own flock descriptor, as in a process.
            store = FileTokenStore(FileTokenCache(path, cipher=None), **options)
            made.append(store)
            return store

    yield make
    for store in made:
        store.close()


class OffsetClock:
    """The system clock whose wall time tests move forward. Thread-safe."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        return cancel.wait(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        self.offset += seconds
