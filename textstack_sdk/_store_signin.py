"""The shared sign-in of a fleet, kept in its token store instead of files beside a cache.

``TokenManager`` shares one pending sign-in between the processes of a host through the
file cache's ``lock``, ``load_pending``/``save_pending``, per-code poll locks and poll
heartbeats. :class:`StoreSignIn` offers the same calls over a ``TokenStore``, so the same
code shares one sign-in between hosts: the record lives in the store (one user code for
the fleet), the cross-process lock is the store's ``signin`` lease, and the poll lock is
its ``poll`` lease, renewed by every poll; a poller that dies stops renewing it, and
another host takes over when it runs out (three poll intervals and 2 s).

Tokens do not pass through here: the manager commits a new login to the store itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Optional

from . import _shared_flow as shared_flow
from ._clock import SYSTEM_CLOCK, Clock
from ._models import TokenSet
from ._store import Lease, StoreError, TokenStore

__all__ = ["StoreSignIn"]

log = logging.getLogger("textstack_sdk.auth")

_LOCK_TTL = 30.0
"""Seconds the ``signin`` lease lasts: it covers one device-code request at most."""


class StoreSignIn:
    """The shared-sign-in calls of ``FileTokenCache``, over a token store. Thread-safe.

    Args:
        store: The fleet's store.
        owner: This process, as lease holders are shown.
        clock: Wall time, to read the sign-in record's expiry.
    """

    def __init__(self, store: TokenStore, *, owner: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock

    def __repr__(self) -> str:
        return f"StoreSignIn({self._store!r})"

    # The token calls of a cache: the manager keeps fleet tokens in the store itself.

    def load(self) -> Optional[TokenSet]:
        return None

    def save(self, tokens: TokenSet) -> bool:
        return False

    def clear(self) -> bool:
        return True

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[bool]:
        """The fleet-wide lock around starting (or adopting) a sign-in."""
        try:
            lease = self._store.acquire_lease(
                self._owner, ttl=_LOCK_TTL, wait=max(0.0, timeout), purpose="signin"
            )
        except StoreError as exc:
            log.warning("token store: cannot take the sign-in lock (%s)", exc.message)
            lease = None
        try:
            yield lease is not None
        finally:
            if lease is not None:
                with contextlib.suppress(StoreError):
                    self._store.release_lease(lease)

    def load_pending(self) -> Optional[dict[str, object]]:
        try:
            pending = self._store.load().pending
        except StoreError as exc:
            log.warning("token store: cannot read the shared sign-in (%s)", exc.message)
            return None
        return dict(pending) if pending is not None else None

    def save_pending(self, record: Mapping[str, object]) -> bool:
        """Puts ``record`` up as the fleet's sign-in, in place of whatever is there."""
        try:
            current = self._store.load().pending
            if current is None:
                return self._store.offer_pending(record)
            return self._store.replace_pending(current, record)
        except StoreError as exc:
            log.warning("token store: cannot share the sign-in (%s)", exc.message)
            return False

    def clear_pending(self) -> None:
        with contextlib.suppress(StoreError):
            self._store.clear_pending()

    def poll_lock(self, device_code: str) -> _PollLease:
        interval = 5.0
        flow = shared_flow.decode(self.load_pending(), self._clock.time(), allow_expired=True)
        if flow is not None and flow.auth.device_code == device_code:
            interval = flow.auth.interval
        return _PollLease(self._store, self._owner, ttl=3 * interval + 2.0)

    def remove_poll_locks(self) -> None:
        """Nothing to remove: poll leases run out by themselves."""

    def touch_poll(self, device_code: str, when: float) -> None:
        """Nothing here: the poll lease is renewed by the poller (see ``_PollLease``)."""

    def polled_at(self, device_code: str) -> Optional[float]:
        """Unknown: the poll lease, not a timestamp, tells who polls."""
        return None


class _PollLease:
    """The ``poll`` lease as the manager uses a poll lock. Not thread-safe: one flow's.

    ``acquire(0)`` takes it or renews it when held (each poll calls it), so it lasts while
    its holder keeps polling and runs out soon after the holder dies.
    """

    def __init__(self, store: TokenStore, owner: str, *, ttl: float) -> None:
        self._store = store
        self._owner = owner
        self._ttl = ttl
        self._lease: Optional[Lease] = None

    @property
    def held(self) -> bool:
        if self._lease is None:
            return False
        try:
            self._lease = self._store.renew_lease(self._lease, ttl=self._ttl)
        except StoreError:
            return False  # the store is away: nobody polls on our word meanwhile
        return self._lease is not None

    def acquire(self, timeout: float) -> bool:
        try:
            self._lease = self._store.acquire_lease(
                self._owner, ttl=self._ttl, wait=max(0.0, timeout), purpose="poll"
            )
        except StoreError:
            self._lease = None
        return self._lease is not None

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(StoreError):
                self._store.release_lease(lease)
