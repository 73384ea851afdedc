"""The poll state machine, driven as a table: no sockets, no threads, no clock."""

import pytest

from textstack_sdk._device_flow import (
    Done,
    FlowPolicy,
    Stop,
    Wait,
    decide,
    expired,
    first_wait,
    start,
)
from textstack_sdk._models import DeviceAuthorization, TokenSet
from textstack_sdk._wire import Granted, PollError, Transient

POLICY = FlowPolicy()


def auth(interval: float = 5.0, expires_in: float = 600.0) -> DeviceAuthorization:
    return DeviceAuthorization("dc", "ABCD-EFGH", "https://x/device", None, expires_in, interval)


def test_start_honours_the_interval_floor() -> None:
    assert start(auth(interval=0.01), 0.0, POLICY).interval == 1.0
    assert start(auth(interval=0.01), 0.0, FlowPolicy(min_interval=0.0)).interval == 0.01


def test_first_poll_waits_one_interval() -> None:
    assert first_wait(start(auth(), 0.0, POLICY), 0.0) == Wait(5.0)


def test_pending_keeps_the_interval() -> None:
    state = start(auth(), 0.0, POLICY)
    state, decision = decide(state, PollError("authorization_pending"), 5.0, POLICY)
    assert decision == Wait(5.0)


def test_slow_down_adds_five_seconds_for_good() -> None:
    state = start(auth(), 0.0, POLICY)
    state, decision = decide(state, PollError("slow_down"), 5.0, POLICY)
    assert decision == Wait(10.0)
    state, decision = decide(state, PollError("authorization_pending"), 15.0, POLICY)
    assert decision == Wait(10.0)
    state, decision = decide(state, PollError("slow_down"), 25.0, POLICY)
    assert decision == Wait(15.0)


def test_slow_down_storm_gives_up_with_a_clock_hint() -> None:
    state = start(auth(expires_in=1800), 0.0, POLICY)
    decision: object = None
    for _ in range(POLICY.max_slow_downs + 1):
        state, decision = decide(state, PollError("slow_down"), 1.0, POLICY)
    assert isinstance(decision, Stop)
    assert decision.kind == "failed"
    assert "clock" in decision.message


def test_transient_backs_off_and_never_polls_faster() -> None:
    state = start(auth(), 0.0, POLICY)
    waits = []
    for i in range(4):
        state, decision = decide(state, Transient("HTTP 503"), float(i), POLICY)
        assert isinstance(decision, Wait)
        waits.append(decision.seconds)
    assert waits == sorted(waits)
    assert min(waits) >= 5.0
    assert max(waits) <= POLICY.max_backoff


def test_retry_after_longer_than_interval_is_honoured() -> None:
    state = start(auth(), 0.0, POLICY)
    _, decision = decide(state, Transient("429", retry_after=42.0), 0.0, POLICY)
    assert decision == Wait(42.0)


def test_waits_are_capped_by_the_remaining_lifetime() -> None:
    state = start(auth(expires_in=20.0), 0.0, POLICY)
    _, decision = decide(state, Transient("429", retry_after=3600.0), 10.0, POLICY)
    assert decision == Wait(10.0)


def test_pending_after_the_deadline_is_expiry() -> None:
    state = start(auth(expires_in=10.0), 0.0, POLICY)
    _, decision = decide(state, PollError("authorization_pending"), 10.0, POLICY)
    assert isinstance(decision, Stop) and decision.kind == "expired"
    assert expired(state, 10.0) is not None
    assert expired(state, 9.9) is None


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("access_denied", "denied"),
        ("expired_token", "expired"),
        ("invalid_grant", "failed"),
        ("something_new", "failed"),
        ("http_401", "failed"),
    ],
)
def test_terminal_errors(error: str, kind: str) -> None:
    state = start(auth(), 0.0, POLICY)
    _, decision = decide(state, PollError(error), 5.0, POLICY)
    assert isinstance(decision, Stop)
    assert decision.kind == kind
    assert decision.error == error


def test_granted_is_done() -> None:
    tokens = TokenSet("a", "r", None)
    _, decision = decide(start(auth(), 0.0, POLICY), Granted(tokens), 5.0, POLICY)
    assert decision == Done(tokens)
