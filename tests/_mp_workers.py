"""Entry points for the multi-process tests (importable by spawned children)."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any


def _manager(api_url: str, site_host: str, cache_path: str, **options: Any) -> Any:
    from textstack_sdk import FileTokenCache, TokenManager

    options.setdefault("prompt", False)
    options.setdefault("timeout", 10)
    options.setdefault("min_poll_interval", 0.0)
    return TokenManager(
        api_url=api_url, site_host=site_host, cache=FileTokenCache(cache_path), **options
    )


def get_token_together(
    api_url: str, site_host: str, cache_path: str, barrier: Any, out: Any
) -> None:
    """Waits for every sibling, then calls get_token once; reports (pid, kind, token)."""
    from textstack_sdk import Authorized, Pending

    with _manager(api_url, site_host, cache_path) as tm:
        barrier.wait(30)
        result = tm.get_token()
        if isinstance(result, Authorized):
            out.put((os.getpid(), "authorized", result.access_token))
        elif isinstance(result, Pending):
            out.put((os.getpid(), "pending", result.user_code))
        else:
            out.put((os.getpid(), "failed", result.message))


def login_together(api_url: str, site_host: str, cache_path: str, barrier: Any, out: Any) -> None:
    """Every process asks at once, reports its user code, then waits for approval."""
    from textstack_sdk import Pending

    with _manager(api_url, site_host, cache_path) as tm:
        barrier.wait(30)
        first = tm.get_token()
        out.put(("code", first.user_code if isinstance(first, Pending) else repr(first)))
        token = tm.wait_for_token(timeout=30)
        out.put(("token", token.access_token))


def hold_lock_forever(cache_path: str, ready_path: str) -> None:
    """Takes the cross-process lock, says so, and never lets go (until killed)."""
    from textstack_sdk import FileTokenCache

    cache = FileTokenCache(cache_path)
    with cache.lock(10) as locked:
        assert locked
        with open(ready_path, "w") as f:
            f.write("locked")
        signal.pause() if hasattr(signal, "pause") else time.sleep(3600)


def poll_then_die(api_url: str, site_host: str, cache_path: str, out: Any) -> None:
    """Starts the shared sign-in (so it becomes the poller), reports the code, then dies."""
    with _manager(api_url, site_host, cache_path, min_poll_interval=0.0) as tm:
        pending = tm.get_token()
        out.put(pending.user_code)  # type: ignore[union-attr]
        time.sleep(3600)


if __name__ == "__main__":  # pragma: no cover - manual use
    sys.exit(0)


def threads_get_token_together(
    api_url: str, site_host: str, cache_path: str, barrier: Any, threads: int, out: Any
) -> None:
    """One manager, ``threads`` threads released together with every sibling process."""
    import threading

    from textstack_sdk import Authorized

    with _manager(api_url, site_host, cache_path) as tm:
        local = threading.Barrier(threads)
        results: list[str] = []

        def call() -> None:
            local.wait(30)
            result = tm.get_token()
            results.append(result.access_token if isinstance(result, Authorized) else repr(result))

        barrier.wait(30)
        crowd = [threading.Thread(target=call) for _ in range(threads)]
        for t in crowd:
            t.start()
        for t in crowd:
            t.join(30)
        out.put((os.getpid(), results))
