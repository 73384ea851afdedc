"""Entry points for the fleet tests' host processes (importable by spawned children)."""

from __future__ import annotations

import threading
import time
from typing import Any


class SharedOffsetClock:
    """The system clock with a wall offset shared by processes (a multiprocessing Value)."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset.value

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        return cancel.wait(max(0.0, seconds))


def host(
    name: str,
    api_url: str,
    site_host: str,
    redis_url: str,
    namespace: str,
    offset: Any,
    rotations: int,
    threads: int,
    start: Any,
    done: Any,
    out: Any,
) -> None:
    """One host: a TokenManager on the store; per rotation, ``threads`` callers at once.

    Reports, per rotation, what each caller got and what the host holds afterwards.
    """
    from textstack_sdk import TokenManager
    from textstack_sdk._redis_store import RedisTokenStore

    store = RedisTokenStore(redis_url, namespace=namespace, poll_interval=0.01)
    with TokenManager(
        api_url=api_url,
        site_host=site_host,
        store=store,
        clock=SharedOffsetClock(offset),
        timeout=5,
        prompt=False,
    ) as tm:
        for rotation in range(rotations):
            start.wait(60)
            out.put((name, rotation, _together(tm, threads)))
            done.wait(60)
    store.close()


def _together(tm: Any, threads: int) -> list[str]:
    """Calls get_token from ``threads`` threads at once; what each got."""
    from textstack_sdk import Authorized

    gate = threading.Barrier(threads)
    got: list[str] = []
    guard = threading.Lock()

    def call() -> None:
        gate.wait(30)
        result = tm.get_token()
        text = result.access_token if isinstance(result, Authorized) else repr(result)
        with guard:
            got.append(text)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    return got


def signin_host(
    name: str, api_url: str, site_host: str, redis_url: str, namespace: str, out: Any
) -> None:
    """A host with no login: reports the user code it shows, then the token it gets."""
    from textstack_sdk import Pending, TokenManager
    from textstack_sdk._redis_store import RedisTokenStore

    store = RedisTokenStore(redis_url, namespace=namespace, poll_interval=0.01)
    with TokenManager(
        api_url=api_url,
        site_host=site_host,
        store=store,
        timeout=5,
        prompt=False,
        min_poll_interval=0.0,
    ) as tm:
        first = tm.get_token()
        out.put(("code", name, first.user_code if isinstance(first, Pending) else repr(first)))
        token = tm.wait_for_token(timeout=40)
        out.put(("token", name, token.access_token))
    store.close()
