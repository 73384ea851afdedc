"""The token store protocol on the file cache: one host's processes sharing one login.

The cache file keeps the format the .NET tool reads, plus a ``version`` field (the
record's generation). Everything else lives in a state file beside it, ``<path>.store``
(0600, no secret in it)::

    {"hw": 17330000123,                   the highest version this store ever issued
     "gone": "tombstone" | "revoked" | null,   why there is no cache file, when we removed it
     "leases": {"refresh": {"owner", "token", "pid", "host", "exp", "span"}},
     "intent": {"owner", "token", "fp", "version", "exp", "span"}}

Every operation runs under the cache's ``flock`` (``FileTokenCache.lock``), held only for
the few reads and writes of that one operation: the flock plays the part of Redis's single
thread, so each step is atomic exactly as a Lua script is. Leases and intents are records
with a time to live, as on Redis, so a paused holder loses its lease the same way; a
holder on this host whose process has died loses it at once (its pid is gone).

Generations: a cache file with a ``version`` field has that version. A file without one
was written by something that does not know versions (the .NET tool, an older SDK): it is
a new generation, numbered ``max(its mtime in ms, hw + 1)``, so it is never taken for a
store that went backwards (which would make the hosts republish a spent refresh token over
it). A missing cache file after a login is a logout (the .NET tool and ``textstack logout``
delete it): one host's disk does not lose data on its own. Only when the state file is
gone too does the store read as empty, which a host holding newer tokens heals.

Times in the state file are wall-clock seconds (processes share no monotonic origin after
a reboot); a remaining time is never taken as more than the span it was granted, so a
clock set back cannot stretch a lease.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Optional

from ._cache import FileTokenCache
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import CacheDecryptionError
from ._models import TokenSet
from ._store import (
    IntentInfo,
    IntentResult,
    Lease,
    LeaseTaking,
    RecordState,
    Snapshot,
    StoreError,
    StoreUnavailable,
    WriteResult,
    check_range,
    fingerprint,
    json_object,
    next_version,
    wait_for_version,
)

__all__ = ["FileTokenStore"]

_GONE = {"tombstone": RecordState.TOMBSTONE, "revoked": RecordState.REVOKED}


class FileTokenStore(LeaseTaking):
    """The token store on a :class:`FileTokenCache`. Thread-safe and multi-process-safe.

    Args:
        cache: The cache file (and its cipher) to keep the tokens in.
        lock_wait: Longest wait, in seconds, for the cache's flock in any one operation;
            beyond it the operation raises :class:`StoreUnavailable`.
        intent_grace: Seconds an intent outlives its lease, for a late holder to commit.
        poll_interval: Base seconds between looks while waiting for a lease or a change.
        clock: Wall and monotonic time, and waits.
    """

    def __init__(
        self,
        cache: FileTokenCache,
        *,
        lock_wait: float = 5.0,
        intent_grace: float = 5.0,
        poll_interval: float = 0.05,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        check_range("lock_wait", lock_wait, 0.0, 600.0)
        check_range("intent_grace", intent_grace, 0.0, 600.0)
        check_range("poll_interval", poll_interval, 0.001, 5.0)
        self._cache = cache
        self._lock_wait = lock_wait
        self._grace = intent_grace
        self._poll = poll_interval
        self._clock = clock
        self._host = socket.gethostname()

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self._cache.path)!r})"

    @property
    def cache(self) -> FileTokenCache:
        return self._cache

    @property
    def location(self) -> str:
        """The cache file, for status output."""
        return str(self._cache.path)

    def close(self) -> None:
        """Nothing to close (every operation opens its files afresh)."""

    # -- reading ---------------------------------------------------------------------

    def load(self) -> Snapshot:
        with self._locked() as state:
            return self._snapshot(state, with_pending=True)

    def wait_for_change(self, version: int, *, timeout: float) -> Optional[Snapshot]:
        return wait_for_version(
            self.load, version, timeout=timeout, clock=self._clock, poll=self._poll
        )

    # -- leases and the intent ---------------------------------------------------------

    def release_lease(self, lease: Lease, *, withdraw_intent: bool = False) -> bool:
        with self._locked() as state:
            leases = state["leases"]
            held = self._live_lease(leases.get(lease.purpose)) is not None and (
                leases[lease.purpose]["token"] == lease.token
            )
            if held:
                del leases[lease.purpose]
            intent = state.get("intent")
            if withdraw_intent and intent is not None and intent.get("token") == lease.token:
                state["intent"] = None
            self._save_state(state)
        return held

    def record_intent(self, lease: Lease, *, version: int, refresh_token: str) -> IntentResult:
        if lease.purpose != "refresh":
            raise StoreError("an intent needs the refresh lease")
        started = self._clock.monotonic()
        with self._locked() as state:
            record = self._live_lease(state["leases"].get("refresh"))
            if record is None or record["token"] != lease.token:
                return IntentResult(recorded=False, acknowledged=False, reason="lease")
            left = self._remaining(record)
            lease_deadline = started + left
            snap = self._snapshot(state, with_pending=False)

            def refused(reason: str) -> IntentResult:
                return IntentResult(
                    recorded=False,
                    acknowledged=False,
                    reason=reason,
                    lease_deadline=lease_deadline,
                    current_version=snap.version,
                )

            if snap.version != version:
                return refused("version")
            if snap.state is not RecordState.LIVE:
                return refused("state")
            intent = state.get("intent")
            if (
                intent is not None
                and intent.get("token") != lease.token
                and self._remaining(intent) > 0
            ):
                return refused("intent")
            span = left + self._grace
            state["intent"] = {
                "owner": lease.owner,
                "token": lease.token,
                "fp": fingerprint(refresh_token),
                "version": version,
                "exp": self._clock.time() + span,
                "span": span,
            }
            self._save_state(state)
        # A file system has no replicas: what is written is all there is.
        return IntentResult(
            recorded=True,
            acknowledged=True,
            lease_deadline=lease_deadline,
            current_version=version,
        )

    # -- writes ------------------------------------------------------------------------

    def commit(self, expected_version: int, tokens: TokenSet, *, now: float) -> WriteResult:
        with self._locked() as state:
            current = self._snapshot(state, with_pending=False).version
            if current != expected_version:
                return WriteResult(ok=False, version=current)
            new = next_version(max(current, int(state["hw"])), now)
            return self._write_live(state, tokens, new)

    def republish(self, held_version: int, tokens: TokenSet) -> WriteResult:
        if held_version <= 0:
            raise StoreError("only a version this process holds can be republished")
        with self._locked() as state:
            current = self._snapshot(state, with_pending=False).version
            if current >= held_version:
                return WriteResult(ok=False, version=current)
            return self._write_live(state, tokens, held_version)

    def tombstone(self, *, now: float) -> WriteResult:
        with self._locked() as state:
            current = self._snapshot(state, with_pending=False).version
            newest = max(current, int(state["hw"]))
            return self._write_gone(state, "tombstone", next_version(newest, now))

    def mark_revoked(self, expected_version: int, *, now: float) -> WriteResult:
        with self._locked() as state:
            current = self._snapshot(state, with_pending=False).version
            if current != expected_version:
                return WriteResult(ok=False, version=current)
            newest = max(current, int(state["hw"]))
            return self._write_gone(state, "revoked", next_version(newest, now))

    def offer_pending(self, record: Mapping[str, object]) -> bool:
        with self._locked():
            if self._cache.load_pending() is not None:
                return False
            return self._cache.save_pending(record)

    def replace_pending(
        self, expected: Mapping[str, object], record: Optional[Mapping[str, object]]
    ) -> bool:
        with self._locked():
            if self._cache.load_pending() != dict(expected):
                return False
            if record is None:
                self._cache.clear_pending()
                return True
            return self._cache.save_pending(record)

    def clear_pending(self) -> None:
        self._cache.clear_pending()

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Holds the cache's flock for one operation and yields the state to work on."""
        with self._cache.lock(self._lock_wait) as acquired:
            if not acquired:
                raise StoreUnavailable(
                    f"token store {self.location} stayed locked for {self._lock_wait:g} s"
                )
            yield self._load_state()

    def _load_state(self) -> dict[str, Any]:
        raw = self._cache.load_store_state()
        if raw is None:
            return {"hw": 0, "gone": None, "leases": {}, "intent": None}
        document = json_object(raw, f"token store state {self._cache.store_path}")
        hw, gone, leases = document.get("hw"), document.get("gone"), document.get("leases")
        if (
            isinstance(hw, bool)
            or not isinstance(hw, int)
            or gone not in (None, *_GONE)
            or not isinstance(leases, dict)
        ):
            # Guessing here could hand a spent refresh token to a second process.
            raise StoreError(
                f"the token store state {self._cache.store_path} is malformed; "
                "fix: remove it (and log in again if the hosts disagree)"
            )
        document.setdefault("intent", None)
        return document

    def _save_state(self, state: Mapping[str, Any]) -> None:
        payload = json.dumps(dict(state), separators=(",", ":")).encode("utf-8")
        problem = self._cache.save_store_state(payload)
        if problem is not None:
            raise StoreError(
                f"cannot write the token store state {self._cache.store_path} ({problem})",
                retryable=True,
            )

    def _snapshot(self, state: Mapping[str, Any], *, with_pending: bool) -> Snapshot:
        hw = int(state["hw"])
        try:
            tokens, field_version = self._cache.load_versioned()
        except CacheDecryptionError as exc:
            raise StoreError(str(exc)) from None
        if tokens is not None:
            if field_version is not None:
                version, record_state = field_version, RecordState.LIVE
            else:
                saved = self._cache.saved_at() or 0.0
                version, record_state = max(int(saved * 1000), hw + 1), RecordState.LIVE
        elif state["gone"] is not None:
            version, record_state = hw, _GONE[state["gone"]]
        elif hw > 0:
            # Removed by the .NET tool or an older SDK: a logout, newer than anything held.
            version, record_state = hw + 1, RecordState.TOMBSTONE
        else:
            version, record_state = 0, RecordState.EMPTY
        lease = self._live_lease(state["leases"].get("refresh"))
        return Snapshot(
            version=version,
            state=record_state,
            tokens=tokens,
            pending=self._cache.load_pending() if with_pending else None,
            intent=self._intent(state.get("intent")),
            lease_owner=None if lease is None else str(lease["owner"]),
            lease_remaining=0.0 if lease is None else self._remaining(lease),
        )

    def _intent(self, record: Optional[Mapping[str, Any]]) -> Optional[IntentInfo]:
        if record is None:
            return None
        left = self._remaining(record)
        if left <= 0:
            return None
        return IntentInfo(
            owner=str(record["owner"]),
            fingerprint=str(record["fp"]),
            version=int(record["version"]),
            remaining=left,
        )

    def _try_lease(
        self, owner: str, token: str, purpose: str, ttl: float, *, renew: bool
    ) -> Lease | float:
        """The lease when taken, else the holder's remaining seconds."""
        started = self._clock.monotonic()
        with self._locked() as state:
            current = self._live_lease(state["leases"].get(purpose))
            mine = current is not None and current["token"] == token
            if not mine and (renew or current is not None):
                return 0.0 if current is None else self._remaining(current)
            now = self._clock.time()
            state["leases"][purpose] = {
                "owner": owner,
                "token": token,
                "pid": os.getpid(),
                "host": self._host,
                "exp": now + ttl,
                "span": ttl,
            }
            intent = state.get("intent")
            if renew and intent is not None and intent.get("token") == token:
                # The intent keeps outliving the lease by its grace, however long it lasts.
                span = ttl + self._grace
                intent.update(exp=max(float(intent["exp"]), now + span), span=span)
            self._save_state(state)
        return Lease(owner=owner, token=token, purpose=purpose, deadline=started + ttl)

    def _live_lease(self, record: Optional[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
        """The lease record while it holds: unexpired, and its process alive if it is ours."""
        if record is None or self._remaining(record) <= 0:
            return None
        if record.get("host") == self._host and not _alive(int(record.get("pid", 0))):
            return None
        return record

    def _remaining(self, record: Mapping[str, Any]) -> float:
        left = float(record["exp"]) - self._clock.time()
        return max(0.0, min(left, float(record["span"])))

    def _write_live(self, state: dict[str, Any], tokens: TokenSet, version: int) -> WriteResult:
        if not self._cache.save(tokens, version=version):
            raise StoreError(
                f"cannot write the token cache {self._cache.path} (see the warning logged)",
                retryable=True,
            )
        state.update(hw=max(int(state["hw"]), version), gone=None, intent=None)
        self._save_state(state)
        self._cache.clear_pending()
        return WriteResult(ok=True, version=version)

    def _write_gone(self, state: dict[str, Any], why: str, version: int) -> WriteResult:
        if not self._cache.clear():
            raise StoreError(f"cannot remove the token cache {self._cache.path}", retryable=True)
        state.update(hw=max(int(state["hw"]), version), gone=why, intent=None)
        self._save_state(state)
        self._cache.clear_pending()
        return WriteResult(ok=True, version=version)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists and belongs to someone else
    return True
