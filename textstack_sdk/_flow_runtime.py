"""DeviceFlowRuntime: starts, polls, watches and finishes the device flows of one manager.

The decisions are pure and live elsewhere (``_device_flow`` decides what a poll answer
means, ``_shared_flow`` encodes the sign-in shared through the cache); this module is the
I/O and threads around them: the start single flight, the poll thread (or inline polls),
watching a sign-in another process polls, the poll lock's heartbeats, and ending a flow.

Its bookkeeping is written under the owning manager's lock, which it is given; the
manager's own state is reached only through a ``FlowHost`` passed to each entry point.
The runtime keeps no reference to its manager (no cycle: a manager nobody holds is freed
at once), while a running poll or start thread holds the host and so the manager, as a
thread running the manager's own method did. Lock order, as the manager's: the
cross-process file lock, then the manager's lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional, Protocol, Union

from . import _device_flow as flow_sm
from . import _shared_flow as shared_flow
from . import _wire as wire
from ._auth_endpoints import AuthEndpoints, StartFailure
from ._clock import Clock
from ._models import Authorized, DeviceAuthorization, Failed, Pending, TokenResult, TokenSet

__all__ = ["DeviceFlowRuntime", "FlowHost", "FlowSettings"]

log = logging.getLogger("textstack_sdk.auth")

Decision = Union[flow_sm.Wait, flow_sm.Done, flow_sm.Stop]


class _Flow:
    """One device flow. Mutable, but written only under the manager's lock."""

    def __init__(
        self, auth: DeviceAuthorization, pending: Pending, state: flow_sm.FlowState
    ) -> None:
        self.auth = auth
        self.pending = pending
        self.state = state
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.outcome: Union[TokenSet, flow_sm.Stop, None] = None
        self.thread: Optional[threading.Thread] = None
        self.next_poll_at = 0.0
        self.polling = False
        # Shared with other processes through the cache folder (FileTokenCache only).
        self.record: Optional[dict[str, object]] = None
        self.poll_lock: Optional[Any] = None

    def __repr__(self) -> str:
        return f"_Flow(user_code={self.pending.user_code!r}, done={self.done.is_set()})"


class FlowHost(Protocol):
    """What the runtime asks of the manager that owns it.

    Methods ending in ``_locked`` are called with the manager's lock held; the others
    without it.
    """

    def process_lock(self, timeout: Optional[float] = None) -> ContextManager[bool]:
        """The cross-process cache lock (a null context when the cache has none)."""

    def sync_locked(self, *, force: bool = False) -> None:
        """Notices another process's login, refresh or logout."""

    def settled_locked(self) -> Optional[TokenResult]:
        """A usable token, or why no sign-in may start; None when one is needed."""

    def generation_locked(self) -> int:
        """Counts logouts: a flow started under an older generation is stale."""

    def closed_locked(self) -> bool:
        """Whether the manager was closed."""

    def set_error_locked(self, message: Optional[str]) -> None:
        """Records why the last sign-in failed (None: it did not)."""

    def sign_in_locked(
        self, tokens: TokenSet, *, persist: bool, on_saved: Callable[[], None]
    ) -> TokenSet:
        """Keeps an approved sign-in's tokens (saved first when ``persist``, then
        ``on_saved`` runs) and returns them as installed."""


@dataclass(frozen=True)
class FlowSettings:
    """How a manager runs its device flows. Immutable.

    Attributes:
        policy: The poll interval floor and slow_down step.
        background: Poll in a daemon thread; False polls inside callers' calls.
        prompt: Told of each new sign-in (None: silent).
        server_id: Which server a shared sign-in belongs to: never adopt another's code.
        shared: Whether the cache shares a pending sign-in between processes.
        inline_lock_wait: The longest an inline start waits for the cross-process lock.
    """

    policy: flow_sm.FlowPolicy
    background: bool
    prompt: Optional[Callable[[Pending], None]]
    server_id: str
    shared: bool
    inline_lock_wait: float


class DeviceFlowRuntime:
    """Thread-safe under its manager's lock: runs one manager's device flows, one at a time.

    Created per process: after ``fork()`` the manager makes a new one with its new lock.
    """

    def __init__(
        self,
        lock: threading.Lock,
        *,
        settings: FlowSettings,
        auth: AuthEndpoints,
        cache: Any,
        clock: Clock,
        wall: Callable[[], float],
    ) -> None:
        self._lock = lock
        self._settings = settings
        self._auth = auth
        self._cache = cache
        self._clock = clock
        self._time = wall
        # All written under self._lock (the manager's).
        self.current: Optional[_Flow] = None
        self.last: Optional[_Flow] = None  # the latest flow, even once it ended
        self.start_flight: Optional[Future[TokenResult]] = None
        self._start_failures = 0
        self._start_not_before = float("-inf")
        self._prompted_code: Optional[str] = None

    # ------------------------------------------------------------------ start single flight

    def start_backing_off_locked(self) -> bool:
        """Whether a failed start asks callers to wait before requesting a code again."""
        return self._clock.monotonic() < self._start_not_before

    def open_start_flight_locked(self) -> Future[TokenResult]:
        """The one start flight the other callers wait on; the caller runs it."""
        flight: Future[TokenResult] = Future()
        self.start_flight = flight
        return flight

    def run_start_flight(self, host: FlowHost, flight: Future[TokenResult]) -> TokenResult:
        result: TokenResult = Failed("could not start sign-in", retryable=True)
        created = False
        try:
            result, created = self._start_flow(host)
        finally:
            with self._lock:
                if self.start_flight is flight:
                    self.start_flight = None
            flight.set_result(result)
        # After the flight resolves: a slow prompt (a browser, a notebook) must not hold
        # back the callers waiting for this same Pending.
        prompt = self._settings.prompt
        if (
            isinstance(result, Pending)
            and prompt is not None
            and (created or result.user_code != self._prompted_code)
        ):
            self._prompted_code = result.user_code
            try:
                prompt(result)
            except Exception:
                log.warning("the sign-in prompt callback failed", exc_info=True)
        return result

    def _start_flow(self, host: FlowHost) -> tuple[TokenResult, bool]:
        """One device flow: adopt the one another process shares, or request a code.

        Returns:
            The result, and whether this process requested the code (and so prompts).
        """
        settings = self._settings
        created = True
        record: Optional[dict[str, object]] = None
        with self._lock:
            generation = host.generation_locked()
        # Inline (no thread), the caller itself waits: as long as an inline refresh may.
        wait = None if settings.background else settings.inline_lock_wait
        with host.process_lock(wait) as locked:
            shared = settings.shared and locked
            if shared:
                with self._lock:
                    # Another process may have finished a sign-in while we waited.
                    host.sync_locked(force=True)
                    settled = host.settled_locked()
                    if settled is not None:
                        return settled, False
                adopted = shared_flow.decode(self._cache.load_pending(), self._time())
                if (
                    adopted is not None
                    and adopted.outcome is None
                    and adopted.server == settings.server_id
                ):
                    auth, created = adopted.auth, False
                    record = shared_flow.encode(auth, adopted.expires_at, settings.server_id)
            if created:
                got = self._request_device_code(host)
                if isinstance(got, Failed):
                    return got, False
                auth = got
                if shared:
                    self._cache.remove_poll_locks()  # of sign-ins that ended before
                    record = shared_flow.encode(
                        auth, self._time() + auth.expires_in, settings.server_id
                    )
                    if not self._cache.save_pending(record):
                        record = None
        now = self._clock.monotonic()
        pending = Pending(
            verification_uri=auth.verification_uri,
            user_code=auth.user_code,
            verification_uri_complete=auth.verification_uri_complete,
            expires_at=self._time() + auth.expires_in,
        )
        flow = _Flow(auth, pending, flow_sm.start(auth, now, settings.policy))
        flow.next_poll_at = now + flow.state.interval
        if record is not None:
            flow.record = record
            flow.poll_lock = self._cache.poll_lock(auth.device_code)
        with self._lock:
            if host.closed_locked():
                return Failed("the token manager is closed"), False
            if host.generation_locked() != generation:
                # logout() ran while the code was being requested: it wins.
                if record is not None and created:
                    self._cache.clear_pending()
                return Failed("signed out while the sign-in was starting", retryable=True), False
            self.current = self.last = flow
            host.set_error_locked(None)
            if settings.background:
                thread = threading.Thread(
                    target=self._poll_loop,
                    args=(host, flow),
                    name="textstack-device-poll",
                    daemon=True,
                )
                flow.thread = thread
                thread.start()
        return pending, created

    def _request_device_code(self, host: FlowHost) -> Union[DeviceAuthorization, Failed]:
        got = self._auth.device_code()
        if isinstance(got, StartFailure):
            return self._start_failed(host, got.reason, got.retryable, got.retry_after)
        with self._lock:
            self._start_failures = 0
        return got

    def _start_failed(
        self, host: FlowHost, reason: str, retryable: bool, retry_after: Optional[float] = None
    ) -> Failed:
        message = f"could not start sign-in: {reason}"
        with self._lock:
            host.set_error_locked(message)
            # Every caller would otherwise ask for a new code at once (each API call of
            # every thread): back off, and never sooner than the server asked.
            self._start_failures += 1
            backoff = min(2.0 ** (self._start_failures - 1), 60.0)
            wait = max(backoff, min(retry_after or 0.0, wire.MAX_CODE_LIFETIME))
            self._start_not_before = self._clock.monotonic() + wait
        log.warning("%s", message)
        return Failed(message, retryable=retryable)

    # ------------------------------------------------------------------ polling

    def _poll_loop(self, host: FlowHost, flow: _Flow) -> None:
        try:
            decision = flow_sm.first_wait(flow.state, self._clock.monotonic())
            while isinstance(decision, flow_sm.Wait):
                if self._clock.wait(decision.seconds, flow.cancel):
                    return
                decision = self._poll_decision(host, flow)
            self._finish_flow(host, flow, decision)
        except BaseException as exc:  # noqa: BLE001 - a poller must end its flow, whatever
            # The type only: an exception's text may quote a request (and its device code).
            log.error("the sign-in poller stopped unexpectedly (%s)", type(exc).__name__)
            crashed = flow_sm.Stop(
                "failed", "poller_crashed", "the sign-in poller stopped unexpectedly"
            )
            try:
                self._finish_flow(host, flow, crashed)
            except Exception:  # noqa: BLE001 - the net below ends the flow regardless
                log.error("the sign-in poller could not end its flow cleanly")
            # Whatever _finish_flow managed: the flow ends here, so the next call starts
            # afresh instead of returning this flow's Pending forever.
            with self._lock:
                if not flow.done.is_set():
                    host.set_error_locked(crashed.message)
                    self.end_locked(flow, crashed)
        finally:
            self._release_poll_lock(flow)

    def _poll_decision(self, host: FlowHost, flow: _Flow) -> Decision:
        stop = flow_sm.expired(flow.state, self._clock.monotonic())
        if stop is not None:
            return stop
        if flow.record is not None:
            watched = self._watch_shared(host, flow)
            if watched is not None:
                return watched
        outcome = self._poll_once(flow)
        with self._lock:
            flow.state, decision = flow_sm.decide(
                flow.state, outcome, self._clock.monotonic(), self._settings.policy
            )
        if isinstance(decision, flow_sm.Wait):
            self._heartbeat(flow)
        if isinstance(outcome, wire.Transient):
            log.info("sign-in poll: %s; backing off", outcome.reason)
        return decision

    def _watch_shared(self, host: FlowHost, flow: _Flow) -> Optional[Decision]:
        """For a shared flow: None when this process should poll now, else the decision.

        Exactly one process holds the poll lock and polls; the others watch the cache
        (a stat per interval) and the shared record. The kernel frees the lock of a
        poller that dies, and the next watcher to try takes over before the code expires.
        """
        # The record first, then the cache: the poller saves tokens before it removes
        # the record, so a missing record with no tokens in the cache really is an end.
        current = shared_flow.decode(self._cache.load_pending(), self._time(), allow_expired=True)
        with self._lock:
            host.sync_locked()
            if flow.done.is_set():
                return flow_sm.Stop("failed", "adopted", "signed in by another process")
        now = self._time()
        if current is not None and current.expires_at <= now:
            return flow_sm.Stop(
                "expired", "expired_token", "the sign-in code expired before it was approved."
            )
        if current is None or current.auth.device_code != flow.auth.device_code:
            return flow_sm.Stop(
                "failed", "cancelled", "the sign-in was cancelled or replaced by another process"
            )
        if current.outcome is not None:
            kind = current.outcome if current.outcome in ("denied", "expired") else "failed"
            return flow_sm.Stop(kind, current.outcome, current.message or "the sign-in ended")
        interval = max(flow.state.interval, current.auth.interval)
        polled_at = self._cache.polled_at(flow.auth.device_code)
        since = None if polled_at is None else now - polled_at
        if since is not None and 0 <= since < interval:
            # Someone polled this code less than an interval ago (inline callers take
            # turns): polling now would earn a slow_down.
            return flow_sm.Wait(interval - since)
        lock = flow.poll_lock
        if lock is None or lock.held or lock.acquire(0):
            return None
        # The poll lock is held, but its holder has not polled for a long while: it is
        # stopped (Ctrl-Z, a debugger). Poll in its place rather than wait for it.
        if since is not None and since > 3 * interval + 2.0:
            return None
        return flow_sm.Wait(interval)

    def _heartbeat(self, flow: _Flow) -> None:
        """Tells the other processes that this code was just polled (no lock taken)."""
        if flow.record is not None:
            self._cache.touch_poll(flow.auth.device_code, self._time())

    def _release_poll_lock(self, flow: _Flow) -> None:
        lock = flow.poll_lock
        if lock is not None and lock.held:
            with contextlib.suppress(RuntimeError, OSError):
                lock.release()

    def _poll_once(self, flow: _Flow) -> wire.PollOutcome:
        return self._auth.poll(flow.auth.device_code)

    # ------------------------------------------------------------------ ending a flow

    def _finish_flow(
        self, host: FlowHost, flow: _Flow, decision: Union[flow_sm.Done, flow_sm.Stop]
    ) -> None:
        if isinstance(decision, flow_sm.Stop) and decision.error == "adopted":
            return  # another process signed in; the cache sync already ended this flow
        if isinstance(decision, flow_sm.Done):
            with host.process_lock() as locked, self._lock:
                if self.current is not flow or flow.cancel.is_set():
                    return  # cancelled: a late answer never brings tokens back
                if flow.record is not None and locked:
                    current = shared_flow.decode(
                        self._cache.load_pending(), self._time(), allow_expired=True
                    )
                    if current is None or current.auth.device_code != flow.auth.device_code:
                        # Another process signed out (or replaced the sign-in) meanwhile.
                        log.warning("the sign-in was cancelled elsewhere; discarding its tokens")
                        self.end_locked(
                            flow,
                            flow_sm.Stop("failed", "cancelled", "the sign-in was cancelled"),
                        )
                        return

                def clear_record() -> None:
                    if flow.record is not None:
                        self._cache.clear_pending()
                        self._cache.remove_poll_locks()

                tokens = host.sign_in_locked(decision.tokens, persist=locked, on_saved=clear_record)
                self.end_locked(flow, tokens)
            return
        if flow.done.is_set():
            return  # ended already (logout, close): a late answer has nothing to tell
        if flow.record is not None and flow.poll_lock is not None and flow.poll_lock.held:
            # Tell the processes watching this sign-in how it ended.
            with host.process_lock() as locked:
                if locked:
                    self._cache.save_pending(
                        shared_flow.with_outcome(flow.record, decision.kind, decision.message)
                    )
        with self._lock:
            host.set_error_locked(decision.message)
            if self.current is flow:
                self.end_locked(flow, decision)
        log.warning("sign-in ended: %s", decision.message)

    def end_locked(self, flow: _Flow, outcome: Union[TokenSet, flow_sm.Stop, None]) -> None:
        """Ends ``flow`` with ``outcome`` (None: another process or host signed in)."""
        if self.current is flow:
            self.current = None
        flow.outcome = outcome
        flow.cancel.set()
        flow.done.set()

    # ------------------------------------------------------------------ inline polling

    def claim_inline_poll_locked(self, flow: _Flow) -> bool:
        """Whether the calling thread polls ``flow`` now (no poll thread runs)."""
        now = self._clock.monotonic()
        if flow.polling or now < flow.next_poll_at:
            return False
        flow.polling = True
        flow.next_poll_at = now + flow.state.interval
        return True

    def poll_step(self, host: FlowHost, flow: _Flow) -> None:
        """One poll in the caller's thread (no background thread)."""
        try:
            decision = self._poll_decision(host, flow)
            if not isinstance(decision, flow_sm.Wait):
                self._finish_flow(host, flow, decision)
                return
        except BaseException:
            with self._lock:
                flow.polling = False
            raise
        finally:
            # Inline callers are different threads: hold the poll lock one step at a time.
            self._release_poll_lock(flow)
        with self._lock:
            flow.polling = False
            flow.next_poll_at = self._clock.monotonic() + decision.seconds

    def result_for(self, flow: _Flow) -> Optional[TokenResult]:
        """What ``flow`` tells a caller; None when it ended without a word (ask again)."""
        if not flow.done.is_set():
            return flow.pending
        outcome = flow.outcome
        if isinstance(outcome, TokenSet):
            return Authorized(outcome.access_token)
        if isinstance(outcome, flow_sm.Stop):
            return Failed(outcome.message)
        return None

    def await_flow(self, host: FlowHost, flow: _Flow, left: Optional[float]) -> None:
        """Waits until ``flow`` ends or ``left`` seconds pass, polling inline if need be."""
        end = None if left is None else self._clock.monotonic() + left
        thread = flow.thread if self._settings.background else None
        while not flow.done.is_set():
            now = self._clock.monotonic()
            if end is not None and now >= end:
                return
            if thread is not None:
                if not thread.is_alive():
                    return  # the poller always sets done; this is only a safety net
                # The poller ends the flow by its deadline; wake a little after it.
                budget = max(0.0, flow.state.deadline - now) + 1.0
                self._clock.wait(budget if end is None else min(budget, end - now), flow.done)
                continue
            due = max(0.0, flow.next_poll_at - now)
            self._clock.wait(due if end is None else min(due, end - now), flow.done)
            with self._lock:
                claimed = self.claim_inline_poll_locked(flow)
            if claimed:
                self.poll_step(host, flow)

    # ------------------------------------------------------------------ shared record

    def shared_pending(self) -> Optional[Pending]:
        """A sign-in another process started for this server and shares through the cache."""
        if not self._settings.shared:
            return None
        try:
            flow = shared_flow.decode(self._cache.load_pending(), self._time())
        except Exception:  # noqa: BLE001 - a status report must not fail on a stray file
            return None
        if flow is None or flow.outcome is not None or flow.server != self._settings.server_id:
            return None
        return Pending(
            verification_uri=flow.auth.verification_uri,
            user_code=flow.auth.user_code,
            verification_uri_complete=flow.auth.verification_uri_complete,
            expires_at=flow.expires_at,
        )

    def clear_shared(self) -> None:
        """Removes the shared sign-in record and its poll locks (logout)."""
        if self._settings.shared:
            self._cache.clear_pending()
            self._cache.remove_poll_locks()

    def after_fork(self) -> None:
        """In a forked child, before the manager replaces this runtime."""
        flow = self.current
        if flow is not None and flow.poll_lock is not None:
            # Touching the lock makes it drop the descriptor inherited from the parent,
            # so a parent that dies while polling does not leave the lock held by us.
            _ = flow.poll_lock.held
