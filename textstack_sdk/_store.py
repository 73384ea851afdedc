"""The token store protocol: what the token manager needs from a store shared by processes.

Values and a protocol only; no I/O. Three stores implement it: a manager's own cache
(``_cache_store``, one host, the default), ``_file_store`` (one host's processes, passed
explicitly) and :class:`~textstack_sdk._redis_store.RedisTokenStore` (a fleet of hosts).

The record
    One record per store: a **version**, a **state** (``empty``, ``live``, ``tombstone``
    after a logout, ``revoked`` after the auth server refused the refresh token), the tokens
    when live, the pending shared sign-in when one is open, and the live **intent** (a
    process has said it is about to spend the current refresh token). :meth:`TokenStore.load`
    returns all of it as one :class:`Snapshot`, read atomically.

Versions
    Every change that is not a lease or an intent gives the record a new version, chosen by
    :func:`next_version`: ``max(current + 1, now in milliseconds)``. Versions only grow, and
    a version written after a store lost its data (a flush, a failover that dropped writes)
    is still higher than any version issued before the loss. That needs ONE clock for every
    writer: a store shared by hosts takes ``now`` from its server (Redis's ``TIME``), never
    from the writing host, whose clock may be minutes off (ahead, it would lift versions
    out of reach of any write after a loss; behind, a login after a loss would look older
    than what the hosts hold). What remains is the skew between the servers themselves
    (a promoted replica's clock against its old master's), which must stay below the time
    a failover takes. A process whose snapshot has a
    version HIGHER than the store's therefore knows the store went backwards, and may
    republish (:meth:`TokenStore.republish`, accepted only while the store's version is
    lower); a logout made after the loss carries a higher version than anything the hosts
    hold, so it is never mistaken for lost data and undone.

Leases and intents
    A lease is advisory mutual exclusion with a time to live: it keeps hosts from working
    twice, never guards correctness alone. Correctness rests on two atomic steps:

    - :meth:`TokenStore.record_intent` checks, in one step, that the caller still holds the
      lease, that the record still has the version the caller read after taking it, and
      that no other owner's intent is alive; then it records the intent, which outlives the
      lease by a grace period so that a holder paused past its lease is waited for before
      anyone touches the refresh token it may have spent. Where the store has replicas, the
      intent is acknowledged by one before the caller may send anything
      (:attr:`IntentResult.may_send`).
    - :meth:`TokenStore.commit` is a compare-and-swap on the version; a paused holder's late
      commit finds a newer version and is refused.

How the file cache maps onto it
    Two stores, two mappings (each module's docstring has the details):

    - ``_cache_store.CacheStore``, a manager's own cache (the default, one host). The lease
      is the cache's ``flock``, held for the whole refresh by the thread that took it (the
      kernel ends it when the holder dies, so its TTL is the holder's life; a lease not had
      within the caller's bounded wait ends the run, ``Outcome.busy``). The version is the
      store's in-memory count of the distinct cache contents it has read, so it never goes
      backwards and :meth:`TokenStore.republish` has nothing to heal; the CAS is "the file
      has not changed since it was read". The intent is the spend record in the lock file
      (``_spend_marker``: owner and :func:`fingerprint`), blanked with the lease unless a
      save failed: then it stands while its owner lives and others see it as
      :attr:`IntentInfo.unsaved` (fail at once; waiting cannot help). No file cache has
      replicas, so ``acknowledged`` is always true. A logout or a refused refresh token
      deletes the file (empty, for every reader and the .NET tool). It keeps no pending
      sign-in (``offer_pending``/``replace_pending`` raise; the shared-flow file does that
      job) and :meth:`TokenStore.wait_for_change` does not wait (nothing ever asks it to).
    - ``_file_store.FileTokenStore``, passed explicitly, implements the whole protocol as
      Redis does: a ``version`` field in the cache file, leases and intents with a TTL in a
      state file beside it, each operation atomic under the ``flock``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import random
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Union

from ._clock import Clock
from ._errors import ConfigurationError, TextStackError
from ._models import TokenSet

__all__ = [
    "ENV_TOKEN_STORE",
    "IntentResult",
    "Lease",
    "LeaseTaking",
    "RecordState",
    "RefreshStore",
    "Snapshot",
    "StoreError",
    "StoreUnavailable",
    "TokenCipher",
    "TokenStore",
    "WriteResult",
    "acquire_within",
    "check_range",
    "decode_tokens",
    "encode_tokens",
    "fingerprint",
    "json_object",
    "next_version",
    "wait_for_version",
]

# The fleet store's URL; read where a manager decides whether it has a store at all, so
# that deciding "no" costs no import of the Redis store.
ENV_TOKEN_STORE = "TEXTSTACK_TOKEN_STORE"


class StoreError(TextStackError):
    """The token store refused or could not do what was asked.

    Attributes:
        retryable: Whether trying again later may succeed.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class StoreUnavailable(StoreError):
    """The store could not be reached in time (network, timeout, failover in progress)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class RecordState(str, enum.Enum):
    """What the record says about the fleet's login."""

    EMPTY = "empty"
    """No record at all: never logged in, or the store lost its data."""
    LIVE = "live"
    TOMBSTONE = "tombstone"
    """A deliberate logout: hosts drop their tokens rather than republish them."""
    REVOKED = "revoked"
    """The auth server refused the refresh token; hosts stop without calling it again."""


class TokenCipher(Protocol):
    """What a store needs from a cipher. Implementations must be thread-safe.

    ``kind`` names the store kind and ``identity`` the place inside it; both are bound to
    the ciphertext as associated data, so a record copied elsewhere does not decrypt.
    """

    def encrypt(self, plaintext: bytes, *, kind: str, identity: str) -> bytes: ...

    def decrypt(self, ciphertext: bytes, *, kind: str, identity: str) -> bytes: ...


@dataclass(frozen=True)
class Lease:
    """A lease held by this process. Immutable; thread-safe.

    Attributes:
        owner: Who holds it, as shown to operators (host and process; not secret).
        token: The random value that proves this acquisition; renew and release need it.
        purpose: Which lease (``refresh``, or ``poll`` for the shared sign-in's poller).
        deadline: Monotonic time by which it has surely expired, measured from before the
            request that took it, so the holder never believes it holds it longer than
            the store does.
    """

    owner: str
    token: str = field(repr=False)
    purpose: str
    deadline: float

    def remaining(self, now: float) -> float:
        """Seconds of the lease left at monotonic time ``now`` (0 once expired)."""
        return max(0.0, self.deadline - now)


@dataclass(frozen=True)
class IntentInfo:
    """A live intent to spend the current refresh token, as seen in a snapshot. Immutable."""

    owner: str
    fingerprint: str
    version: int
    remaining: float
    unsaved: bool = False
    """Its owner is alive and holds the rotated tokens it could not save (a local store):
    waiting cannot help, the caller fails at once."""


@dataclass(frozen=True)
class Snapshot:
    """The whole record, read at once. Immutable; thread-safe.

    Attributes:
        version: 0 when the store has no record.
        state: See :class:`RecordState`.
        tokens: The tokens when ``state`` is live.
        pending: The shared sign-in in progress, when one is open (holds a device code:
            never shown).
        intent: The live intent to spend ``tokens.refresh_token``, if any.
        lease_owner: Who holds the refresh lease now, for status displays.
        lease_remaining: Seconds left on that lease (0 when nobody holds it).
    """

    version: int
    state: RecordState
    tokens: Optional[TokenSet] = None
    pending: Optional[Mapping[str, object]] = field(default=None, repr=False)
    intent: Optional[IntentInfo] = None
    lease_owner: Optional[str] = None
    lease_remaining: float = 0.0

    def regressed_from(self, held_version: int) -> bool:
        """Whether the store went backwards from a version this process holds."""
        return self.version < held_version


@dataclass(frozen=True)
class IntentResult:
    """The answer to :meth:`TokenStore.record_intent`. Immutable.

    Attributes:
        recorded: The intent is in the store.
        acknowledged: A replica has it too (always true where the store has no replicas).
        reason: Why not, when not: ``lease`` (not held), ``version`` (the record changed:
            re-read it), ``state`` (not live), ``intent`` (another owner's intent is alive),
            ``replica`` (no replica acknowledged in time).
        lease_deadline: Monotonic time by which the lease has surely expired.
        current_version: The store's version when refused for ``version``.
    """

    recorded: bool
    acknowledged: bool
    reason: str = ""
    lease_deadline: float = 0.0
    current_version: int = 0

    @property
    def may_send(self) -> bool:
        """Whether the refresh request may be sent at all."""
        return self.recorded and self.acknowledged

    def request_budget(self, now: float, wanted: float) -> Optional[float]:
        """The timeout to give the refresh request, or None: send nothing.

        The request must end inside the lease, so its timeout is cut to what is left;
        a lease with less than ``wanted`` left sends nothing rather than a request that
        could outlive it.
        """
        if not self.may_send:
            return None
        left = self.lease_deadline - now
        if left < wanted:
            return None
        return wanted


@dataclass(frozen=True)
class WriteResult:
    """The answer to a conditional write. Immutable.

    Attributes:
        ok: The write happened.
        version: The record's version after the call (the new one when ``ok``).
        acknowledged: A replica has the write too (always true where the store has no
            replicas, and for writes that do not wait for one). A logout that no replica
            acknowledged is lost if the store fails over now: its host keeps no tokens
            to heal the store from, so the fleet would stay logged in. Live tokens no
            replica acknowledged are held as unsaved by their writer and written again.
    """

    ok: bool
    version: int
    acknowledged: bool = True


class RefreshStore(Protocol):
    """What the one refresh path (``FleetRefresher``) needs from a store: the record, the
    refresh lease, the intent and the writes. Implementations must be thread-safe.

    Every method that talks to the store raises :class:`StoreUnavailable` when it cannot
    reach it within its bounded time, and :class:`StoreError` for a record it cannot read.
    One host's own cache (``_cache_store.CacheStore``) is a ``RefreshStore``: its pending
    sign-in lives in the cache's own files. A store shared by hosts is a
    :class:`TokenStore`, which keeps the fleet's pending sign-in too.
    """

    def load(self) -> Snapshot:
        """The record as it is now, read atomically."""
        ...

    def acquire_lease(
        self, owner: str, *, ttl: float, wait: float, purpose: str = "refresh"
    ) -> Optional[Lease]:
        """Takes the lease, waiting at most ``wait`` seconds for its holder; None if not."""
        ...

    def renew_lease(self, lease: Lease, *, ttl: float) -> Optional[Lease]:
        """Extends a lease still held, and this holder's intent with it; None when lost.

        The intent keeps outliving the lease by its grace period, however long the lease
        is renewed for.
        """
        ...

    def release_lease(self, lease: Lease, *, withdraw_intent: bool = False) -> bool:
        """Gives the lease back if still held; also drops this holder's intent on request.

        Withdraw the intent only when the refresh request was never sent: a sent request
        may have spent the token, and the intent must then stay until it expires.
        """
        ...

    def record_intent(self, lease: Lease, *, version: int, refresh_token: str) -> IntentResult:
        """Records the intent to spend ``refresh_token``, atomically with the lease check."""
        ...

    def commit(self, expected_version: int, tokens: TokenSet, *, now: float) -> WriteResult:
        """Compare-and-swap: writes live ``tokens`` only if the version is unchanged.

        Clears the intent and the pending sign-in. ``now`` is wall-clock seconds, for
        :func:`next_version`, used by a store that has no clock of its own to read.
        """
        ...

    def republish(self, held_version: int, tokens: TokenSet) -> WriteResult:
        """Writes ``tokens`` at ``held_version`` only if the store's version is lower."""
        ...

    def tombstone(self, *, now: float) -> WriteResult:
        """Logs the fleet out: a tombstone with a new version, no tokens, no pending.

        Waits for a replica's acknowledgement as :meth:`record_intent` does, and says in
        :attr:`WriteResult.acknowledged` whether it came.
        """
        ...

    def mark_revoked(self, expected_version: int, *, now: float) -> WriteResult:
        """Marks the record revoked, only if it still has ``expected_version``."""
        ...

    def wait_for_change(self, version: int, *, timeout: float) -> Optional[Snapshot]:
        """Waits at most ``timeout`` seconds for a version other than ``version``.

        Leases, intents and the pending sign-in do not change the version: a host that
        watches a sign-in's outcome reads :meth:`load` for it.
        """
        ...

    def close(self) -> None:
        """Releases connections; safe to call twice."""
        ...


class TokenStore(RefreshStore, Protocol):
    """A token record shared by hosts (Redis, or a file with expiring leases): a
    :class:`RefreshStore` that also keeps the fleet's one pending sign-in. Implementations
    must be thread-safe.
    """

    def offer_pending(self, record: Mapping[str, object]) -> bool:
        """Stores a pending shared sign-in unless one is already open; True if stored."""
        ...

    def replace_pending(
        self, expected: Mapping[str, object], record: Optional[Mapping[str, object]]
    ) -> bool:
        """Compare-and-swap on the pending sign-in: only while it is still ``expected``
        (as read from a snapshot), writes ``record`` in its place, or drops it when None.

        How a host replaces an expired sign-in (one host wins, the others adopt its
        record), and how the poller writes the outcome and then closes the sign-in
        without dropping one that took its place. True if done.
        """
        ...

    def clear_pending(self) -> None:
        """Drops the pending shared sign-in, whichever it is (a logout)."""
        ...


def next_version(current: int, now: float) -> int:
    """The version of the next write: higher than ``current`` and not below ``now`` in ms."""
    return max(current + 1, math.floor(now * 1000))


def fingerprint(refresh_token: str) -> str:
    """A short, one-way name for a refresh token (or another secret of high entropy, such
    as a record holding a device code), safe to store beside it."""
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()[:32]


def encode_tokens(tokens: TokenSet) -> bytes:
    """The record's token payload (before any encryption)."""
    document = {"a": tokens.access_token, "r": tokens.refresh_token, "e": tokens.access_exp}
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def decode_tokens(payload: bytes) -> TokenSet:
    """Reads what :func:`encode_tokens` wrote.

    Raises:
        StoreError: The payload is not a token record (the message never quotes it).
    """
    document = json_object(payload, "token record")
    access, refresh, exp = document.get("a"), document.get("r"), document.get("e")
    if not isinstance(access, str) or not access:
        raise StoreError("the stored token record has no access token")
    if refresh is not None and not isinstance(refresh, str):
        raise StoreError("the stored token record has a malformed refresh token")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, (int, float))):
        raise StoreError("the stored token record has a malformed expiry")
    return TokenSet(
        access_token=access,
        refresh_token=refresh or None,
        access_exp=None if exp is None else float(exp),
    )


def json_object(payload: bytes, what: str) -> dict[str, object]:
    """A stored JSON object; StoreError naming ``what`` (never quoting it) otherwise."""
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise StoreError(f"the stored {what} is not readable JSON") from None
    if not isinstance(document, dict):
        raise StoreError(f"the stored {what} is not a JSON object")
    return document


def check_range(name: str, value: float, low: float, high: float) -> None:
    """ConfigurationError unless ``value`` is a number of seconds in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g} seconds")


def jittered(interval: float) -> float:
    """``interval`` times 0.5 to 1.5: hosts that woke together stop polling in lockstep."""
    return interval * (0.5 + random.random())  # noqa: S311 - spacing, not a secret


_NEVER = threading.Event()


def acquire_within(
    attempt: Callable[[], Union[Lease, float]], *, wait: float, clock: Clock, poll: float
) -> Optional[Lease]:
    """Calls ``attempt`` until it returns a lease or ``wait`` seconds have passed.

    ``attempt`` returns the lease, or the seconds the current holder has left (0 when
    unknown), so a waiter never sleeps past the moment the lease falls free.
    """
    deadline = clock.monotonic() + wait
    while True:
        got = attempt()
        if isinstance(got, Lease):
            return got
        left = deadline - clock.monotonic()
        if left <= 0:
            return None
        clock.wait(min(left, got if got > 0 else poll, jittered(poll)), _NEVER)


_OWNER = re.compile(r"[^\n]{1,200}")


class LeaseTaking:
    """``acquire_lease`` and ``renew_lease`` over a store's one-shot ``_try_lease``.

    Thread-safe when ``_try_lease`` is. A base class for the stores, not a public type.
    """

    _clock: Clock
    _poll: float

    def _try_lease(
        self, owner: str, token: str, purpose: str, ttl: float, *, renew: bool
    ) -> Union[Lease, float]:
        """The lease when taken (or renewed), else the holder's remaining seconds."""
        raise NotImplementedError

    def acquire_lease(
        self, owner: str, *, ttl: float, wait: float, purpose: str = "refresh"
    ) -> Optional[Lease]:
        if not _OWNER.fullmatch(owner):
            raise ConfigurationError("a lease owner is 1-200 characters without a newline")
        check_range("ttl", ttl, 0.001, 3600.0)
        check_range("wait", wait, 0.0, 3600.0)
        token = secrets.token_hex(16)
        return acquire_within(
            lambda: self._try_lease(owner, token, purpose, ttl, renew=False),
            wait=wait,
            clock=self._clock,
            poll=self._poll,
        )

    def renew_lease(self, lease: Lease, *, ttl: float) -> Optional[Lease]:
        check_range("ttl", ttl, 0.001, 3600.0)
        renewed = self._try_lease(lease.owner, lease.token, lease.purpose, ttl, renew=True)
        return renewed if isinstance(renewed, Lease) else None


def wait_for_version(
    load: Callable[[], Snapshot], version: int, *, timeout: float, clock: Clock, poll: float
) -> Optional[Snapshot]:
    """Polls ``load`` until the version is not ``version``; None after ``timeout`` seconds."""
    check_range("timeout", timeout, 0.0, 3600.0)
    deadline = clock.monotonic() + timeout
    while True:
        snapshot = load()
        if snapshot.version != version:
            return snapshot
        left = deadline - clock.monotonic()
        if left <= 0:
            return None
        clock.wait(min(left, jittered(poll)), _NEVER)
