"""The RFC 8628 polling state machine. Pure: ``now`` (monotonic seconds) is an argument.

``start`` builds the state from the device-code answer; ``decide`` takes the state, the
outcome of one poll and ``now`` and returns the next state and a decision. Every
transition lives in the table of ``decide``; nothing here sleeps, sends or raises.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

from ._models import DeviceAuthorization, TokenSet
from ._wire import Granted, PollOutcome, Transient

__all__ = [
    "Done",
    "FlowPolicy",
    "FlowState",
    "Stop",
    "Wait",
    "decide",
    "first_wait",
    "start",
]


@dataclass(frozen=True)
class FlowPolicy:
    """Tunable numbers of the poll loop (RFC 8628 §3.5 defaults)."""

    min_interval: float = 1.0
    slow_down_step: float = 5.0
    max_slow_downs: int = 6
    max_backoff: float = 60.0


@dataclass(frozen=True)
class FlowState:
    """Where one device flow stands. Immutable."""

    deadline: float
    interval: float
    slow_downs: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Wait:
    """Poll again after ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class Done:
    """The person approved; here are the tokens."""

    tokens: TokenSet


@dataclass(frozen=True)
class Stop:
    """The flow is over without tokens.

    Attributes:
        kind: ``denied``, ``expired`` or ``failed``.
        error: The server's error code, or a local one (``slow_down_storm``).
        message: A one-line, secret-free explanation for a person.
    """

    kind: str
    error: str
    message: str


Decision = Union[Wait, Done, Stop]


def start(auth: DeviceAuthorization, now: float, policy: FlowPolicy) -> FlowState:
    """The state right after the device-code answer arrived at monotonic time ``now``."""
    return FlowState(
        deadline=now + auth.expires_in, interval=max(auth.interval, policy.min_interval)
    )


def first_wait(state: FlowState, now: float) -> Decision:
    """The wait before the first poll (RFC 8628: poll no sooner than ``interval``)."""
    return _wait(state, state.interval, now)


def decide(
    state: FlowState, outcome: PollOutcome, now: float, policy: FlowPolicy
) -> tuple[FlowState, Decision]:
    """The transition table of one poll.

    Args:
        state: The state before the poll.
        outcome: What the poll returned (already classified).
        now: Monotonic seconds when the answer arrived.
        policy: The numbers to apply.

    Returns:
        The next state and what to do.
    """
    if isinstance(outcome, Granted):
        return state, Done(outcome.tokens)
    if isinstance(outcome, Transient):
        failures = state.failures + 1
        backoff = min(
            state.interval * (2 ** min(failures, 6)), max(policy.max_backoff, state.interval)
        )
        delay = max(state.interval, backoff, outcome.retry_after or 0.0)
        new_state = replace(state, failures=failures)
        return new_state, _wait(new_state, delay, now)
    error = outcome.error
    if error == "authorization_pending":
        # The interval keeps every slow_down increase; only the streak count resets.
        new_state = replace(state, failures=0, slow_downs=0)
        return new_state, _wait(new_state, new_state.interval, now)
    if error == "slow_down":
        new_state = replace(
            state,
            interval=state.interval + policy.slow_down_step,
            slow_downs=state.slow_downs + 1,
            failures=0,
        )
        if new_state.slow_downs > policy.max_slow_downs:
            return new_state, Stop(
                "failed",
                "slow_down_storm",
                f"the server asked to slow down {new_state.slow_downs} times in a row; "
                "is this machine's clock drifting? Try signing in again.",
            )
        return new_state, _wait(new_state, new_state.interval, now)
    if error == "access_denied":
        return state, Stop("denied", error, "the sign-in was denied.")
    if error == "expired_token":
        return state, Stop("expired", error, "the sign-in code expired before it was approved.")
    return state, Stop("failed", error, f"the sign-in failed: the server answered '{error}'.")


def _wait(state: FlowState, delay: float, now: float) -> Decision:
    remaining = state.deadline - now
    if remaining <= 0:
        return Stop("expired", "expired_token", "the sign-in code expired before it was approved.")
    return Wait(min(delay, remaining))


def expired(state: FlowState, now: float) -> Optional[Stop]:
    """A Stop when the code's lifetime is over at ``now``, else None."""
    if now >= state.deadline:
        return Stop("expired", "expired_token", "the sign-in code expired before it was approved.")
    return None
