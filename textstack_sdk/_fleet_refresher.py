"""Runs the fleet refresh protocol (``_fleet_refresh``) against a token store: the I/O half.

One :meth:`FleetRefresher.run` reads the store, asks the decision functions what to do,
does it (a store call, a wait, the refresh request), and asks again, until a decision
ends the attempt. Every wait is bounded by the caller's deadline and the step count is
bounded, so a run never outlasts ``deadline`` before its one refresh request (whose
timeout is the request's own, cut to the lease). With a shared store, any store failure
ends the run with a retryable failure: nothing is refreshed without the store's
coordination (fails closed).

A local store (one host's own cache, ``_cache_store``; ``store.local``) differs in three
ways that its lease and intent make safe: its lease not had within the caller's
``lease_wait`` ends the run (``Outcome.busy``), never a wait for a version change; a cache
that cannot be decrypted fails for good; and tokens whose save failed are still refreshed
when due, their intent (alive as long as this process) keeping the others off the token
the cache holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Callable, Optional

from . import _wire as wire
from ._clock import Clock
from ._fleet_refresh import (
    Decision,
    Held,
    Response,
    Step,
    fresh,
    on_commit_refused,
    on_intent,
    on_read,
    on_refused,
    on_response,
)
from ._models import TokenSet
from ._store import Lease, RecordState, RefreshStore, Snapshot, StoreError

__all__ = ["FleetRefresher", "Outcome", "default_owner"]

log = logging.getLogger("textstack_sdk.auth")

# Each lap of the protocol is a handful of steps; a run that needs more is going round
# in circles (a store that keeps changing under it), and ends retryably.
_MAX_STEPS = 24

Send = Callable[[TokenSet, float], wire.RefreshOutcome]


@dataclass(frozen=True)
class Outcome:
    """How a run ended. Immutable.

    Attributes:
        kind: ``ok`` (``held`` has usable tokens), ``dropped`` (logged out or revoked:
            hold nothing) or ``failed`` (keep what was held; try again later when
            ``retryable``).
        held: What the caller holds now.
        reason: Secret-free words for a log or ``Failed``.
        retryable: For ``failed`` and ``dropped``.
        refreshed: This run spent a refresh token and got new tokens.
        seen: The live record this run last read, when it had tokens (they may be
            inside the refresh margin yet still valid: a caller with nothing better
            may serve them while the refresh is retried).
        store_failed: The store could not be read or written (``failed`` only).
        retry_after: Seconds the auth server asked to wait before the next refresh.
        busy: A local store's lease (the cache's lock) was not had: nothing was tried.
    """

    kind: str
    held: Held
    reason: str = ""
    retryable: bool = False
    refreshed: bool = False
    seen: Optional[Held] = None
    store_failed: bool = False
    retry_after: Optional[float] = None
    busy: bool = False

    @property
    def unsaved(self) -> bool:
        """The held tokens are not surely in the store: run again soon (refresh=False)."""
        return self.held.unsaved and self.held.tokens is not None


def default_owner() -> str:
    """Who this process is, as lease holders are shown to operators (not secret)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class FleetRefresher:
    """Drives refreshes through a shared store. Thread-safe if the store is; the caller
    runs one refresh at a time per process (its single flight).

    Args:
        store: The shared record.
        owner: This process, as shown in the lease (see :func:`default_owner`).
        clock: Wall time (token expiry, versions), monotonic time and waits.
        request_timeout: The whole deadline one refresh request needs.
        margin: Seconds before expiry at which a token stops counting as fresh.
        lease_ttl: How long the refresh lease lasts; it must cover a request and the
            store calls around it.
    """

    def __init__(
        self,
        store: RefreshStore,
        *,
        owner: str,
        clock: Clock,
        request_timeout: float,
        margin: float,
        lease_ttl: Optional[float] = None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock
        self._request = request_timeout
        self._margin = margin
        self._ttl = lease_ttl if lease_ttl is not None else request_timeout * 2 + 2.0

    @property
    def store(self) -> RefreshStore:
        return self._store

    def run(
        self,
        held: Held,
        send: Send,
        *,
        deadline: float,
        keep: Callable[[Held], None] = lambda _held: None,
        refresh: bool = True,
        refused: Optional[str] = None,
        lease_wait: Optional[float] = None,
    ) -> Outcome:
        """One attempt to end up holding usable tokens; bounded by ``deadline`` (monotonic).

        Args:
            held: What this process holds now.
            send: Sends the refresh request with a timeout; returns its outcome.
            deadline: Monotonic time by which the run returns.
            keep: Called with new tokens the moment a refresh returns them, before they
                are committed (they are the only copy of a live refresh token).
            refresh: False only reads: adopt, republish, drop; never takes the lease.
            refused: An access token the API refused (401): the store's record holding
                it is due for refresh, however far its exp is.
            lease_wait: Longest wait for the lease (default: what the deadline leaves).
        """
        run = _Run(self, held, send, keep, deadline, refused=refused, lease_wait=lease_wait)
        try:
            return run.go(refresh=refresh)
        except StoreError as exc:
            run.abandon()
            if run.local:
                # Not a refusal to refresh: the cache could not be written (a full disk; the
                # new tokens are held) or read (only its key opens it: nothing to retry).
                return Outcome(
                    "failed",
                    run.held,
                    reason=exc.message,
                    retryable=exc.retryable,
                    seen=run.seen,
                    store_failed=True,
                )
            log.warning("token store failed; not refreshing (%s)", exc.message)
            return Outcome(
                "failed",
                run.held,
                reason=f"token store: {exc.message}; not refreshing without it",
                retryable=True,
                seen=run.seen,
                store_failed=True,
            )


class _Run:
    """The state of one run. Not thread-safe: one thread drives it."""

    def __init__(
        self,
        owner: FleetRefresher,
        held: Held,
        send: Send,
        keep: Callable[[Held], None],
        deadline: float,
        *,
        refused: Optional[str],
        lease_wait: Optional[float],
    ) -> None:
        self.r = owner
        self.store = owner._store
        # One host's own cache (``_cache_store``): its intent lives as long as its owner.
        self.local = bool(getattr(owner._store, "local", False))
        self.lease_wait = lease_wait
        self.refresh = True
        self.retry_after: Optional[float] = None
        self.busy = False
        self.clock = owner._clock
        self.held = held
        self.send = send
        self.keep = keep
        self.deadline = deadline
        self.lease: Optional[Lease] = None
        self.sent: Optional[TokenSet] = None
        self.intent_version = 0
        self.spent_unsaved = False  # what was sent were tokens the store never took
        self.seen: Optional[Held] = None
        self.refused = refused

    def left(self) -> float:
        return self.deadline - self.clock.monotonic()

    def read(self, snap: Snapshot) -> Decision:
        if snap.state is RecordState.LIVE and snap.tokens is not None:
            self.seen = Held(snap.tokens, snap.version)
        lease_left = None
        if self.lease is not None:
            lease_left = self.lease.remaining(self.clock.monotonic())
        return on_read(
            snap,
            self.held,
            now=self.clock.time(),
            margin=self.r._margin,
            lease_left=lease_left,
            request_timeout=self.r._request,
            max_wait=max(0.0, self.left()),
            refused=self.refused,
        )

    def release(self, *, withdraw: bool) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            # Once the request went out, the intent stays: the token may be spent.
            self.store.release_lease(lease, withdraw_intent=withdraw and self.sent is None)

    def abandon(self) -> None:
        """Best effort after a store failure: the lease back, the intent only if unsent."""
        with contextlib.suppress(StoreError):
            self.release(withdraw=True)

    def go(self, *, refresh: bool) -> Outcome:
        self.refresh = refresh
        d = self.read(self.store.load())
        for _ in range(_MAX_STEPS):
            if d.release:
                self.release(withdraw=d.withdraw)
            step = d.step
            if step is Step.USE:
                return Outcome("ok", self.held)
            if step is Step.ADOPT:
                assert d.tokens is not None
                self.held = Held(d.tokens, d.version)
                return Outcome("ok", self.held, reason=d.reason)
            if step is Step.DROP:
                self.held = Held(None, 0)
                return Outcome("dropped", self.held, reason=d.reason)
            if step is Step.FAIL:
                self.release(withdraw=True)
                return Outcome(
                    "failed",
                    self.held,
                    reason=d.reason,
                    retryable=d.retryable,
                    seen=self.seen,
                    retry_after=self.retry_after,
                    busy=self.busy,
                )
            if step in (Step.REPUBLISH, Step.PUBLISH):
                d = self.publish(d)
            elif step is Step.TAKE_LEASE:
                if not refresh:
                    return Outcome(
                        "failed",
                        self.held,
                        reason="a refresh is needed",
                        retryable=True,
                        seen=self.seen,
                    )
                d = self.take_lease()
            elif step is Step.WAIT:
                d = self.wait(d)
            elif step is Step.RECORD_INTENT:
                d = self.record_intent(d)
            elif step is Step.SEND:
                d = self.send_refresh(d)
            elif step is Step.COMMIT:
                done = self.commit(d)
                if isinstance(done, Outcome):
                    return done
                d = done
            elif step is Step.MARK_REVOKED:
                result = self.store.mark_revoked(d.version, now=self.clock.time())
                if result.ok:
                    self.held = Held(None, 0)
                    return Outcome("dropped", self.held, reason=d.reason)
                assert self.sent is not None
                d = on_refused(
                    self.store.load(),
                    spent=self.sent,
                    version=self.intent_version,
                    unsaved=self.spent_unsaved,
                )
            else:  # Step.REREAD
                d = self.read(self.store.load())
        self.release(withdraw=True)
        return Outcome(
            "failed",
            self.held,
            reason="the token store kept changing; try again",
            retryable=True,
            seen=self.seen,
        )

    def publish(self, d: Decision) -> Decision:
        assert d.tokens is not None
        if not self.hold_local_lease():
            return self.busy_lock()
        if d.step is Step.REPUBLISH:
            result = self.store.republish(d.version, d.tokens)
        else:
            result = self.store.commit(0, d.tokens, now=self.clock.time())
        if result.ok:
            log.info("token store: %s", d.reason)
            self.held = Held(d.tokens, result.version, unsaved=not result.acknowledged)
        return self.read(self.store.load())

    def acquire_lease(self) -> Optional[Lease]:
        wait = min(max(0.0, self.left()), self.r._ttl)
        if self.lease_wait is not None:
            wait = min(wait, self.lease_wait)
        return self.store.acquire_lease(self.r._owner, ttl=self.r._ttl, wait=wait)

    def hold_local_lease(self) -> bool:
        """A local store writes under its lease (the cache's lock): within the caller's wait.

        Its commit would otherwise wait for the lock on its own terms, which an advisory
        refresh, whose caller waits for nothing, must not.
        """
        if self.local and self.lease is None:
            self.lease = self.acquire_lease()
            return self.lease is not None
        return True

    def busy_lock(self) -> Decision:
        # Its holder is not in the record (a flock): taking it again cannot help now.
        self.busy = True
        return Decision(Step.FAIL, retryable=True, reason="another process holds the token lock")

    def take_lease(self) -> Decision:
        self.lease = self.acquire_lease()
        if self.lease is None and self.local:
            return self.busy_lock()
        # Held or not, read again: another host may have refreshed while this one waited,
        # and the refresh token to spend is the one read NOW, never the one read before.
        return self.read(self.store.load())

    def wait(self, d: Decision) -> Decision:
        timeout = min(d.timeout, self.left())
        if timeout <= 0:
            return Decision(Step.FAIL, retryable=True, reason=f"{d.reason}; gave up waiting for it")
        changed = self.store.wait_for_change(d.version, timeout=timeout)
        return self.read(changed if changed is not None else self.store.load())

    def record_intent(self, d: Decision) -> Decision:
        assert self.lease is not None and d.tokens is not None and d.tokens.refresh_token
        result = self.store.record_intent(
            self.lease, version=d.version, refresh_token=d.tokens.refresh_token
        )
        self.intent_version = d.version
        after = on_intent(result, mono_now=self.clock.monotonic(), request_timeout=self.r._request)
        if after.step is Step.SEND:
            self.sent = d.tokens
        elif after.step is Step.REREAD:
            self.release(withdraw=False)
            return self.read(self.store.load())
        return after

    def send_refresh(self, d: Decision) -> Decision:
        assert self.sent is not None and self.lease is not None
        if self.lease.remaining(self.clock.monotonic()) < d.timeout:
            # Paused since the intent (GC, a stopped VM): the lease may be someone else's.
            self.sent = None
            return Decision(
                Step.FAIL,
                release=True,
                withdraw=True,
                retryable=True,
                reason="the lease ran short before the request was sent; nothing was sent",
            )
        outcome = self.send(self.sent, d.timeout)
        if isinstance(outcome, wire.Refreshed):
            fresh = outcome.tokens
            # In memory first: if the commit fails, this is the only copy.
            self.held = Held(fresh, self.intent_version, unsaved=True)
            self.keep(self.held)
            return on_response(Response.TOKENS, version=self.intent_version, tokens=fresh)
        if isinstance(outcome, wire.RefreshDead):
            on_response(Response.REFUSED, version=self.intent_version, tokens=None)
            return on_refused(
                self.store.load(),
                spent=self.sent,
                version=self.intent_version,
                unsaved=self.spent_unsaved,
            )
        if not self.local:  # a local store's record is blanked with its lease
            log.warning(
                "token refresh failed (%s); the intent stays until it expires", outcome.reason
            )
        self.retry_after = outcome.retry_after
        failed = on_response(Response.FAILED, version=self.intent_version, tokens=None)
        return Decision(failed.step, release=True, retryable=True, reason=outcome.reason)

    def commit(self, d: Decision) -> Decision | Outcome:
        assert d.tokens is not None
        if not self.hold_local_lease():
            return self.busy_lock()
        try:
            result = self.store.commit(d.version, d.tokens, now=self.clock.time())
        except StoreError:
            if self.sent is None and self.local and self.refresh and self.due(self.held):
                return self.refresh_unsaved(d.version)
            raise
        if result.ok:
            # Saved at last, tokens a failed save left in memory may be due themselves.
            due = self.sent is None and self.local and self.refresh and self.due(self.held)
            # Unacknowledged by a replica, it may vanish in a failover: held as unsaved,
            # so the next run writes it again (see Outcome.unsaved).
            self.held = Held(d.tokens, result.version, unsaved=not result.acknowledged)
            self.keep(self.held)
            self.release(withdraw=False)
            if due:
                return self.read(self.store.load())
            return Outcome("ok", self.held, refreshed=self.sent is not None, reason=d.reason)
        spent = self.sent.refresh_token if self.sent is not None else None
        return on_commit_refused(
            self.store.load(), expected=d.version, tokens=d.tokens, spent=spent
        )

    def due(self, held: Held) -> bool:
        """Whether held tokens need a refresh (their access token expired or was refused)."""
        tokens = held.tokens
        if not held.unsaved or tokens is None or not tokens.refresh_token:
            return False
        if tokens.access_token == self.refused:
            return True
        return not fresh(tokens, self.clock.time(), self.r._margin)

    def refresh_unsaved(self, version: int) -> Decision | Outcome:
        """A local store that cannot save: refresh the tokens only this process holds.

        Its intent (the spend record) still names the token in the cache, and keeps every
        other process off it while this one lives; no other process has the token sent now.
        """
        if self.lease is None:
            self.lease = self.acquire_lease()
        if self.lease is None:
            return self.busy_lock()
        refresh_unsaved = getattr(self.store, "refresh_unsaved", None)
        if refresh_unsaved is not None:
            refresh_unsaved()
        assert self.held.tokens is not None
        self.sent = self.held.tokens
        self.spent_unsaved = True
        self.intent_version = version
        return self.send_refresh(Decision(Step.SEND, timeout=self.r._request))
