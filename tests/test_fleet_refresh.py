"""The fleet refresh protocol's decisions as tables: snapshot + what is held -> next step.

No I/O, no clock: every row is a situation from issue 13's protocol and the one step it
must lead to.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import pytest

from textstack_sdk._fleet_refresh import (
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
from textstack_sdk._models import TokenSet
from textstack_sdk._store import IntentInfo, IntentResult, RecordState, Snapshot

NOW = 1_000_000.0
MARGIN = 60.0
REQUEST = 5.0
MAX_WAIT = 10.0


def tokens(n: int, *, exp: float = NOW + 3600, refresh: Optional[str] = "") -> TokenSet:
    return TokenSet(
        access_token=f"access-{n}",
        refresh_token=f"refresh-{n}" if refresh == "" else refresh,
        access_exp=exp,
    )


STALE1 = tokens(1, exp=NOW + 10)  # inside the margin: needs a refresh
FRESH1 = tokens(1)
FRESH2 = tokens(2)


def snap(
    version: int,
    state: RecordState = RecordState.LIVE,
    toks: Optional[TokenSet] = STALE1,
    *,
    intent: float = 0.0,
    lease: float = 0.0,
) -> Snapshot:
    return Snapshot(
        version=version,
        state=state,
        tokens=toks if state is RecordState.LIVE else None,
        intent=IntentInfo("other", "fp", version, intent) if intent else None,
        lease_owner="other" if lease else None,
        lease_remaining=lease,
    )


def read(s: Snapshot, held: Held, lease_left: Optional[float] = None, **kw: Any) -> Decision:
    kw.setdefault("max_wait", MAX_WAIT)
    return on_read(
        s, held, now=NOW, margin=MARGIN, lease_left=lease_left, request_timeout=REQUEST, **kw
    )


HELD5 = Held(STALE1, 5)
NOTHING = Held(None, 0)

# (id, snapshot, held, lease_left, step, checks on the decision)
READ_ROWS: list[tuple[str, Snapshot, Held, Optional[float], Step, dict[str, Any]]] = [
    (
        "store-went-back-republish",
        snap(3, toks=tokens(0)),
        HELD5,
        None,
        Step.REPUBLISH,
        {"version": 5, "tokens": STALE1},
    ),
    (
        "store-emptied-republish",
        snap(0, RecordState.EMPTY),
        HELD5,
        None,
        Step.REPUBLISH,
        {"version": 5},
    ),
    (
        "old-tombstone-below-a-newer-login-republish",
        snap(4, RecordState.TOMBSTONE),
        HELD5,
        None,
        Step.REPUBLISH,
        {"version": 5},
    ),
    (
        "tombstone-honoured",
        snap(9, RecordState.TOMBSTONE),
        HELD5,
        None,
        Step.DROP,
        {"retryable": False},
    ),
    ("revoked-stops", snap(9, RecordState.REVOKED), HELD5, None, Step.DROP, {}),
    ("empty-nothing-held", snap(0, RecordState.EMPTY), NOTHING, None, Step.FAIL, {}),
    (
        "empty-with-an-unpublished-login",
        snap(0, RecordState.EMPTY),
        Held(FRESH1, 0),
        None,
        Step.PUBLISH,
        {"tokens": FRESH1},
    ),
    ("fresh-and-same-use", snap(5, toks=FRESH1), Held(FRESH1, 5), None, Step.USE, {}),
    (
        "fresh-and-newer-adopt",
        snap(6, toks=FRESH2),
        HELD5,
        None,
        Step.ADOPT,
        {"tokens": FRESH2, "version": 6},
    ),
    ("stale-take-lease", snap(5), HELD5, None, Step.TAKE_LEASE, {"version": 5}),
    (
        "stale-lease-held-elsewhere-wait",
        snap(5, lease=3.0),
        HELD5,
        None,
        Step.WAIT,
        {"version": 5, "timeout": 3.0, "release": False},
    ),
    (
        "stale-lease-long-wait-bounded",
        snap(5, lease=30.0),
        HELD5,
        None,
        Step.WAIT,
        {"timeout": MAX_WAIT},
    ),
    (
        "expired-lease-live-intent-bounded-grace",
        snap(5, intent=2.5),
        HELD5,
        None,
        Step.WAIT,
        {"version": 5, "timeout": 2.5},
    ),
    (
        "no-refresh-token",
        snap(5, toks=tokens(1, exp=NOW, refresh=None)),
        HELD5,
        None,
        Step.FAIL,
        {"retryable": False},
    ),
    (
        "unsaved-refresh-is-committed-first",
        snap(5),
        Held(FRESH2, 5, unsaved=True),
        None,
        Step.COMMIT,
        {"version": 5, "tokens": FRESH2},
    ),
    (
        "unsaved-refresh-heals-a-store-that-went-back",
        snap(0, RecordState.EMPTY),
        Held(FRESH2, 5, unsaved=True),
        None,
        Step.COMMIT,
        {"version": 0, "tokens": FRESH2},
    ),
    (
        "unsaved-refresh-overtaken-by-a-logout",
        snap(9, RecordState.TOMBSTONE),
        Held(FRESH2, 5, unsaved=True),
        None,
        Step.DROP,
        {},
    ),
    # Holding the lease, after the re-read:
    (
        "reread-finds-a-sibling-refreshed-adopt",
        snap(6, toks=FRESH2),
        HELD5,
        20.0,
        Step.ADOPT,
        {"tokens": FRESH2, "release": True},
    ),
    (
        "reread-intent-with-the-reread-token",
        snap(6, toks=tokens(2, exp=NOW)),
        HELD5,
        20.0,
        Step.RECORD_INTENT,
        {"version": 6, "tokens": tokens(2, exp=NOW), "release": False},
    ),
    (
        "lease-left-shorter-than-request-nothing-sent",
        snap(5),
        HELD5,
        REQUEST - 0.1,
        Step.FAIL,
        {"retryable": True, "release": True, "withdraw": True},
    ),
    (
        "lease-held-but-another-intent-alive-wait",
        snap(5, intent=4.0),
        HELD5,
        20.0,
        Step.WAIT,
        {"timeout": 4.0, "release": True},
    ),
    (
        "reread-tombstone-drop-and-release",
        snap(9, RecordState.TOMBSTONE),
        HELD5,
        20.0,
        Step.DROP,
        {"release": True},
    ),
    (
        "reread-store-went-back-republish-and-release",
        snap(2),
        HELD5,
        20.0,
        Step.REPUBLISH,
        {"release": True},
    ),
]


@pytest.mark.parametrize(
    ("s", "held", "lease_left", "step", "checks"),
    [row[1:] for row in READ_ROWS],
    ids=[row[0] for row in READ_ROWS],
)
def test_on_read(
    s: Snapshot, held: Held, lease_left: Optional[float], step: Step, checks: dict[str, Any]
) -> None:
    decision = read(s, held, lease_left)
    assert decision.step is step, decision
    for name, want in checks.items():
        assert getattr(decision, name) == want, (name, decision)


def test_a_waiter_never_refreshes_with_the_token_it_read_before_the_lease() -> None:
    before = read(snap(5), HELD5)
    assert before.step is Step.TAKE_LEASE
    rotated_meanwhile = snap(6, toks=tokens(2, exp=NOW))
    after = read(rotated_meanwhile, HELD5, lease_left=20.0)
    assert after.step is Step.RECORD_INTENT
    assert after.tokens is not None and after.tokens.refresh_token == "refresh-2"
    assert after.version == 6


def test_a_wait_with_no_time_to_wait_fails_retryably() -> None:
    decision = read(snap(5, lease=3.0), HELD5, max_wait=0.0)
    assert (decision.step, decision.retryable) == (Step.FAIL, True)


INTENT_ROWS: list[tuple[str, IntentResult, float, Step, dict[str, Any]]] = [
    (
        "sent-with-timeout-within-lease",
        IntentResult(True, True, lease_deadline=100.0),
        90.0,
        Step.SEND,
        {"timeout": REQUEST},
    ),
    (
        "lease-too-short-nothing-sent",
        IntentResult(True, True, lease_deadline=100.0),
        96.0,
        Step.FAIL,
        {"retryable": True, "withdraw": True},
    ),
    (
        "no-replica-ack-nothing-sent",
        IntentResult(True, False, reason="replica", lease_deadline=100.0),
        0.0,
        Step.FAIL,
        {"retryable": True, "withdraw": True, "release": True},
    ),
    (
        "lease-lost",
        IntentResult(False, False, reason="lease"),
        0.0,
        Step.FAIL,
        {"retryable": True},
    ),
    (
        "version-moved-reread",
        IntentResult(False, False, reason="version", current_version=7),
        0.0,
        Step.REREAD,
        {"release": True},
    ),
    (
        "another-intent-reread",
        IntentResult(False, False, reason="intent"),
        0.0,
        Step.REREAD,
        {"release": True},
    ),
    (
        "not-live-reread",
        IntentResult(False, False, reason="state"),
        0.0,
        Step.REREAD,
        {"release": True},
    ),
]


@pytest.mark.parametrize(
    ("result", "mono_now", "step", "checks"),
    [row[1:] for row in INTENT_ROWS],
    ids=[row[0] for row in INTENT_ROWS],
)
def test_on_intent(
    result: IntentResult, mono_now: float, step: Step, checks: dict[str, Any]
) -> None:
    decision = on_intent(result, mono_now=mono_now, request_timeout=REQUEST)
    assert decision.step is step, decision
    for name, want in checks.items():
        assert getattr(decision, name) == want, (name, decision)


def test_new_tokens_are_committed_on_the_version_the_intent_was_recorded_on() -> None:
    decision = on_response(Response.TOKENS, version=6, tokens=FRESH2)
    assert (decision.step, decision.version, decision.tokens) == (Step.COMMIT, 6, FRESH2)


def test_a_refused_refresh_is_judged_after_a_new_read() -> None:
    assert on_response(Response.REFUSED, version=6, tokens=None).step is Step.REREAD


def test_a_failed_request_keeps_its_intent_so_nobody_presents_the_token_in_the_grace() -> None:
    decision = on_response(Response.FAILED, version=6, tokens=None)
    assert (decision.step, decision.retryable, decision.release, decision.withdraw) == (
        Step.FAIL,
        True,
        True,
        False,
    )


COMMIT_ROWS: list[tuple[str, Snapshot, Step, dict[str, Any]]] = [
    (
        "late-commit-adopts-the-winner",
        snap(8, toks=FRESH1),
        Step.ADOPT,
        {"version": 8, "tokens": FRESH1},
    ),
    ("logout-while-refreshing-wins", snap(8, RecordState.TOMBSTONE), Step.DROP, {}),
    ("revoked-while-refreshing", snap(8, RecordState.REVOKED), Step.DROP, {}),
    (
        "store-went-back-heal-with-the-new-tokens",
        snap(0, RecordState.EMPTY),
        Step.COMMIT,
        {"version": 0, "tokens": FRESH2},
    ),
]


@pytest.mark.parametrize(
    ("s", "step", "checks"), [row[1:] for row in COMMIT_ROWS], ids=[row[0] for row in COMMIT_ROWS]
)
def test_on_commit_refused(s: Snapshot, step: Step, checks: dict[str, Any]) -> None:
    decision = on_commit_refused(s, expected=6, tokens=FRESH2)
    assert decision.step is step, decision
    for name, want in checks.items():
        assert getattr(decision, name) == want, (name, decision)


REFUSED_ROWS: list[tuple[str, Snapshot, Step, dict[str, Any]]] = [
    (
        "sibling-rotated-adopt",
        snap(7, toks=tokens(2, exp=NOW)),
        Step.ADOPT,
        {"version": 7},
    ),
    ("same-token-mark-revoked-once", snap(6), Step.MARK_REVOKED, {"version": 6}),
    ("already-revoked-no-second-mark", snap(7, RecordState.REVOKED), Step.DROP, {}),
    ("logged-out-meanwhile", snap(7, RecordState.TOMBSTONE), Step.DROP, {}),
]


@pytest.mark.parametrize(
    ("s", "step", "checks"),
    [row[1:] for row in REFUSED_ROWS],
    ids=[row[0] for row in REFUSED_ROWS],
)
def test_on_refused(s: Snapshot, step: Step, checks: dict[str, Any]) -> None:
    decision = on_refused(s, spent=STALE1, version=6)
    assert decision.step is step, decision
    for name, want in checks.items():
        assert getattr(decision, name) == want, (name, decision)


def test_freshness_honours_the_margin_and_an_unknown_expiry() -> None:
    assert fresh(tokens(1, exp=NOW + MARGIN + 1), NOW, MARGIN)
    assert not fresh(tokens(1, exp=NOW + MARGIN), NOW, MARGIN)
    assert not fresh(TokenSet("a", "r", None), NOW, MARGIN)
    assert not fresh(None, NOW, MARGIN)


def test_no_secret_in_a_decisions_repr() -> None:
    decision = read(snap(6, toks=FRESH2), HELD5)
    assert "access-2" not in repr(decision) and "refresh-2" not in repr(decision)
    assert "access-1" not in repr(HELD5)


def test_a_refused_access_token_is_due_for_refresh_however_far_its_exp() -> None:
    # A 401 for the store's fresh token: take the lease and refresh it, never use it.
    held = Held(FRESH1, 5)
    assert read(snap(5, toks=FRESH1), held).step is Step.USE
    assert read(snap(5, toks=FRESH1), held, refused="access-1").step is Step.TAKE_LEASE
    locked = read(snap(5, toks=FRESH1), held, lease_left=20.0, refused="access-1")
    assert locked.step is Step.RECORD_INTENT and locked.tokens == FRESH1
    # Another host already replaced it: adopt, no refresh.
    other = read(snap(6, toks=FRESH2), held, refused="access-1")
    assert other.step is Step.ADOPT and other.tokens == FRESH2


def test_a_local_unsaved_intent_fails_at_once_and_never_outranks_a_fresh_token() -> None:
    # IntentInfo.unsaved (a live local process holds the rotation it could not save):
    # waiting cannot help and presenting the token would revoke the family, so fail at
    # once, lease held or not; a fresh token in the record is still simply adopted.
    unsaved = IntentInfo("other", "", 5, float("inf"), unsaved=True)
    due = dataclasses.replace(snap(5), intent=unsaved)
    for lease_left in (None, 20.0):
        d = read(due, HELD5, lease_left=lease_left)
        assert d.step is Step.FAIL and d.retryable
        assert d.release is (lease_left is not None)
    assert read(due, HELD5, max_wait=0.0).step is Step.FAIL
    ok = read(dataclasses.replace(snap(6, toks=FRESH2), intent=unsaved), HELD5)
    assert ok.step is Step.ADOPT and ok.tokens == FRESH2
    # Without the flag, a live intent (even one with no end) is waited for.
    waited = dataclasses.replace(due, intent=dataclasses.replace(unsaved, unsaved=False))
    assert read(waited, HELD5).step is Step.WAIT
