"""Worker entry points for tests/test_review_multiprocess.py (importable by children)."""

from __future__ import annotations

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


def sign_in(
    api_url: str,
    site_host: str,
    cache_path: str,
    out: Any,
    background: bool,
    timeout: float,
) -> None:
    """Reports ("code", user_code), then ("token", access) or ("error", description)."""
    from textstack_sdk import Pending

    with _manager(api_url, site_host, cache_path, background=background) as tm:
        first = tm.get_token()
        out.put(("code", first.user_code if isinstance(first, Pending) else repr(first)))
        try:
            token = tm.wait_for_token(timeout=timeout)
        except Exception as exc:
            out.put(("error", f"{type(exc).__name__}: {exc}"))
        else:
            out.put(("token", token.access_token))


def get_token_once(api_url: str, site_host: str, cache_path: str, out: Any) -> None:
    """Reports (kind, detail) of one get_token call."""
    from textstack_sdk import Authorized, Pending

    with _manager(api_url, site_host, cache_path) as tm:
        result = tm.get_token()
        if isinstance(result, Authorized):
            out.put(("authorized", result.access_token))
        elif isinstance(result, Pending):
            out.put(("pending", result.user_code))
        else:
            out.put(("failed", result.message))


def start_then_idle(api_url: str, site_host: str, cache_path: str, out: Any) -> None:
    """Starts the shared sign-in (its poll thread becomes the poller), then idles."""
    with _manager(api_url, site_host, cache_path) as tm:
        pending = tm.get_token()
        out.put(pending.user_code)
        time.sleep(3600)


def refresh_with_failing_save(api_url: str, site_host: str, cache_path: str, out: Any) -> None:
    """Refreshes with a cache whose saves fail (disk full), reports, then idles."""
    from textstack_sdk import FileTokenCache, TokenManager

    class SaveFails(FileTokenCache):
        def save(self, tokens: Any) -> bool:
            return False

    tm = TokenManager(
        api_url=api_url,
        site_host=site_host,
        cache=SaveFails(cache_path),
        prompt=False,
        timeout=10,
    )
    result = tm.get_token()
    out.put(("authorized" if type(result).__name__ == "Authorized" else "other", ""))
    time.sleep(3600)
