"""The refresh part of the store protocol on a manager's own cache: one host, the default.

The manager drives every refresh through :class:`~textstack_sdk._fleet_refresher.FleetRefresher`;
with no shared store configured, this store maps :class:`~textstack_sdk._store.RefreshStore`
onto the cache (see the "How the file cache maps onto it" part of ``_store``). It keeps no
pending sign-in: the cache's own shared-flow file does (``_shared_flow``), so it is not a
:class:`~textstack_sdk._store.TokenStore`:

- the **lease** is the cache's ``flock`` (``cache.lock``), held by the refreshing thread
  from before it re-reads the cache until after it saved the rotation. The kernel ends it
  when its holder dies, so it never expires under a live holder; the wait for it is the
  caller's (none for an advisory refresh);
- the **intent** is the spend record in the lock file (``_spend_marker``), written in place
  (no free disk space needed). It lives as long as its writer: a live process that spent a
  refresh token and could not save the rotation keeps every other process off that token,
  and the others are told so at once (:attr:`IntentInfo.unsaved`) rather than left waiting;
- the **version** is this store's count of the distinct cache contents it has read: a
  version only this manager compares, so the cache can never look as if it went backwards,
  and the compare-and-swap is "the tokens have not changed since they were read". The
  tokens, not the file: a writer outside the lock (the .NET tool) writing back what it
  read, or a mere touch, is the same record, still holding the refresh token a refresh
  just spent, never a newer one to adopt;
- a **commit** is the cache's ``save`` (atomic temp + rename, as always); a save that fails
  raises a retryable :class:`StoreError` and leaves the spend record standing;
- a missing cache file is no login (``empty``): another process logged out.

Thread-safety: thread-safe; the lease belongs to the thread that took it (the flock is
re-entrant in that thread, so the calls of one refresh run under it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import threading
from collections.abc import Hashable
from typing import Any, ContextManager, Optional

from ._clock import Clock
from ._errors import CacheDecryptionError
from ._freshness import trusted_exp
from ._jwt import decode_exp
from ._models import TokenSet
from ._spend_marker import SpendMarker
from ._store import IntentInfo, IntentResult, Lease, RecordState, Snapshot, StoreError, WriteResult

__all__ = ["CacheStore"]

_UNREAD = object()


class CacheStore:
    """The refresh store protocol over one token cache, for one host's processes. Thread-safe.

    Args:
        cache: The token cache (a ``FileTokenCache``, or any object with ``load``,
            ``save`` and ``clear``; ``lock``, ``signature``, ``saved_at`` and
            ``spend_marker`` are used when it has them).
        owner: Who writes spend records: the manager's owner name (``new_owner``), so two
            managers of one process respect each other's record.
        clock: Wall time, for what a cache's stated expiry is believed.
        grace: The longest life believed on the cache's word alone (see ``trusted_exp``).
        close_wait: Longest wait for the lock when closing (to blank our spend record).
    """

    local = True
    """The lease is the holder's own life and the intent outlives nobody: see the module doc."""

    def __init__(
        self, cache: Any, *, owner: str, clock: Clock, grace: float, close_wait: float
    ) -> None:
        self._cache = cache
        self._owner = owner
        self._clock = clock
        self._grace = grace
        self._close_wait = close_wait
        self._guard = threading.Lock()
        self._key: object = _UNREAD
        self._version = 0
        self._leases: dict[str, contextlib.ExitStack] = {}
        self._holder: Optional[int] = None  # the thread holding the lease
        # Our spend record names the token in the cache while we hold newer tokens that
        # could not be saved: only a successful save (or close) may blank it then.
        self._guarding = False
        self._marked = False  # a spend record of ours may stand

    def __repr__(self) -> str:
        return f"CacheStore({self.location!r})"

    @property
    def cache(self) -> Any:
        return self._cache

    @property
    def location(self) -> str:
        path = getattr(self._cache, "path", None)
        return str(path) if path is not None else repr(self._cache)

    # -- reading ---------------------------------------------------------------------

    def signature(self) -> Hashable:
        """A cheap change check (a stat); None when the cache cannot tell."""
        sig = getattr(self._cache, "signature", None)
        if sig is None:
            return None
        try:
            value: Hashable = sig()
        except Exception:  # noqa: BLE001 - a custom cache must not break get_token
            return None
        return value

    def saved_at(self) -> Optional[float]:
        """When the cache was written (wall clock), when it can tell."""
        saved_at = getattr(self._cache, "saved_at", None)
        if saved_at is None:
            return None
        try:
            when = saved_at()
        except OSError:
            return None
        return min(when, self._clock.time()) if isinstance(when, float) else None

    def load(self) -> Snapshot:
        try:
            loaded = self._cache.load()
        except CacheDecryptionError as exc:
            # Not retryable: only the right key, or a logout, is the way out.
            raise StoreError(exc.message) from None
        except Exception:  # noqa: BLE001 - a custom cache must not break get_token
            loaded = None
        tokens = self._believed(loaded) if isinstance(loaded, TokenSet) else None
        with self._guard:
            key = loaded if isinstance(loaded, TokenSet) else None
            if key != self._key:
                self._key = key
                self._version += 1
            version = self._version
            mine = self._holder == threading.get_ident()
        if tokens is None:
            return Snapshot(version=version, state=RecordState.EMPTY)
        intent = None
        if mine and tokens.refresh_token and self._spent_elsewhere(tokens.refresh_token):
            intent = IntentInfo(
                owner="another process",
                fingerprint="",
                version=version,
                remaining=float("inf"),
                unsaved=True,
            )
        return Snapshot(version=version, state=RecordState.LIVE, tokens=tokens, intent=intent)

    def _believed(self, tokens: TokenSet) -> TokenSet:
        # The file's accessExpiresAt is anyone's word: it never extends a JWT's exp, and
        # without one it is believed only as far as a fresh token's grace.
        exp = trusted_exp(
            decode_exp(tokens.access_token),
            tokens.access_exp,
            self._clock.time(),
            grace=self._grace,
        )
        if exp == tokens.access_exp:
            return tokens
        return dataclasses.replace(tokens, access_exp=0.0 if exp is None else exp)

    def wait_for_change(self, version: int, *, timeout: float) -> Optional[Snapshot]:
        # Never asked for: a local intent fails at once, and the lease is a blocking flock.
        snap = self.load()
        return snap if snap.version != version else None

    # -- the lease and the intent ------------------------------------------------------

    def acquire_lease(
        self, owner: str, *, ttl: float, wait: float, purpose: str = "refresh"
    ) -> Optional[Lease]:
        if purpose != "refresh":
            raise StoreError(f"a token cache has no {purpose} lease")
        stack = contextlib.ExitStack()
        if not stack.enter_context(self._process_lock(wait)):
            stack.close()
            return None
        marker = self._marker()
        if marker is not None:
            # Room for the spend record while there is some: writing it in place then
            # needs none, even on the full disk a failed save finds.
            marker.reserve()
        token = secrets.token_hex(8)
        with self._guard:
            self._leases[token] = stack
            self._holder = threading.get_ident()
        # The flock never expires under a live holder: the ttl only bounds the refresh.
        return Lease(owner=owner, token=token, purpose=purpose, deadline=_mono(self) + ttl)

    def renew_lease(self, lease: Lease, *, ttl: float) -> Optional[Lease]:
        with self._guard:
            held = lease.token in self._leases
        return dataclasses.replace(lease, deadline=_mono(self) + ttl) if held else None

    def release_lease(self, lease: Lease, *, withdraw_intent: bool = False) -> bool:
        with self._guard:
            stack = self._leases.pop(lease.token, None)
            guarding = self._guarding
        if stack is None:
            return False
        try:
            if not guarding:
                # Nothing rotated that we hold unsaved: the record has no reason to stand.
                self._clear_mark()
        finally:
            with self._guard:
                self._holder = None
            stack.close()
        return True

    def record_intent(self, lease: Lease, *, version: int, refresh_token: str) -> IntentResult:
        deadline = lease.deadline
        with self._guard:
            held = lease.token in self._leases
        if not held:
            return IntentResult(recorded=False, acknowledged=False, reason="lease")
        current = self.load()
        if current.version != version:
            return IntentResult(
                recorded=False,
                acknowledged=False,
                reason="version",
                lease_deadline=deadline,
                current_version=current.version,
            )
        if self._spent_elsewhere(refresh_token):
            return IntentResult(
                recorded=False, acknowledged=False, reason="intent", lease_deadline=deadline
            )
        marker = self._marker()
        if marker is not None and not marker.record(refresh_token, self._owner):
            if os.name != "nt":  # no records there (see _spend_marker): the lock alone
                # A rotation the cache then could not take (the same full disk) would leave
                # the spent token on disk, unguarded: nothing is sent.
                return IntentResult(
                    recorded=True,
                    acknowledged=False,
                    reason="the spend record could not be written (is the disk full?)",
                    lease_deadline=deadline,
                    current_version=version,
                )
        elif marker is not None:
            self._marked = True
        return IntentResult(
            recorded=True, acknowledged=True, lease_deadline=deadline, current_version=version
        )

    def refresh_unsaved(self) -> None:
        """Says the next refresh spends tokens the cache never had (a save failed).

        The spend record standing names the token in the cache, which the others can read;
        nobody else has the one about to be sent, so the record must keep naming that one.
        """
        with self._guard:
            self._guarding = True

    # -- writes ------------------------------------------------------------------------

    def commit(self, expected_version: int, tokens: TokenSet, *, now: float) -> WriteResult:
        with self._process_lock(self._close_wait) as locked:
            current = self.load()
            if current.version != expected_version:
                return WriteResult(ok=False, version=current.version)
            if not locked:
                raise StoreError(
                    "the token cache stayed locked; keeping the tokens", retryable=True
                )
            try:
                saved = bool(self._cache.save(tokens))
            except Exception:  # noqa: BLE001 - a custom cache must not break a refresh
                saved = False
            if not saved:
                with self._guard:
                    self._guarding = True
                raise StoreError(
                    "the new tokens could not be saved; keeping them in memory for now",
                    retryable=True,
                )
            with self._guard:
                self._guarding = False
            self._clear_mark()
            return WriteResult(ok=True, version=self.load().version)

    def republish(self, held_version: int, tokens: TokenSet) -> WriteResult:
        # This store's versions never go backwards (see the module doc): nothing to heal.
        return WriteResult(ok=False, version=self.load().version)

    def tombstone(self, *, now: float) -> WriteResult:
        self._clear_mark()
        with self._guard:
            self._guarding = False
        if not _cleared(self._cache):
            raise StoreError("the token cache could not be cleared", retryable=True)
        return WriteResult(ok=True, version=self.load().version)

    def mark_revoked(self, expected_version: int, *, now: float) -> WriteResult:
        current = self.load()
        if current.version != expected_version:
            return WriteResult(ok=False, version=current.version)
        if not _cleared(self._cache):
            raise StoreError("the token cache could not be cleared", retryable=True)
        return WriteResult(ok=True, version=self.load().version)

    def after_fork(self) -> None:
        """In a forked child: no lease, and no unsaved tokens (the parent's stay its own)."""
        self._guard = threading.Lock()
        self._leases = {}
        self._holder = None
        self._guarding = False
        self._marked = False

    def close(self) -> None:
        """Blanks our spend record: the rotated tokens it guarded die with us."""
        if not self._marked:
            return
        with self._process_lock(self._close_wait) as locked:
            if locked:
                self._clear_mark()

    # -- internals -----------------------------------------------------------------------

    def _process_lock(self, wait: float) -> ContextManager[bool]:
        lock = getattr(self._cache, "lock", None)
        if lock is None:
            return contextlib.nullcontext(True)
        result: ContextManager[bool] = lock(wait)
        return result

    def _marker(self) -> Optional[SpendMarker]:
        make = getattr(self._cache, "spend_marker", None)
        if make is None:
            return None
        try:
            marker = make()
        except Exception:  # noqa: BLE001 - a custom cache must not break a refresh
            return None
        return marker if isinstance(marker, SpendMarker) else None

    def _spent_elsewhere(self, refresh_token: str) -> bool:
        marker = self._marker()
        return marker is not None and marker.spent_elsewhere(refresh_token, self._owner)

    def _clear_mark(self) -> None:
        marker = self._marker()
        if marker is not None:
            marker.clear(self._owner)
        self._marked = False


def _mono(store: CacheStore) -> float:
    return store._clock.monotonic()


def _cleared(cache: Any) -> bool:
    try:
        return cache.clear() is not False
    except Exception:  # noqa: BLE001 - a custom cache must not break a logout
        return False
