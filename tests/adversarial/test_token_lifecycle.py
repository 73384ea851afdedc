"""The token lifecycle under a slow auth server, a stuck lock, hostile expiries and a
spender that cannot save: the figures of docs/RELIABILITY.md's "token lifecycle" rows.

Real time and real sockets (the auth server's slowness is real); every wait is bounded.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from textstack_sdk import Authorized, Failed, FileTokenCache, Pending, TokenManager, TokenSet
from textstack_sdk._filelock import InterProcessLock
from textstack_sdk._freshness import trusted_exp
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeTextStackServer

from . import _budget
from ._report import scenario

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(os.name == "nt", reason="POSIX")]

REFRESH = "POST /auth/refresh-mobile"
CODE = "POST /auth/device/code"
FORK = multiprocessing.get_context("fork")

ADVISORY = scenario(
    "token lifecycle",
    "get_token inside the skew margin while the auth server takes 5 s to refresh, "
    "64 threads released together",
    "every caller gets the still-valid token at once (all return before the refresh "
    "answers); one refresh; no sign-in",
)
MANDATORY = scenario(
    "token lifecycle",
    "get_token past exp while another process holds the cache lock (60 s lock "
    "timeout, 1 s request deadline), 16 threads",
    "no caller waits longer than one request's deadline plus 2 s; a retryable failure, "
    "then the one refresh once the lock is free",
)
EXPIRY = scenario(
    "token lifecycle",
    "cache-stated accessExpiresAt against the JWT's exp (property over random times)",
    "the file may shorten a JWT's life, never lengthen it; without a readable exp it is "
    "believed only up to now + the fresh-token grace",
)
SPENT = scenario(
    "token lifecycle",
    "rotation whose save fails (disk full) while other processes need a refresh; then "
    "the spender dies",
    "no process presents the refresh token a live spender recorded; once it died, the "
    "next process presents it at once",
)


def _manager(server: FakeTextStackServer, cache: Any, **options: Any) -> TokenManager:
    options.setdefault("prompt", False)
    return TokenManager(api_url=server.api_url, site_host=server.site_host, cache=cache, **options)


def _wait_until(predicate: Any, timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)
    return time.monotonic()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _call_together(tm: TokenManager, n: int) -> tuple[list[object], list[float], list[float]]:
    """n threads released by a Barrier call get_token once: results, latencies, end times."""
    barrier = threading.Barrier(n)
    latencies: list[float] = [0.0] * n
    ended: list[float] = [0.0] * n
    results: list[object] = [None] * n

    def call(i: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        results[i] = tm.get_token()
        latencies[i] = time.perf_counter() - started
        ended[i] = time.monotonic()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, latencies, ended


def test_inside_the_margin_nobody_waits_for_a_5_s_auth_server(tmp_path: Path) -> None:
    with FakeTextStackServer() as server:
        # The baseline: the same 64 threads on the hot path (a token far from expiry).
        access, refresh = server.issue_tokens()
        baseline_cache = FileTokenCache(tmp_path / "baseline" / "mcp-token.json")
        assert baseline_cache.save(TokenSet(access, refresh, decode_exp(access)))
        with _manager(server, baseline_cache) as tm:
            tm.get_token()
            _, hot, _ = _call_together(tm, 64)

        _, refresh = server.issue_tokens()
        # Valid for 20 s more: inside the default 30 s margin.
        access = server.make_jwt({"sub": server.user_id, "exp": int(time.time()) + 20})
        cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
        assert cache.save(TokenSet(access, refresh, decode_exp(access)))
        # Saved two minutes ago: not the fresh-save grace another process's token gets.
        old = time.time() - 120
        os.utime(cache.path, (old, old))
        server.inject(REFRESH, delay=5.0)
        with _manager(server, cache, timeout=15) as tm:
            begun = time.monotonic()
            results, latencies, ended = _call_together(tm, 64)
            assert results == [Authorized(access)] * 64
            answered = _wait_until(lambda: tm.get_token() != Authorized(access))
        assert max(ended) < answered  # nobody's call outlasted the refresh's wait
        assert server.count(REFRESH) == 1 and server.count(CODE) == 0
    ADVISORY.add("callers", 64)
    ADVISORY.add("refreshes sent", server.count(REFRESH))
    ADVISORY.measured("get_token p50", _ms(statistics.median(latencies)))
    ADVISORY.measured("p100", _ms(max(latencies)))
    ADVISORY.measured(
        "hot path, same 64 threads, p50",
        f"{_ms(statistics.median(hot))}, p100 {_ms(max(hot))}",
    )
    ADVISORY.measured("refresh answered after", f"{answered - begun:.2f} s")


def test_past_exp_every_wait_is_bounded_whatever_the_lock_does(tmp_path: Path) -> None:
    with FakeTextStackServer() as server:
        _, refresh = server.issue_tokens()
        expired = server.make_jwt({"sub": server.user_id, "exp": int(time.time()) - 10})
        cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
        assert cache.save(TokenSet(expired, refresh, decode_exp(expired)))
        elsewhere = InterProcessLock(cache.lock_path)
        assert elsewhere.acquire(1)
        waits: list[float] = [0.0] * 16
        results: list[object] = [None] * 16
        try:
            with _manager(server, cache, timeout=1, lock_timeout=60) as tm:
                barrier = threading.Barrier(16)

                def call(i: int) -> None:
                    barrier.wait()
                    started = time.monotonic()
                    results[i] = tm.get_token()
                    waits[i] = time.monotonic() - started

                threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                assert all(isinstance(r, Failed) and r.retryable for r in results), results
                elsewhere.release()
                _wait_until(lambda: isinstance(tm.get_token(), Authorized))
        finally:
            if elsewhere.held:
                elsewhere.release()
        assert max(waits) < 1 + 2 + 2.5  # the deadline, the margin, scheduling slack
        assert server.count(REFRESH) == 1
    MANDATORY.add("callers", 16)
    MANDATORY.measured("longest wait", f"{max(waits):.2f} s (bound 3 s)")


@_budget.PROPERTY_SETTINGS
@given(
    jwt_exp=st.one_of(st.none(), st.floats(0, 4e9)),
    stated=st.one_of(st.none(), st.floats(0, 4e9)),
    now=st.floats(1e9, 3e9),
    grace=st.floats(0, 7200),
)
def test_a_cache_never_extends_what_it_cannot_prove(
    jwt_exp: Any, stated: Any, now: float, grace: float
) -> None:
    EXPIRY.add("inputs tried")
    believed = trusted_exp(jwt_exp, stated, now, grace=grace)
    if jwt_exp is not None:
        assert believed is not None and believed <= jwt_exp
        assert stated is None or believed <= stated
    elif believed is not None:
        assert believed == stated and believed <= now + grace
    else:
        assert stated is None or stated > now + grace


class _SaveFails(FileTokenCache):
    def save(self, tokens: TokenSet) -> bool:
        return False


def _spender(api_url: str, host: str, path: str, out: Any) -> None:
    tm = TokenManager(api_url=api_url, site_host=host, cache=_SaveFails(path), prompt=False)
    out.put(isinstance(tm.get_token(), Authorized))
    time.sleep(3600)


def _once(api_url: str, host: str, path: str, out: Any) -> None:
    with TokenManager(
        api_url=api_url, site_host=host, cache=FileTokenCache(path), prompt=False
    ) as tm:
        result = tm.get_token()
        out.put(type(result).__name__ + ":" + getattr(result, "message", ""))


def test_a_spent_refresh_token_is_never_replayed_while_its_spender_lives(tmp_path: Path) -> None:
    with FakeTextStackServer() as server:
        _, refresh = server.issue_tokens()
        expired = server.make_jwt({"sub": server.user_id, "exp": int(time.time()) - 10})
        path = str(tmp_path / "textstack" / "mcp-token.json")
        assert FileTokenCache(path).save(TokenSet(expired, refresh, decode_exp(expired)))
        args = (server.api_url, server.site_host, path)
        out = FORK.Queue()
        spender = FORK.Process(target=_spender, args=(*args, out), daemon=True)
        spender.start()
        try:
            assert out.get(timeout=20) is True
            others = [FORK.Process(target=_once, args=(*args, out)) for _ in range(4)]
            for p in others:
                p.start()
            answers = [out.get(timeout=20) for _ in others]
            for p in others:
                p.join(10)
            assert all(a.startswith("Failed:") and "could not save" in a for a in answers)
            assert server.count(REFRESH) == 1
        finally:
            spender.kill()
            spender.join(10)
        started = time.monotonic()
        with _manager(server, FileTokenCache(path)) as tm:
            after = tm.get_token()
        took = time.monotonic() - started
        # Presented at once: the server saw reuse of a rotated token and a sign-in began.
        assert isinstance(after, Pending)
        assert server.count(REFRESH) == 2
    SPENT.add("processes that found a live spender's record", 4)
    SPENT.add("replays while the spender lived", server.count(REFRESH) - 2)
    SPENT.measured("next process after the spender died went on in", f"{took:.2f} s")
