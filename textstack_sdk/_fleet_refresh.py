"""The refresh protocol of a fleet sharing one token store: every decision, and no I/O.

The caller (the token manager) reads the store, asks one of these functions what to do,
does it, and asks again with what it got back. Each function takes what was read and
what this process holds, and returns one :class:`Decision`; it never reads a clock, a
file or a socket, so the whole protocol is tested as tables.

The protocol, step by step (the caller's loop; each arrow is a call here):

1. Read the record → :func:`on_read` with no lease. The store went backwards (a version
   below the one held): republish what is held. A tombstone or a revoked record: drop
   the tokens. A fresh access token in the store: adopt it. Someone holds the lease or
   an intent is alive: wait for the version to change, at most as long as either has
   left. Otherwise take the lease.
2. Holding the lease, READ AGAIN → :func:`on_read` with the lease left. Another host may
   have refreshed while this one waited: adopt its tokens. Otherwise record the intent
   to spend THIS read's refresh token (never one read before the lease), provided the
   lease left covers the whole request.
3. The intent's answer → :func:`on_intent`. Recorded and acknowledged by a replica, and
   the lease left covers the request: send it with its timeout cut to the lease. Anything
   else: send nothing (withdrawing the intent, since nothing was spent).
4. The auth server's answer → :func:`on_response`. New tokens: keep them in memory AT
   ONCE (they are the only copy of a live refresh token), then commit by CAS on the
   version read in step 2. ``invalid_grant``: read again → :func:`on_refused`. A failure
   that may have spent the token (timeout, 5xx, lost connection): fail retryably and
   leave the intent to expire, so nobody presents that token within the grace.
5. A refused commit → read again → :func:`on_commit_refused`: a newer record from another
   host wins (adopt it; this was a paused holder's late commit); a tombstone wins (drop);
   a store that went backwards, or a newer record that still holds the refresh token
   just spent, is overwritten with the new tokens.
6. A refused refresh → :func:`on_refused`: the refresh token in the store changed, so a
   sibling rotated: adopt. Unchanged: mark the record revoked, once, by CAS on its
   version, so the other hosts stop without calling the auth server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from ._models import TokenSet
from ._store import IntentResult, RecordState, Snapshot

__all__ = [
    "Decision",
    "Held",
    "Response",
    "Step",
    "fresh",
    "on_commit_refused",
    "on_intent",
    "on_read",
    "on_refused",
    "on_response",
]


class Step(str, enum.Enum):
    """What the caller does next."""

    USE = "use"
    """The held tokens are good; nothing to write."""
    ADOPT = "adopt"
    """Take ``tokens`` at ``version`` from the store into memory."""
    REPUBLISH = "republish"
    """The store went backwards: write the held ``tokens`` at ``version`` (CAS: lower only)."""
    PUBLISH = "publish"
    """The store is empty and this process holds a login: commit it on version 0."""
    DROP = "drop"
    """Forget the tokens in memory (logout, revoked); ``reason`` says why."""
    TAKE_LEASE = "take_lease"
    WAIT = "wait"
    """Wait at most ``timeout`` seconds for the store's version to leave ``version``."""
    RECORD_INTENT = "record_intent"
    """Record the intent to spend ``tokens.refresh_token`` at ``version``."""
    SEND = "send"
    """Send the refresh request with ``tokens.refresh_token``, timing out at ``timeout``."""
    COMMIT = "commit"
    """Keep ``tokens`` in memory now, then CAS them onto ``version``."""
    REREAD = "reread"
    """Read the record again and ask :func:`on_read` (or the step's own follow-up)."""
    MARK_REVOKED = "mark_revoked"
    """Mark the record revoked by CAS on ``version``; then read again."""
    FAIL = "fail"
    """Stop this attempt: ``Failed(retryable=retryable)`` with ``reason``."""


@dataclass(frozen=True)
class Decision:
    """One step of the protocol. Immutable.

    Attributes:
        step: What to do.
        tokens: The tokens the step works with (adopt, republish, intent, send, commit).
        version: The version the step is about (see :class:`Step`).
        timeout: Seconds for ``WAIT`` and ``SEND``.
        release: Give the lease back first (when one is held).
        withdraw: With ``release``: drop the intent too (only when nothing was sent).
        retryable: For ``FAIL`` and ``DROP``: whether trying later may succeed.
        reason: Why, in words fit for a log or an exception (never a secret).
    """

    step: Step
    tokens: Optional[TokenSet] = None
    version: int = 0
    timeout: float = 0.0
    release: bool = False
    withdraw: bool = False
    retryable: bool = False
    reason: str = ""

    def __repr__(self) -> str:
        # The tokens are secrets; the decision's shape is what a log needs.
        held = "tokens" if self.tokens is not None else "no tokens"
        return (
            f"Decision({self.step.value}, version={self.version}, timeout={self.timeout:g}, "
            f"release={self.release}, {held}, reason={self.reason!r})"
        )


@dataclass(frozen=True)
class Held:
    """What this process holds in memory: tokens and the version they came with. Immutable.

    ``version`` is 0 for tokens the store never had (a login made before the store).
    ``unsaved`` marks tokens a refresh got that the store has not taken yet (it became
    unreachable before the commit): ``version`` is then the one the refresh started from,
    and they are the only copy of a live refresh token.
    """

    tokens: Optional[TokenSet]
    version: int
    unsaved: bool = False

    def __repr__(self) -> str:
        has = "yes" if self.tokens else "no"
        return f"Held(version={self.version}, tokens={has}, unsaved={self.unsaved})"


class Response(str, enum.Enum):
    """How the refresh request ended."""

    TOKENS = "tokens"
    REFUSED = "refused"
    """``invalid_grant``: the refresh token is spent, expired or revoked."""
    FAILED = "failed"
    """No answer that can be trusted (timeout, 5xx, connection lost): it may have spent it."""


def fresh(tokens: Optional[TokenSet], now: float, margin: float) -> bool:
    """Whether the access token is good for ``margin`` seconds past wall time ``now``."""
    return tokens is not None and tokens.access_exp is not None and now < tokens.access_exp - margin


def on_read(
    snap: Snapshot,
    held: Held,
    *,
    now: float,
    margin: float,
    lease_left: Optional[float] = None,
    request_timeout: float,
    max_wait: float,
    refused: Optional[str] = None,
) -> Decision:
    """The step after reading the record; ``lease_left`` is None unless the lease is held.

    Args:
        snap: What was just read.
        held: What this process holds.
        now: Wall-clock seconds, for the access token's expiry.
        margin: Seconds before expiry at which a token no longer counts as fresh.
        lease_left: Seconds of the lease left, measured now, when this process holds it.
        request_timeout: The whole deadline a refresh request needs.
        max_wait: The longest this caller may wait for another host.
        refused: An access token the API refused (401): never fresh, whatever its exp.
    """
    release = lease_left is not None
    if held.unsaved and held.tokens is not None and snap.version <= held.version:
        # The store still has the refresh token this process spent (or went back even
        # further): whoever read it would present a spent token. Ours go in first.
        return Decision(
            Step.COMMIT,
            tokens=held.tokens,
            version=snap.version,
            release=release,
            reason="saving the tokens of a refresh the store missed",
        )
    if held.tokens is not None and snap.regressed_from(held.version):
        return Decision(
            Step.REPUBLISH,
            tokens=held.tokens,
            version=held.version,
            release=release,
            reason="the store went back to an older version; republishing the newer tokens",
        )
    ended = _ended(snap, release)
    if ended is not None:
        return ended
    if snap.state is RecordState.EMPTY or snap.tokens is None:
        if held.tokens is not None and held.version == 0:
            return Decision(
                Step.PUBLISH,
                tokens=held.tokens,
                release=release,
                reason="the store is empty; publishing this process's login",
            )
        return Decision(Step.FAIL, release=release, reason="not logged in: run `textstack login`")
    stored = snap.tokens
    if fresh(stored, now, margin) and stored.access_token != refused:
        if stored == held.tokens and snap.version == held.version:
            return Decision(Step.USE, tokens=stored, version=snap.version, release=release)
        return _adopt(snap, release, "another process refreshed")
    if not stored.refresh_token:
        return Decision(
            Step.FAIL, release=release, reason="no refresh token: run `textstack login`"
        )
    intent = snap.intent
    if intent is not None and intent.unsaved:
        # Presenting that token again would revoke the family, the owner's live tokens too.
        return Decision(
            Step.FAIL,
            release=release,
            retryable=True,
            reason="another process holds newer tokens it could not save (is the disk full?)",
        )
    if intent is not None and intent.remaining > 0:
        # Its owner (never this attempt: an intent of ours is followed by the request, not
        # by a read) may have spent the refresh token already: wait for its commit, or for
        # its grace to run out (its owner counts as dead then), before anyone touches it.
        return _wait(snap.version, intent.remaining, max_wait, release, "an intent is in flight")
    if lease_left is None:
        if snap.lease_owner is not None and snap.lease_remaining > 0:
            return _wait(
                snap.version, snap.lease_remaining, max_wait, False, "another host is refreshing"
            )
        return Decision(Step.TAKE_LEASE, version=snap.version)
    if lease_left < request_timeout:
        return Decision(
            Step.FAIL,
            release=True,
            withdraw=True,
            retryable=True,
            reason="the lease left is shorter than a refresh request; nothing was sent",
        )
    return Decision(Step.RECORD_INTENT, tokens=stored, version=snap.version)


def _wait(version: int, left: float, max_wait: float, release: bool, why: str) -> Decision:
    if max_wait <= 0:
        return Decision(
            Step.FAIL, release=release, retryable=True, reason=f"{why}; not waiting for it"
        )
    return Decision(
        Step.WAIT, version=version, timeout=min(left, max_wait), release=release, reason=why
    )


_REVOKED = "the refresh token was refused by TextStack: run `textstack login`"


def on_intent(result: IntentResult, *, mono_now: float, request_timeout: float) -> Decision:
    """The step after :meth:`~textstack_sdk._store.TokenStore.record_intent` answered.

    Args:
        result: The store's answer.
        mono_now: Monotonic seconds, measured after the answer came back.
        request_timeout: The whole deadline a refresh request needs.
    """
    if not result.recorded:
        if result.reason == "lease":
            return Decision(
                Step.FAIL, release=True, retryable=True, reason="the refresh lease was lost"
            )
        # version / state / intent: the record moved on, or someone is mid-refresh.
        return Decision(Step.REREAD, release=True, reason=f"intent refused ({result.reason})")
    if not result.acknowledged:
        why = result.reason
        if why in ("", "replica"):
            why = "no replica acknowledged the intent in time"
        return Decision(
            Step.FAIL,
            release=True,
            withdraw=True,
            retryable=True,
            reason=f"{why}; nothing was sent",
        )
    budget = result.request_budget(mono_now, request_timeout)
    if budget is None:
        return Decision(
            Step.FAIL,
            release=True,
            withdraw=True,
            retryable=True,
            reason="the lease left is shorter than a refresh request; nothing was sent",
        )
    return Decision(Step.SEND, timeout=budget)


def on_response(response: Response, *, version: int, tokens: Optional[TokenSet]) -> Decision:
    """The step after the refresh request ended.

    Args:
        response: How it ended.
        version: The version the intent was recorded on (the CAS's expected version).
        tokens: The new tokens, for ``Response.TOKENS``.
    """
    if response is Response.TOKENS:
        assert tokens is not None
        return Decision(Step.COMMIT, tokens=tokens, version=version)
    if response is Response.REFUSED:
        return Decision(Step.REREAD, reason="the refresh token was refused")
    # The request may have reached the server and spent the token: the intent stays (no
    # withdrawal) and keeps every host away from that token for its grace.
    return Decision(
        Step.FAIL,
        release=True,
        retryable=True,
        reason="the refresh request failed; it may have been spent, so it is not retried now",
    )


def on_commit_refused(
    snap: Snapshot, *, expected: int, tokens: TokenSet, spent: Optional[str] = None
) -> Decision:
    """After a refused commit of fresh ``tokens`` on ``expected``, and a new read ``snap``.

    ``spent`` is the refresh token the refresh that got ``tokens`` presented, when known.
    """
    if snap.version < expected:
        # The store lost the record this refresh started from: the new tokens are the
        # newest truth there is, so they go in on whatever version it has now.
        return Decision(
            Step.COMMIT,
            tokens=tokens,
            version=snap.version,
            reason="the store went back while refreshing; writing the new tokens",
        )
    ended = _ended(snap, True)
    if ended is not None:
        return ended
    if snap.state is RecordState.LIVE and snap.tokens is not None:
        if spent is not None and snap.tokens.refresh_token == spent:
            # Newer only in name (a writer outside the lease wrote back what it had read):
            # adopting it would present the spent token again and revoke the family.
            return Decision(
                Step.COMMIT,
                tokens=tokens,
                version=snap.version,
                reason="the store holds the refresh token just spent; writing the new tokens",
            )
        return _adopt(snap, True, "a newer record won (this commit came late)")
    return Decision(Step.FAIL, release=True, reason="not logged in: run `textstack login`")


def on_refused(snap: Snapshot, *, spent: TokenSet, version: int, unsaved: bool = False) -> Decision:
    """After ``invalid_grant`` for ``spent`` (recorded on ``version``), and a new read.

    ``unsaved``: ``spent`` came from a refresh the store never took, so a record still at
    ``version`` holds the older generation that refresh spent, not a sibling's rotation.
    """
    if snap.state is RecordState.LIVE and snap.tokens is not None:
        if unsaved and snap.version == version:
            return Decision(Step.MARK_REVOKED, version=version, release=True, reason=_REVOKED)
        if snap.tokens.refresh_token != spent.refresh_token:
            return _adopt(snap, True, "a sibling rotated the refresh token")
        return Decision(Step.MARK_REVOKED, version=snap.version, release=True, reason=_REVOKED)
    return _ended(snap, True) or Decision(Step.DROP, release=True, reason=_REVOKED)


def _ended(snap: Snapshot, release: bool) -> Optional[Decision]:
    """DROP for a record that ends the login (a logout, a revoked token), else None."""
    if snap.state is RecordState.TOMBSTONE:
        return Decision(Step.DROP, release=release, reason="logged out (the whole fleet)")
    if snap.state is RecordState.REVOKED:
        return Decision(Step.DROP, release=release, reason=_REVOKED)
    return None


def _adopt(snap: Snapshot, release: bool, why: str) -> Decision:
    return Decision(
        Step.ADOPT, tokens=snap.tokens, version=snap.version, release=release, reason=why
    )
