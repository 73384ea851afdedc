"""Helpers for token-manager tests over the local server with a shared FakeClock."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any, Callable

from textstack_sdk import TokenManager, TokenSet
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeClock, FakeTextStackServer


def manager(
    server: FakeTextStackServer, clock: FakeClock, cache: object, **options: Any
) -> TokenManager:
    """A TokenManager on the local server and the shared clock, silent, 5 s requests."""
    options.setdefault("timeout", 5)
    options.setdefault("prompt", False)
    return TokenManager(
        api_url=server.api_url, site_host=server.site_host, cache=cache, clock=clock, **options
    )


def seed(server: FakeTextStackServer, cache: Any) -> TokenSet:
    """A live login in the cache, as `textstack login` would leave it."""
    access, refresh = server.issue_tokens()
    tokens = TokenSet(access, refresh, decode_exp(access))
    assert cache.save(tokens)
    return tokens


def run_threads(n: int, target: Callable[[], object]) -> list[object]:
    """Calls ``target`` in ``n`` threads released together by a Barrier; their results."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def body(i: int) -> None:
        barrier.wait()
        results[i] = target()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    return results


def drive(
    clock: FakeClock, until: Callable[[], bool], step: float = 30.0, max_steps: int = 200
) -> None:
    """Advances virtual time one step at a time until ``until()`` holds."""
    for _ in range(max_steps):
        if until():
            return
        try:
            clock.wait_for_waiters(1, timeout=0.3)
        except AssertionError:
            continue  # the poll thread finished between our check and the wait
        clock.advance(step)
    assert until()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Waits (real time, in tiny steps) for work another thread is doing to show."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def unsigned_jwt(claims: dict[str, object]) -> str:
    """A compact JWT with these claims (the SDK reads ``exp`` without verifying)."""

    def part(value: object) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"
