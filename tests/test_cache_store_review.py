"""Review of the one refresh path on one host's cache (``_cache_store``): adversarial cases.

Each test here failed against the merge of the one refresh path; the pre-change manager
(which wrote a rotation over whatever the cache held) passed the same scenarios.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from _tm_helpers import manager, seed

from textstack_sdk import Authorized, FileTokenCache, TokenManager, TokenSet
from textstack_sdk.testing import FakeClock, FakeTextStackServer

pytestmark = pytest.mark.timeout(30)

REFRESH = "POST /auth/refresh-mobile"


class SaveFails(FileTokenCache):
    """A cache on a full disk: every save fails."""

    def save(self, tokens: TokenSet, **kwargs: Any) -> bool:
        return False


def dotnet_write(path: Path, tokens: TokenSet) -> None:
    """The .NET tool's save: no lock, PascalCase keys, no version field, in place."""
    assert tokens.access_exp is not None
    stamp = _dt.datetime.fromtimestamp(tokens.access_exp, _dt.timezone.utc).isoformat()
    body = {
        "AccessToken": tokens.access_token,
        "RefreshToken": tokens.refresh_token,
        "AccessExpiresAt": stamp,
    }
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, json.dumps(body, separators=(",", ":")).encode())
    finally:
        os.close(fd)


@contextlib.contextmanager
def rotated_unsaved(
    server: FakeTextStackServer, clock: FakeClock, tmp_path: Path
) -> Iterator[tuple[TokenManager, TokenSet, Authorized]]:
    """A manager that refreshed an expired login on a full disk: (it, the old pair, the new)."""
    cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
    old = seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, SaveFails(cache.path), background=False) as tm:
        first = tm.get_token()  # rotated; held in memory only
        assert isinstance(first, Authorized) and first.access_token != old.access_token
        yield tm, old, first


def test_a_rewrite_of_the_spent_tokens_during_a_refresh_never_gets_them_presented_again(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache
) -> None:
    old = seed(server, cache)
    clock.advance(1000)  # expired: the next call refreshes
    with manager(server, clock, cache, background=False) as tm:
        original: Any = tm._send_refresh

        def racing_send(sent: TokenSet, *args: Any) -> Any:
            outcome = original(sent, *args)
            # Between our read and our compare-and-swap the .NET tool (which takes no
            # lock) writes back the very tokens it read: the refresh token just spent.
            dotnet_write(cache.path, old)
            return outcome

        tm._send_refresh = racing_send  # type: ignore[method-assign]
        first = tm.get_token()
        tm._send_refresh = original  # type: ignore[method-assign]
        second = tm.get_token()
        assert isinstance(first, Authorized) or isinstance(second, Authorized), (first, second)
        assert server.refresh_reuses == 0  # the spent refresh token was never presented
        final = tm.get_token()
        assert isinstance(final, Authorized), final
    stored = FileTokenCache(cache.path).load()
    assert stored is not None and stored.refresh_token != old.refresh_token


def test_a_refused_commit_never_adopts_a_record_holding_the_spent_refresh_token() -> None:
    from textstack_sdk._fleet_refresh import Step, on_commit_refused
    from textstack_sdk._store import RecordState, Snapshot

    spent = TokenSet("access-1", "refresh-1", 100.0)
    fresh = TokenSet("access-2", "refresh-2", 200.0)
    rewritten = Snapshot(version=7, state=RecordState.LIVE, tokens=spent)
    decision = on_commit_refused(rewritten, expected=6, tokens=fresh, spent="refresh-1")
    assert decision.step is Step.COMMIT and decision.version == 7 and decision.tokens == fresh
    sibling = Snapshot(version=7, state=RecordState.LIVE, tokens=TokenSet("a-3", "r-3", 300.0))
    decision = on_commit_refused(sibling, expected=6, tokens=fresh, spent="refresh-1")
    assert decision.step is Step.ADOPT and decision.tokens == sibling.tokens


def test_unsaved_tokens_are_never_traded_for_the_spent_ones_a_rewrite_puts_back(
    server: FakeTextStackServer, clock: FakeClock, tmp_path: Path
) -> None:
    with rotated_unsaved(server, clock, tmp_path) as (tm, old, first):
        dotnet_write(tm.cache.path, old)  # the .NET tool writes back what it had read
        clock.advance(1000)  # ours are due now
        second = tm.get_token()
        assert server.refresh_reuses == 0  # the spent token on disk was never presented
        assert isinstance(second, Authorized), second
        assert second.access_token != first.access_token
    assert server.count(REFRESH) == 2


def test_after_a_failed_save_a_rewrite_of_the_spent_generation_is_not_served(
    server: FakeTextStackServer, clock: FakeClock, tmp_path: Path
) -> None:
    cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
    old = seed(server, cache)  # valid for 15 minutes
    with manager(server, clock, SaveFails(cache.path), background=False) as tm:
        assert tm.get_token() == Authorized(old.access_token)
        tm.invalidate(old.access_token)  # a 401: refreshed, the cache cannot take it
        first = tm.get_token()
        assert isinstance(first, Authorized) and first.access_token != old.access_token
        dotnet_write(cache.path, old)
        tm.invalidate(first.access_token)
        second = tm.get_token()
        assert isinstance(second, Authorized), second
        # Neither the refused token nor one of the generation our refresh spent.
        assert second.access_token not in (old.access_token, first.access_token)
        assert server.refresh_reuses == 0


def test_inside_the_margin_unsaved_tokens_cost_no_wait_on_a_busy_lock(
    server: FakeTextStackServer, clock: FakeClock, tmp_path: Path
) -> None:
    import time

    from textstack_sdk._filelock import InterProcessLock

    cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
    old = seed(server, cache)
    with manager(server, clock, SaveFails(cache.path), background=False) as tm:
        assert tm.get_token() == Authorized(old.access_token)
        tm.invalidate(old.access_token)
        first = tm.get_token()  # rotated; the cache could not take it
        assert isinstance(first, Authorized) and first.access_token != old.access_token
        clock.advance(900 - 20)  # inside the skew margin: still valid
        elsewhere = InterProcessLock(cache.lock_path)  # another process's lock
        assert elsewhere.acquire(1)
        try:
            started = time.monotonic()
            assert tm.get_token() == first
            assert time.monotonic() - started < 0.5
        finally:
            elsewhere.release()


def test_a_manager_closed_mid_refresh_leaves_no_spend_record_when_the_save_fails(
    server: FakeTextStackServer, clock: FakeClock, tmp_path: Path
) -> None:
    import threading

    from _tm_helpers import wait_until

    cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
    old = seed(server, cache)
    clock.advance(900 - 20)  # advisory window: the refresh runs in its own thread
    release = threading.Event()
    server.inject(REFRESH, delay=60, release=release)
    try:
        tm = manager(server, clock, SaveFails(cache.path), lock_timeout=0.1)
        assert tm.get_token() == Authorized(old.access_token)
        wait_until(lambda: server.count(REFRESH) == 1)
        tm.close()  # its wait for the lock ends while the refresh still holds it
        release.set()
        wait_until(lambda: not any(t.name == "textstack-token" for t in threading.enumerate()))
    finally:
        release.set()
    # The rotated pair died with the closed manager: no record may keep the others off.
    assert not FileTokenCache(cache.path).spend_marker().spent_elsewhere(old.refresh_token)
    assert tm is not None  # alive: a live owner's record would count


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_processes_times_threads_expiring_together_spend_the_token_once(
    tmp_path: Path, method: str
) -> None:
    import multiprocessing
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).parent))
    import _mp_workers as workers

    from textstack_sdk._jwt import decode_exp

    cache_path = str(tmp_path / "textstack" / "mcp-token.json")
    with FakeTextStackServer(interval=0.05) as server:
        _, refresh = server.issue_tokens()
        expired = server.make_jwt({"sub": server.user_id, "exp": int(time.time()) - 10})
        assert FileTokenCache(cache_path).save(TokenSet(expired, refresh, decode_exp(expired)))
        server.inject(REFRESH, delay=0.3)  # a slow answer widens every race
        ctx = multiprocessing.get_context(method)
        barrier, out = ctx.Barrier(5), ctx.Queue()
        args = (server.api_url, server.site_host, cache_path, barrier, 6, out)
        procs = [
            ctx.Process(target=workers.threads_get_token_together, args=args) for _ in range(5)
        ]
        for p in procs:
            p.start()
        try:
            results = [out.get(timeout=40) for _ in procs]
        finally:
            for p in procs:
                p.join(20)
                if p.is_alive():
                    p.kill()
        tokens = {token for _, got in results for token in got}
        assert len(tokens) == 1 and sum(len(got) for _, got in results) == 30, tokens
        assert server.count(REFRESH) == 1
        assert server.refresh_reuses == 0


def test_a_child_forked_after_a_failed_save_never_presents_the_spent_token(
    tmp_path: Path,
) -> None:
    import time

    from textstack_sdk import Failed, TokenManager
    from textstack_sdk._jwt import decode_exp

    cache_path = tmp_path / "textstack" / "mcp-token.json"
    with FakeTextStackServer(interval=0.05) as server:
        _, refresh = server.issue_tokens()
        expired = server.make_jwt({"sub": server.user_id, "exp": int(time.time()) - 10})
        assert FileTokenCache(cache_path).save(TokenSet(expired, refresh, decode_exp(expired)))
        tm = TokenManager(
            api_url=server.api_url,
            site_host=server.site_host,
            cache=SaveFails(cache_path),  # the disk is full
            prompt=False,
        )
        first = tm.get_token()
        assert isinstance(first, Authorized), first
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                result = tm.get_token()
                # Not the parent's unsaved tokens, and not a refresh with the spent one.
                code = 0 if isinstance(result, Failed) and result.retryable else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert server.count(REFRESH) == 1 and server.refresh_reuses == 0
        assert tm.get_token() == first
        tm.close()


def test_a_refresh_whose_spend_record_cannot_be_written_sends_nothing(
    server: FakeTextStackServer, clock: FakeClock, tmp_path: Path
) -> None:
    from textstack_sdk import Failed
    from textstack_sdk._spend_marker import SpendMarker

    class NoRoom(SpendMarker):
        def record(self, refresh_token: str, owner: str = "") -> bool:
            return False  # ENOSPC: the lock file never held a record, so it needs room

    class FullDisk(SaveFails):
        def spend_marker(self) -> SpendMarker:
            return NoRoom(self.lock_path)

    cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
    old = seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, FullDisk(cache.path), background=False) as spender:
        result = spender.get_token()
        # Unguarded, a rotation the cache cannot take would leave the spent token on disk.
        assert isinstance(result, Failed) and result.retryable, result
        assert server.count(REFRESH) == 0
        with manager(server, clock, FileTokenCache(cache.path), background=False) as other:
            assert isinstance(other.get_token(), Authorized)
    assert server.refresh_reuses == 0
    stored = cache.load()
    assert stored is not None and stored.refresh_token != old.refresh_token


def test_a_lease_makes_room_for_the_spend_record_and_keeps_one_that_stands(
    tmp_path: Path,
) -> None:
    from textstack_sdk._cache_store import CacheStore
    from textstack_sdk._clock import SYSTEM_CLOCK
    from textstack_sdk._spend_marker import new_owner

    cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json", cipher=None)
    assert cache.save(TokenSet("access-1", "refresh-1", 4e9))
    with cache.lock(1):
        pass  # the lock file exists, empty, as a sign-in leaves it
    assert cache.lock_path.stat().st_size == 0

    class Holder:
        """Keeps the record's owner alive."""

    holder = Holder()
    store = CacheStore(
        cache, owner=new_owner(holder), clock=SYSTEM_CLOCK, grace=90.0, close_wait=1.0
    )
    lease = store.acquire_lease("here", ttl=10.0, wait=1.0)
    assert lease is not None
    assert cache.lock_path.stat().st_size == 512  # a record now needs no free space
    version = store.load().version
    assert store.record_intent(lease, version=version, refresh_token="refresh-1").recorded
    store.refresh_unsaved()
    store.release_lease(lease)
    again = store.acquire_lease("here", ttl=10.0, wait=1.0)
    assert again is not None
    store.release_lease(again)
    assert cache.spend_marker().spent_elsewhere("refresh-1", new_owner(holder))


def test_a_logout_outside_the_lock_during_a_refresh_wins(
    server: FakeTextStackServer, clock: FakeClock, cache: FileTokenCache
) -> None:
    from textstack_sdk import Pending

    seed(server, cache)
    clock.advance(1000)
    with manager(server, clock, cache, background=False) as tm:
        original: Any = tm._send_refresh

        def racing_send(sent: TokenSet, *args: Any) -> Any:
            outcome = original(sent, *args)
            os.unlink(cache.path)  # the .NET tool's logout takes no lock
            return outcome

        tm._send_refresh = racing_send  # type: ignore[method-assign]
        result = tm.get_token()
        assert isinstance(result, Pending), result  # signed out: a new sign-in starts
    assert FileTokenCache(cache.path).load() is None  # the login was not brought back
    assert server.refresh_reuses == 0


def test_unsaved_tokens_refused_never_bring_back_the_spent_ones_on_disk(
    server: FakeTextStackServer, clock: FakeClock, tmp_path: Path
) -> None:
    from textstack_sdk import Pending

    with rotated_unsaved(server, clock, tmp_path) as (tm, _old, _first):
        server.revoke_all()  # the family is revoked (by an administrator, say)
        clock.advance(1000)
        result = tm.get_token()
        if not isinstance(result, Pending):
            result = tm.get_token()
        assert isinstance(result, Pending), result
    # The token on disk is the one our refresh spent: never presented again.
    assert server.count(REFRESH) == 2
    assert server.refresh_reuses == 0
