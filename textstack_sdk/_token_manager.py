"""TokenManager: cached token -> one refresh -> one device flow, never blocking on a person.

Concurrency model:

* The hot path reads one immutable tuple ``(Authorized, usable_until, valid_until)``
  and the wall clock; no lock, no decode, no I/O.
* Two windows, as botocore has, but nobody waits in the first: from ``usable_until``
  (``exp - skew``) to ``valid_until`` (``exp``) the refresh is advisory: one daemon
  thread refreshes (across processes, only if it gets the file lock at once) and every
  caller keeps getting the current token meanwhile. Past ``valid_until`` it is
  mandatory: callers wait on the one flight, each for at most one request's deadline
  plus ``_WAIT_MARGIN``.
* Everything else runs under ``self._lock`` for bookkeeping only. Network work happens
  outside it, by exactly one thread per flight (a refresh, or a device-code request);
  other callers wait on that flight's Future and get the same result.
* One refresh path: ``FleetRefresher`` over a token store, a fleet's (Redis) or, by
  default, the cache's own (``CacheStore``: its file lock is the lease). Only reading
  differs: the cache is stat'ed on the slow path, a fleet's store read by each refresh.
* Lock order, always: the cross-process file lock (when the cache has one), then
  ``self._lock``. Nothing takes the file lock while holding ``self._lock``.
* One daemon thread per device flow polls the token endpoint; it is the only writer of
  the flow's state besides logout/close, and both write under ``self._lock``. The flows
  run in ``_flow_runtime.DeviceFlowRuntime``, which is given ``self._lock`` and reaches
  the rest of the manager only through ``_Host`` (its ``FlowHost``).
* After ``fork()`` the child gets fresh locks, no flights, no poll thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    ContextManager,
    Optional,
    Union,
)

from . import _device_flow as flow_sm
from . import _wire as wire
from ._auth_endpoints import AuthEndpoints
from ._cache_store import CacheStore
from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._errors import (
    AuthorizationDenied,
    AuthorizationError,
    AuthorizationExpired,
    AuthorizationTimeout,
    ConfigurationError,
)
from ._fleet_refresh import Held
from ._fleet_refresher import FleetRefresher, Outcome, default_owner
from ._flow_runtime import DeviceFlowRuntime, FlowSettings
from ._freshness import trusted_exp, usable_until
from ._http import Transport
from ._jwt import decode_exp, decode_subject
from ._models import Authorized, Failed, Pending, TokenResult, TokenSet
from ._settings import resolve_api_url, resolve_site_host, resolve_timeout
from ._spend_marker import new_owner
from ._store import ENV_TOKEN_STORE, RefreshStore, Snapshot, StoreError, TokenStore

__all__ = ["TokenManager", "TokenStatus"]

log = logging.getLogger("textstack_sdk.auth")

_UNSEEN = object()
_MANAGERS: weakref.WeakSet[TokenManager] = weakref.WeakSet()


@dataclass(frozen=True)
class TokenStatus:
    """A secret-free summary of the manager's state, for ``textstack status``. Immutable.

    Attributes:
        source: Where the current token came from: ``cache``, ``refresh``, ``device``
            or ``none``.
        authorized: True when ``get_token()`` would return a token without a refresh.
        expires_at: The access token's exp (Unix seconds), when known.
        subject: Who the token belongs to (its unverified ``email``/``sub`` claim).
        has_refresh_token: Whether a refresh token is held.
        cache_path: Where tokens are persisted, for file caches.
        pending: The sign-in waiting for approval, if any: this process's, else one
            another process started for the same server and shares through the cache.
        last_error: Why the last refresh or sign-in failed, if it did (also why an
            encrypted cache cannot be read).
        encrypted: Whether the cache encrypts what it writes (a key is configured).
        key_id: The id of the key that encrypts (not secret), when encrypted.
        stored_key_id: The key id the stored cache is encrypted with; None when it is
            plaintext or missing.
        store: The fleet's token store (its URL without credentials), when one is used.
        store_version: The store record's version, when it could be read.
        store_state: ``live``, ``empty``, ``tombstone`` or ``revoked``; ``unreachable``
            when the store could not be read.
        lease_holder: Which host holds the refresh lease now, if one does.
    """

    source: str
    authorized: bool
    expires_at: Optional[float]
    subject: Optional[str]
    has_refresh_token: bool
    cache_path: Optional[str]
    pending: Optional[Pending]
    last_error: Optional[str]
    encrypted: bool = False
    key_id: Optional[str] = None
    stored_key_id: Optional[str] = None
    store: Optional[str] = None
    store_version: Optional[int] = None
    store_state: Optional[str] = None
    lease_holder: Optional[str] = None


_DEAD = object()  # the refresh proved the login dead: start a device flow
# Beyond one request's deadline, the longest a caller waits for another's refresh.
_WAIT_MARGIN = 2.0
# After a try at the file lock failed in the advisory window, the pause before the next.
_ADVISORY_RETRY = 1.0
# Unsaved fleet tokens are written again after these delays (doubling), well inside the
# intent's grace that keeps the other hosts off the spent refresh token meanwhile.
_STORE_CHECK_FIRST = 0.25
_STORE_CHECK_MAX = 2.0


def _bounded(name: str, value: float, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number") from None
    if not low <= number <= high:  # also rejects NaN
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return number


def _stderr_prompt(pending: Pending) -> None:
    try:
        sys.stderr.write(pending.message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not break sign-in


class TokenManager:
    """Thread-safe device-flow token provider: cached token, one refresh, one device flow.

    ``get_token()`` never waits for a person: it returns ``Authorized``, ``Pending``
    (a sign-in is waiting for approval; poll continues in a daemon thread) or
    ``Failed``. Its network work is bounded by one refresh and one device-code request.
    Share one instance per process; it is safe across threads and after ``fork()``.

    Args:
        api_url: The API base URL (``TEXTSTACK_API_URL``, default https://textstack.app/api).
        site_host: The ``Host`` header value (``TEXTSTACK_SITE_HOST``).
        cache: Where tokens persist; None uses ``FileTokenCache()`` at the default path,
            encrypted when ``environ`` configures a key (``TEXTSTACK_CACHE_KEY`` or
            ``TEXTSTACK_CACHE_KEY_FILE``).
        transport: The HTTP transport; None creates a urllib3 one.
        clock: The time source (tests pass a FakeClock).
        timeout: Seconds per auth request (``TEXTSTACK_MCP_TIMEOUT_SECONDS``, default 15).
        environ: The environment to read settings from (default ``os.environ``).
        skew: Seconds before exp at which the access token counts as expired.
        min_refresh_interval: Least seconds between refreshes of a token whose exp is
            unreadable or already past when it arrives.
        min_poll_interval: Floor of the poll interval (RFC 8628 allows no less than 1 s;
            tests against a local server may lower it).
        slow_down_step: Seconds added to the interval on each ``slow_down``.
        lock_timeout: Longest wait for the cross-process cache lock.
        background: Poll in a daemon thread (default). False polls only inside
            ``get_token``/``wait_for_token`` calls (servers that run no threads).
        prompt: True prints the sign-in message to stderr once per flow; False is
            silent; a callable receives the Pending.
        store: A token store shared by a fleet of hosts (``RedisTokenStore``): refreshes
            are coordinated through it, one host per rotation. ``"env"`` (the default)
            builds a ``RedisTokenStore`` from ``TEXTSTACK_TOKEN_STORE`` when it is set,
            encrypted when a cache key is configured; None never uses one. With a store
            and no ``cache``, nothing is written to disk: the store keeps the login.
    """

    def __init__(
        self,
        *,
        api_url: Optional[str] = None,
        site_host: Optional[str] = None,
        cache: Optional[Any] = None,
        transport: Optional[Transport] = None,
        clock: Optional[Clock] = None,
        timeout: Optional[float] = None,
        environ: Optional[Mapping[str, str]] = None,
        skew: float = 30.0,
        min_refresh_interval: float = 60.0,
        min_poll_interval: float = 1.0,
        slow_down_step: float = 5.0,
        lock_timeout: float = 10.0,
        background: bool = True,
        prompt: Union[bool, Callable[[Pending], None]] = True,
        store: Union[TokenStore, str, None] = "env",
    ) -> None:
        env = os.environ if environ is None else environ
        self._api_url = resolve_api_url(api_url, env)
        self._site_host = resolve_site_host(site_host, env)
        self._timeout = resolve_timeout(timeout, env)
        self._skew = _bounded("skew", skew, 0.0, 3600.0)
        self._min_refresh_interval = _bounded(
            "min_refresh_interval", min_refresh_interval, 0.0, 3600.0
        )
        self._lock_timeout = _bounded("lock_timeout", lock_timeout, 0.0, 300.0)
        policy = flow_sm.FlowPolicy(
            min_interval=_bounded("min_poll_interval", min_poll_interval, 0.0, 60.0),
            slow_down_step=_bounded("slow_down_step", slow_down_step, 0.0, 60.0),
        )
        self._background = bool(background)
        told: Optional[Callable[[Pending], None]]
        if prompt is True:
            told = _stderr_prompt
        elif prompt is False or prompt is None:
            told = None
        elif callable(prompt):
            told = prompt
        else:
            raise ConfigurationError("prompt must be True, False or a callable")
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        shared_store = self._store_from(store, env)
        fleet = None if shared_store is None else self._fleet_over(shared_store)
        self._owns_store = isinstance(store, str) and shared_store is not None
        if cache is None and shared_store is not None:
            from ._store_signin import StoreSignIn

            # One pending sign-in for the fleet, kept in the store; tokens go there too.
            cache = StoreSignIn(shared_store, owner=default_owner(), clock=self._clock)
        if cache is None:
            from ._cache import FileTokenCache, default_cache_path
            from ._cipher import cipher_from_env

            cache = FileTokenCache(default_cache_path(env), cipher=cipher_from_env(environ=env))
        self._cache = cache
        self._spend_owner = new_owner(self)
        # Whether the store is shared by hosts (Redis...), or this host's own cache: one
        # refresh path for both (``_refresh_fleet``).
        self._shared_store = fleet is not None
        self._cache_store: Optional[CacheStore] = None
        if fleet is None:
            self._cache_store = CacheStore(
                cache,
                owner=self._spend_owner,
                clock=self._clock,
                grace=self._min_refresh_interval + self._skew,
                close_wait=min(self._lock_timeout, _WAIT_MARGIN),
            )
            fleet = self._fleet_over(self._cache_store)
        self._fleet: FleetRefresher = fleet
        shared = all(
            callable(getattr(cache, name, None))
            for name in (
                "lock",
                "load_pending",
                "save_pending",
                "clear_pending",
                "poll_lock",
                "remove_poll_locks",
                "touch_poll",
                "polled_at",
            )
        )
        # The hot path calls this; the builtin avoids a Python-level frame per call.
        self._time: Callable[[], float] = (
            time.time if isinstance(self._clock, SystemClock) else self._clock.time
        )
        self._owns_transport = transport is None
        if transport is None:
            from ._transport import Urllib3Transport

            transport = Urllib3Transport(timeout=self._timeout)
        self._transport = transport
        self._auth = AuthEndpoints(
            transport,
            api_url=self._api_url,
            site_host=self._site_host,
            timeout=self._timeout,
            wall_clock=self._time,
        )
        self._flow_settings = FlowSettings(
            policy=policy,
            background=self._background,
            prompt=told,
            # Which server a shared pending sign-in belongs to: never adopt another's code.
            server_id=f"{self._api_url} {self._site_host}",
            shared=shared,
            # Inline (no thread), the caller itself waits: as long as an inline refresh may.
            inline_lock_wait=min(self._lock_timeout, _WAIT_MARGIN),
        )

        # Read without a lock by get_token(): (Authorized, usable_until, valid_until).
        self._snapshot: Optional[tuple[Authorized, float, float]] = None
        self._closed = False
        self._init_process_state()
        _MANAGERS.add(self)

    def _store_from(
        self, store: Union[TokenStore, str, None], env: Mapping[str, str]
    ) -> Optional[TokenStore]:
        if isinstance(store, str):
            if store != "env":
                raise ConfigurationError('store must be a TokenStore, None or "env"')
            if not env.get(ENV_TOKEN_STORE):
                return None
            from ._cipher import cipher_from_env
            from ._redis_store import RedisTokenStore

            # Sealed with the same key settings as the file cache (TEXTSTACK_CACHE_KEY...).
            store = RedisTokenStore(
                environ=env, clock=self._clock, cipher=cipher_from_env(environ=env)
            )
        return store

    def _fleet_over(self, store: RefreshStore) -> FleetRefresher:
        return FleetRefresher(
            store,
            owner=default_owner(),
            clock=self._clock,
            request_timeout=self._timeout,
            margin=self._skew,
        )

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._held = Held(None, 0)  # what the fleet store last agreed we hold
        self._store_check: Optional[threading.Thread] = None
        self._store_check_stop = threading.Event()
        self._lock = threading.Lock()
        self._tokens: Optional[TokenSet] = None
        self._received_at: Optional[float] = None
        self._source = "none"
        self._persisted = False
        self._cache_sig: object = _UNSEEN
        self._refresh_flight: Optional[Future[TokenResult]] = None
        self._last_error: Optional[str] = None
        self._refresh_failures = 0
        self._refresh_not_before = float("-inf")
        self._advisory_not_before = float("-inf")
        self._refused: Optional[str] = None
        self._generation = 0
        # Why the cache cannot be decrypted: while set, no sign-in may replace it.
        self._undecryptable: Optional[str] = None
        # The device flows: their state is written under self._lock, like the rest.
        self._flows = DeviceFlowRuntime(
            self._lock,
            settings=self._flow_settings,
            auth=self._auth,
            cache=self._cache,
            clock=self._clock,
            wall=self._time,
        )

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **options: Any) -> TokenManager:
        """A manager configured from the environment (URL, host, cache path, timeout)."""
        return cls(environ=environ, **options)

    # ------------------------------------------------------------------ hot path

    def get_token(self) -> TokenResult:
        """Returns a usable token, a pending sign-in, or why neither is possible.

        Never waits for a person, nor for a refresh while the token in hand is still
        valid. Otherwise (background mode) it waits for the one refresh or sign-in start
        at most ``timeout`` plus 2 s, whatever the lock or the network do; the flight
        goes on in its own thread and the next call finds its result.
        """
        snap = self._snapshot
        if snap is not None:
            now = self._time()
            if now < snap[1]:
                return snap[0]
            if now < snap[2] and self._refresh_flight is not None:
                return snap[0]  # advisory window, refresh under way: nothing to decide
        return self._get_token_slow()

    # ------------------------------------------------------------------ slow path

    def _get_token_slow(self) -> TokenResult:
        self._check_fork()
        snap = self._snapshot
        if snap is not None and self._time() < snap[2]:
            # Advisory window: never queue behind another caller's bookkeeping (or the
            # refresh thread reading the cache); the token in hand is still valid.
            if not self._lock.acquire(blocking=False):
                return snap[0]
        else:
            self._lock.acquire()
        try:
            if self._closed:
                return Failed("the token manager is closed")
            self._sync_with_cache_locked()
            snap = self._snapshot
            now = self._time()
            if snap is not None and now < snap[1]:
                return snap[0]
            if self._undecryptable is not None:
                return Failed(self._undecryptable)
            flow = self._flows.current
            flight: Future[TokenResult]
            if flow is not None:
                if self._background and flow.thread is not None:
                    return flow.pending
                poll_now = self._flows.claim_inline_poll_locked(flow)
            elif snap is not None and now < snap[2]:
                # Advisory window: the token is still valid. Nobody waits for its refresh.
                if self._refresh_flight is not None or not self._advisory_allowed_locked():
                    return snap[0]
                flight = self._refresh_flight = Future()
                role = "advisory"
            else:
                poll_now = False
                existing = self._refresh_flight or self._flows.start_flight
                if existing is not None:
                    flight, role = existing, "wait"
                elif self._refresh_allowed_locked():
                    flight = self._refresh_flight = Future()
                    role = "refresh"
                elif self._shared_store or (
                    self._tokens is not None and self._tokens.refresh_token
                ):
                    # With a store, backing off after a store failure: never a sign-in
                    # of our own over a login the store may still hold.
                    return self._fallback_locked(self._last_error or "refresh is backing off")
                elif self._flows.start_backing_off_locked():
                    return Failed(
                        self._last_error or "could not start sign-in; try again shortly",
                        retryable=True,
                    )
                else:
                    flight = self._flows.open_start_flight_locked()
                    role = "start"
        finally:
            self._lock.release()
        if flow is not None:
            if poll_now:
                self._flows.poll_step(_Host(self), flow)
            answer = self._flows.result_for(flow)
            return self.get_token() if answer is None else answer
        if role == "advisory":
            assert snap is not None
            if self._background and self._spawn(self._run_refresh_flight, flight, advisory=True):
                return snap[0]
            result = self._run_refresh_flight(flight, advisory=True)
            return result if isinstance(result, Authorized) else snap[0]
        if role == "wait":
            return self._wait_flight(flight)
        # The flight runs in its own thread, so that the lock or the network can hold it
        # up but not the caller: it waits a bounded time and the next call finds the rest.
        if role == "refresh":
            if self._background and self._spawn(self._run_refresh_flight, flight, advisory=False):
                return self._wait_flight(flight)
            return self._run_refresh_flight(flight, advisory=False)
        host = _Host(self)
        if self._background and self._spawn(self._flows.run_start_flight, host, flight):
            return self._wait_flight(flight)
        return self._flows.run_start_flight(host, flight)

    def _wait_flight(self, flight: Future[TokenResult]) -> TokenResult:
        # Bounded whatever the lock or the network do: the flight goes on without us,
        # and the next call finds its result (or joins it again).
        try:
            return flight.result(timeout=self._timeout + _WAIT_MARGIN)
        except FutureTimeout:
            return Failed(
                "the token request is taking long (a slow server, or another process "
                "holding the token cache lock); try again shortly",
                retryable=True,
            )

    def _spawn(self, target: Callable[..., object], *args: object, **kwargs: object) -> bool:
        """Runs a flight in a daemon thread; False if no thread could start."""
        thread = threading.Thread(
            target=target, args=args, kwargs=kwargs, name="textstack-token", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down, or no threads left
            return False
        return True

    def _advisory_allowed_locked(self) -> bool:
        return (
            self._refresh_allowed_locked() and self._clock.monotonic() >= self._advisory_not_before
        )

    def _refresh_allowed_locked(self) -> bool:
        tokens = self._tokens
        # With a fleet store, a "refresh" first reads the store: it may hold a login.
        usable = self._shared_store or (tokens is not None and bool(tokens.refresh_token))
        return usable and self._clock.monotonic() >= self._refresh_not_before

    def _fallback_locked(self, reason: str) -> TokenResult:
        """After a transient failure: the access token while exp allows, else retryable."""
        tokens = self._tokens
        if (
            tokens is not None
            and tokens.access_token != self._refused
            and tokens.access_exp is not None
            and self._time() < tokens.access_exp
        ):
            return Authorized(tokens.access_token)
        return Failed(
            f"could not refresh the sign-in ({reason}); try again shortly", retryable=True
        )

    # ------------------------------------------------------------------ cache sync

    def _cache_signature(self) -> object:
        signature = getattr(self._fleet.store, "signature", None)
        return None if signature is None else signature()

    def _sync_with_cache_locked(self, *, force: bool = False) -> None:
        """Notices another process's login, refresh or logout: a stat, a read on change."""
        if self._shared_store:
            # The store is read by each refresh, never on the hot path; while a sign-in
            # is open (or when asked) it is read here, to adopt another host's login.
            if force or self._flows.current is not None:
                self._adopt_from_store_locked(self._fleet)
            return
        sig = self._cache_signature()
        unchanged = sig == self._cache_sig and self._cache_sig is not _UNSEEN
        # If our newer tokens never reached the disk (a failed save), the unchanged copy
        # there is an older, spent generation: never adopt it, even when forced.
        if unchanged and (not force or (self._tokens is not None and not self._persisted)):
            return
        self._cache_sig = sig
        record = self._safe_load()
        disk = None if record is None else record.tokens
        if disk is None:
            if self._tokens is not None and self._persisted:
                log.info("the token cache was cleared by another process; signing out here too")
                self._forget_locked()
                self._held = Held(None, 0)
            return
        assert record is not None
        if self._held.unsaved and record.version <= self._held.version:
            return  # rewritten, not replaced: still the generation our unsaved refresh spent
        if disk != self._tokens:
            self._install_locked(disk, source="cache", received_at=self._saved_at())
        if self._tokens is not None and not self._held.unsaved:
            self._held = Held(disk, record.version)
        self._persisted = True
        flow = self._flows.current
        if flow is not None and self._snapshot is not None:
            # Another process finished a sign-in: ours is no longer needed.
            self._flows.end_locked(flow, None)

    def _saved_at(self) -> Optional[float]:
        """When the cache was written, as "received at" for what another process stored.

        A token another process fetched seconds ago gets the same grace as one we
        fetched ourselves, so short-lived or unreadable-exp tokens are not refreshed
        again by every process that reads them.
        """
        saved_at = getattr(self._fleet.store, "saved_at", None)
        return None if saved_at is None else saved_at()

    def _safe_load(self) -> Optional[Snapshot]:
        try:
            record = self._fleet.store.load()
        except StoreError as exc:
            if exc.retryable:
                log.warning("the token cache could not be read", exc_info=False)
                return None
            if self._undecryptable != exc.message:
                log.warning("%s", exc.message)
            self._undecryptable = exc.message
            return None
        self._undecryptable = None
        return record

    def _save_locked(self, tokens: TokenSet) -> bool:
        if self._shared_store:
            self._persisted = self._publish_login_locked(self._fleet, tokens)
            return self._persisted
        try:
            saved = bool(self._cache.save(tokens))
        except Exception:  # noqa: BLE001 - a custom cache must not break a sign-in
            saved = False
        if not saved:
            log.warning("the new tokens could not be saved; keeping them in memory for now")
        self._persisted = saved
        self._cache_sig = self._cache_signature()
        record = self._safe_load()
        # Unsaved: the next refresh writes them first, or spends them if it cannot.
        self._held = Held(tokens, record.version if record is not None else 0, unsaved=not saved)
        return saved

    def _process_lock(self, timeout: Optional[float] = None) -> ContextManager[bool]:
        lock = getattr(self._cache, "lock", None)
        if lock is None:
            return contextlib.nullcontext(True)
        result: ContextManager[bool] = lock(self._lock_timeout if timeout is None else timeout)
        return result

    # ------------------------------------------------------------------ state changes

    def _install_locked(
        self, tokens: TokenSet, *, source: str, received_at: Optional[float]
    ) -> None:
        if source == "cache":
            # The file's accessExpiresAt is anyone's word: it never extends a JWT's exp,
            # and without one it is believed only as far as a fresh token's grace.
            exp = trusted_exp(
                decode_exp(tokens.access_token),
                tokens.access_exp,
                self._time(),
                grace=self._min_refresh_interval + self._skew,
            )
            if exp != tokens.access_exp:
                tokens = dataclasses.replace(tokens, access_exp=exp)
                received_at = None
        self._tokens = tokens
        self._received_at = received_at
        self._source = source
        until = usable_until(
            tokens.access_exp,
            received_at,
            skew=self._skew,
            min_refresh_interval=self._min_refresh_interval,
            trust_past_exp=source != "cache",
        )
        valid = max(until, tokens.access_exp) if tokens.access_exp is not None else until
        self._snapshot = (Authorized(tokens.access_token), until, valid)

    def _with_known_exp(self, tokens: TokenSet, received_at: float) -> TokenSet:
        """Gives a token whose exp is unreadable an expiry one refresh interval away.

        Stored in the cache's ``accessExpiresAt``, it tells every other process reading
        the cache the same thing, so an opaque token is refreshed once per interval in
        total rather than once per process.
        """
        if tokens.access_exp is not None:
            return tokens
        return dataclasses.replace(
            tokens, access_exp=received_at + self._min_refresh_interval + self._skew
        )

    def _keep_sign_in_locked(
        self, tokens: TokenSet, *, persist: bool, on_saved: Callable[[], None]
    ) -> TokenSet:
        """Keeps an approved sign-in's tokens; ``on_saved`` runs once the cache has them."""
        received_at = self._time()
        tokens = self._with_known_exp(tokens, received_at)
        # Saved before installed: nobody holds a token the cache has not seen.
        if persist:
            self._save_locked(tokens)
            on_saved()
        else:
            log.warning("could not lock the token cache; keeping the sign-in in memory")
        self._install_locked(tokens, source="device", received_at=received_at)
        self._persisted = self._persisted and persist
        return tokens

    def _forget_locked(self) -> None:
        self._snapshot = None
        self._tokens = None
        self._received_at = None
        self._source = "none"
        self._persisted = False
        self._refresh_failures = 0
        self._refresh_not_before = float("-inf")

    def invalidate(self, access_token: str) -> None:
        """The server refused this access token (401): stop handing it out.

        The next ``get_token()`` refreshes once. Other tokens are left alone, so a late
        401 for an already-replaced token changes nothing.
        """
        self._check_fork()
        with self._lock:
            snap = self._snapshot
            if snap is not None and snap[0].access_token == access_token:
                self._snapshot = None
                self._refused = access_token
                self._refresh_not_before = float("-inf")

    # ------------------------------------------------------------------ refresh

    def _run_refresh_flight(self, flight: Future[TokenResult], *, advisory: bool) -> TokenResult:
        result: TokenResult = Failed("the refresh did not finish", retryable=True)
        try:
            outcome = self._refresh(advisory=advisory)
            if outcome is _DEAD and advisory:
                # Never a device flow from the advisory refresh (its caller already has
                # the valid token): the dead login is forgotten, so the next call starts it.
                result = Failed(self._last_error or "the sign-in has expired")
            elif outcome is _DEAD:
                with self._lock:
                    start = self._flows.open_start_flight_locked()
                result = self._flows.run_start_flight(_Host(self), start)
            else:
                assert isinstance(outcome, (Authorized, Pending, Failed))
                result = outcome
        finally:
            with self._lock:
                if self._refresh_flight is flight:
                    self._refresh_flight = None
            flight.set_result(result)
        return result

    def _refresh(self, *, advisory: bool) -> object:
        return self._refresh_fleet(self._fleet, advisory=advisory)

    def _refresh_fleet(self, fleet: FleetRefresher, *, advisory: bool) -> object:
        """One run of the fleet protocol (see ``_fleet_refresher``), outside ``self._lock``."""
        with self._lock:
            held, generation, refused = self._held, self._generation, self._refused
            empty_handed = self._snapshot is None
            local = not self._shared_store
            if local and self._undecryptable is not None:
                return Failed(self._undecryptable)
        lease_wait: Optional[float] = None
        if local:
            # The lease is the cache's lock. Advisory: another process refreshing now,
            # keep our valid token meanwhile; inline, the caller itself waits.
            if advisory:
                lease_wait = 0.0
            elif self._background:
                lease_wait = self._lock_timeout
            else:
                lease_wait = min(self._lock_timeout, _WAIT_MARGIN)
        if empty_handed and not advisory and not local:
            # Nothing usable in memory (a new process, or after a 401): the store may hold
            # a token that is still valid though due for refresh. Read it first, waiting
            # for nobody, so that no caller waits on a refresh while a valid token exists;
            # the next call refreshes it in the background (the advisory window).
            first = fleet.run(
                held,
                lambda tokens, timeout: self._auth.refresh(tokens, timeout=timeout),
                deadline=self._clock.monotonic(),
                refresh=False,
                refused=refused,
            )
            with self._lock:
                if self._closed or self._generation != generation:
                    return self._ended_while_refreshing_locked()
                if first.kind != "failed" or first.store_failed:
                    return self._fleet_outcome_locked(first, advisory=False)
                if self._serve_seen_locked(first):
                    assert self._snapshot is not None
                    return self._snapshot[0]
                held = self._held

        def keep(fresh: Held) -> None:
            # New tokens in memory the moment they arrive: the only copy of a live refresh
            # token until the store has it. A local cache is written at once, and nobody
            # may hold a token it has not seen: the outcome installs them.
            if local:
                return
            with self._lock:
                if not self._closed and self._generation == generation and fresh.tokens is not None:
                    self._held = fresh
                    self._install_locked(fresh.tokens, source="refresh", received_at=self._time())

        def send(tokens: TokenSet, timeout: float) -> wire.RefreshOutcome:
            # The whole request timeout, unless a lease running short cut it.
            sent = (
                self._send_refresh(tokens)
                if timeout >= self._timeout
                else self._send_refresh(tokens, timeout)
            )
            if isinstance(sent, wire.Refreshed):
                # The store carries the expiry to every host: an opaque token gets one.
                return wire.Refreshed(self._with_known_exp(sent.tokens, self._time()))
            return sent

        outcome = fleet.run(
            held,
            send,
            deadline=self._clock.monotonic() + self._timeout + _WAIT_MARGIN,
            keep=keep,
            refused=refused,
            lease_wait=lease_wait,
        )
        if self._closed and self._cache_store is not None:
            # close() may have given up on the lock this run held: the rotated tokens a
            # failed save left in memory die with the manager, so their record goes too.
            self._cache_store.close()
        with self._lock:
            if self._closed or self._generation != generation:
                return self._ended_while_refreshing_locked()
            if local and outcome.store_failed and not outcome.retryable:
                self._undecryptable = outcome.reason
                return Failed(outcome.reason)
            return self._fleet_outcome_locked(outcome, advisory=advisory)

    def _ended_while_refreshing_locked(self) -> Failed:
        # close() or logout() ran meanwhile: their word wins over this late answer, and
        # nothing is installed (a closed manager hands no token out again).
        if self._closed:
            return Failed("the token manager is closed")
        return Failed("signed out while refreshing")

    def _fleet_outcome_locked(self, outcome: Outcome, *, advisory: bool) -> object:
        held = outcome.held
        if outcome.unsaved and self._shared_store:
            self._check_store_later_locked(self._fleet)
        if outcome.kind == "ok":
            assert held.tokens is not None
            if held != self._held or self._tokens is not held.tokens:
                if outcome.refreshed:
                    self._install_locked(held.tokens, source="refresh", received_at=self._time())
                elif self._shared_store:
                    self._install_locked(held.tokens, source="store", received_at=self._time())
                else:
                    self._install_locked(held.tokens, source="cache", received_at=self._saved_at())
            self._cache_sig = self._cache_signature()
            self._held = held
            self._persisted = True
            self._refresh_failures = 0
            self._last_error = None
            snap = self._snapshot
            if not self._shared_store and (snap is None or self._time() >= snap[1]):
                # Adopted after a refusal: another writer's tokens, already spent or due.
                self._refresh_not_before = float("-inf")
                return Failed(
                    "the tokens were replaced by another process; try again", retryable=True
                )
            return Authorized(held.tokens.access_token)
        if outcome.kind == "dropped" or not outcome.retryable:
            log.info("no login in the token store (%s)", outcome.reason)
            self._held = Held(None, 0)
            self._forget_locked()
            self._cache_sig = self._cache_signature()
            self._last_error = (
                outcome.reason
                if self._shared_store
                else "the saved sign-in has expired or was revoked"
            )
            return _DEAD
        # Retryable: keep what is held (unsaved tokens included) and serve it while valid.
        self._held = held
        if held.tokens is not None and (
            self._tokens is None or held.tokens.access_token != self._tokens.access_token
        ):
            self._install_locked(held.tokens, source="refresh", received_at=self._time())
        else:
            self._serve_seen_locked(outcome)
        if advisory:
            self._advisory_not_before = self._clock.monotonic() + _ADVISORY_RETRY
        if outcome.busy:
            # Another process is refreshing: no failure of ours to back off from.
            return self._fallback_locked(outcome.reason)
        unsaved = not self._shared_store and outcome.store_failed and held.unsaved
        if unsaved:
            self._persisted = False  # the cache holds an older, spent generation
        snap = self._snapshot
        if unsaved and snap is not None and self._time() < snap[1]:
            # Refreshed, but the cache could not take the new tokens: served from memory,
            # the spend record keeping the others off the token the cache still holds.
            log.warning("the new tokens could not be saved; keeping them in memory for now")
            self._refresh_failures = 0
            self._last_error = None
            return snap[0]
        return self._transient_locked(wire.Transient(outcome.reason, outcome.retry_after))

    def _serve_seen_locked(self, outcome: Outcome) -> bool:
        """Installs the store's still-valid tokens when this process holds nothing newer.

        True when a token is now served: the store's record is due for refresh, but its
        access token has not expired and the server has not refused it.
        """
        seen, held = outcome.seen, self._held
        if seen is None or seen.tokens is None or seen.version < held.version:
            return False
        if held.unsaved and seen.version == held.version:
            # The record our unsaved refresh started from: its tokens are older than ours.
            return False
        tokens = seen.tokens
        now = self._time()
        # A store's stated expiry is believed as a cache file's is (see trusted_exp).
        exp = trusted_exp(
            decode_exp(tokens.access_token),
            tokens.access_exp,
            now,
            grace=self._min_refresh_interval + self._skew,
        )
        if exp is None or now >= exp or tokens.access_token == self._refused:
            return False
        held_exp = None if self._tokens is None else self._tokens.access_exp
        if held_exp is not None and held_exp >= exp and self._snapshot is not None:
            return False  # what is held expires no sooner: keep it
        if held.tokens is None or seen.version > held.version:
            # What is served is what is held: a failed run must not bring back (nor a
            # store that went back republish) the older tokens held before.
            self._held = seen
        if exp != tokens.access_exp:
            tokens = dataclasses.replace(tokens, access_exp=exp)
        self._install_locked(
            tokens, source="store" if self._shared_store else "cache", received_at=None
        )
        return self._snapshot is not None

    def _adopt_from_store_locked(self, fleet: FleetRefresher) -> None:
        outcome = fleet.run(
            self._held,
            lambda tokens, timeout: self._auth.refresh(tokens, timeout=timeout),
            deadline=self._clock.monotonic() + min(self._timeout, _WAIT_MARGIN),
            refresh=False,
            refused=self._refused,
        )
        if outcome.kind != "ok":
            return
        self._fleet_outcome_locked(outcome, advisory=True)
        flow = self._flows.current
        if flow is not None and self._snapshot is not None:
            # Another host finished a sign-in: ours is no longer needed.
            self._flows.end_locked(flow, None)

    def _check_store_later_locked(self, fleet: FleetRefresher) -> None:
        """Writes unsaved tokens again in the background until the store surely has them.

        Unsaved: a refresh's commit failed, or no replica acknowledged it. Until it is
        written again, a failover can leave the store with the refresh token this host
        spent, and the other hosts wait on its intent only for a grace period.
        """
        if self._store_check is not None or self._closed:
            return
        thread = threading.Thread(
            target=self._store_check_loop,
            args=(fleet, self._generation),
            name="textstack-token-store",
            daemon=True,
        )
        self._store_check = thread
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: the next refresh run does it
            self._store_check = None

    def _store_check_loop(self, fleet: FleetRefresher, generation: int) -> None:
        delay = _STORE_CHECK_FIRST
        try:
            while not self._clock.wait(delay, self._store_check_stop):
                with self._lock:
                    held, refused = self._held, self._refused
                    if self._closed or self._generation != generation or not held.unsaved:
                        return
                outcome = fleet.run(
                    held,
                    lambda tokens, timeout: self._auth.refresh(tokens, timeout=timeout),
                    deadline=self._clock.monotonic() + self._timeout,
                    refresh=False,
                    refused=refused,
                )
                with self._lock:
                    if self._closed or self._generation != generation:
                        return
                    if outcome.kind != "failed":
                        self._fleet_outcome_locked(outcome, advisory=True)
                delay = min(delay * 2, _STORE_CHECK_MAX)
        finally:
            with self._lock:
                self._store_check = None

    def _publish_login_locked(self, fleet: FleetRefresher, tokens: TokenSet) -> bool:
        """A new sign-in goes into the store over whatever it holds (a newer login wins)."""
        store = fleet.store
        try:
            result = store.commit(store.load().version, tokens, now=self._time())
        except StoreError as exc:
            log.warning("the new sign-in could not be saved in the token store (%s)", exc)
            return False
        if result.ok:
            self._held = Held(tokens, result.version)
        return result.ok

    def _transient_locked(self, outcome: wire.Transient) -> TokenResult:
        self._refresh_failures += 1
        backoff = min(2.0**self._refresh_failures, 60.0)
        self._refresh_not_before = self._clock.monotonic() + max(
            backoff, outcome.retry_after or 0.0
        )
        self._last_error = outcome.reason
        log.warning("token refresh failed (%s); keeping the current tokens", outcome.reason)
        return self._fallback_locked(outcome.reason)

    def _send_refresh(self, sent: TokenSet, timeout: Optional[float] = None) -> wire.RefreshOutcome:
        if timeout is None:
            return self._auth.refresh(sent)
        return self._auth.refresh(sent, timeout=timeout)

    # ------------------------------------------------------------------ blocking helper

    def wait_for_token(self, timeout: Optional[float] = None) -> Authorized:
        """Blocks until signed in; starts a sign-in if needed. For scripts and the CLI.

        Args:
            timeout: Seconds to wait at most; None waits until the code expires.

        Raises:
            AuthorizationDenied: The person refused.
            AuthorizationExpired: The code expired first.
            AuthorizationTimeout: ``timeout`` passed while still pending.
            AuthorizationError: Sign-in could not start or failed otherwise.
        """
        if timeout is not None:
            timeout = _bounded("timeout", timeout, 0.0, 86400.0)
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        # Without a timeout, retryable failures (server down) still end: no code lives
        # longer than this, so waiting longer cannot help.
        give_up = self._clock.monotonic() + wire.MAX_CODE_LIFETIME
        never = threading.Event()
        retry_delay = 0.5
        while True:
            result = self.get_token()
            if isinstance(result, Authorized):
                return result
            left = None if deadline is None else deadline - self._clock.monotonic()
            if isinstance(result, Failed):
                if not result.retryable:
                    raise AuthorizationError(result.message)
                if left is None:
                    left = give_up - self._clock.monotonic()
                if left <= 0:
                    raise AuthorizationTimeout(f"timed out: {result.message}")
                self._clock.wait(min(retry_delay, left), never)
                retry_delay = min(retry_delay * 2, 10.0)
                continue
            with self._lock:
                # The flow that produced this Pending, even if it ended since.
                flow = self._flows.current or self._flows.last
            if flow is None or flow.pending != result:
                continue
            if left is not None and left <= 0:
                raise AuthorizationTimeout("timed out waiting for the sign-in to be approved")
            self._flows.await_flow(_Host(self), flow, left)
            if not flow.done.is_set():
                raise AuthorizationTimeout("timed out waiting for the sign-in to be approved")
            outcome = flow.outcome
            if isinstance(outcome, flow_sm.Stop):
                if outcome.kind == "denied":
                    raise AuthorizationDenied(outcome.message, error=outcome.error)
                if outcome.kind == "expired":
                    raise AuthorizationExpired(outcome.message, error=outcome.error)
                raise AuthorizationError(outcome.message, error=outcome.error)

    # ------------------------------------------------------------------ lifecycle

    def logout(self) -> None:
        """Forgets the tokens here and in the cache, and stops any sign-in poll."""
        self._check_fork()
        with self._process_lock(), self._lock:
            flow = self._flows.current
            if flow is not None:
                self._flows.end_locked(
                    flow, flow_sm.Stop("failed", "logged_out", "signed out before approval")
                )
            self._logout_fleet_locked(self._fleet)
            try:
                self._cache.clear()
                self._flows.clear_shared()
            except Exception:  # noqa: BLE001 - logout must still forget the tokens here
                log.warning("the token cache could not be cleared")
            self._cache_sig = self._cache_signature()
            self._forget_locked()
            self._generation += 1
            self._last_error = None
            self._undecryptable = None

    def _logout_fleet_locked(self, fleet: FleetRefresher) -> None:
        try:
            result = fleet.store.tombstone(now=self._time())
            if not result.acknowledged:
                # Nothing here can heal a lost logout: no tokens are kept to republish.
                log.warning(
                    "the fleet logout reached the token store's master but no replica; "
                    "if it fails over now, run `textstack logout` again"
                )
        except StoreError as exc:
            # Forgotten here all the same; the other hosts (or processes) keep their
            # tokens until the store is back and someone logs out again.
            if self._shared_store:
                log.warning("could not log the fleet out: the token store failed (%s)", exc)
            else:
                log.warning("could not log out in the token cache (%s)", exc)
        self._held = Held(None, 0)

    def close(self) -> None:
        """Stops any poll (joined with a bound) and releases the connection pool."""
        self._check_fork()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._store_check_stop.set()
            self._snapshot = None
            flow = self._flows.current
            if flow is not None:
                self._flows.end_locked(
                    flow, flow_sm.Stop("failed", "closed", "the token manager was closed")
                )
        if self._cache_store is not None:
            # Our unsaved rotated tokens die with this manager: the spent one is free again.
            self._cache_store.close()
        thread = flow.thread if flow is not None else None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._timeout + 1.0)
        if self._owns_transport:
            self._transport.close()
        if self._owns_store:
            with contextlib.suppress(StoreError):
                self._fleet.store.close()

    def __enter__(self) -> TokenManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ status

    def status(self) -> TokenStatus:
        """A secret-free summary: source, expiry, subject, cache path, pending sign-in."""
        self._check_fork()
        fleet = self._fleet_status()
        with self._lock:
            self._sync_with_cache_locked()
            tokens = self._tokens
            snap = self._snapshot
            flow = self._flows.current
            if tokens is None and fleet.get("tokens") is not None:
                tokens = fleet["tokens"]  # another host's login, not yet fetched here
            path = getattr(self._cache, "path", None)
            cipher = getattr(self._cache, "cipher", None)
            stored = getattr(self._cache, "stored_key_id", None)
            return TokenStatus(
                source=self._source if tokens is not None else "none",
                authorized=snap is not None and self._time() < snap[1],
                expires_at=tokens.access_exp if tokens is not None else None,
                subject=decode_subject(tokens.access_token) if tokens is not None else None,
                has_refresh_token=bool(tokens is not None and tokens.refresh_token),
                cache_path=str(path) if path is not None else None,
                pending=flow.pending if flow is not None else self._flows.shared_pending(),
                last_error=self._undecryptable or self._last_error,
                encrypted=cipher is not None,
                key_id=getattr(cipher, "key_id", None),
                stored_key_id=stored() if callable(stored) else None,
                store=fleet.get("store"),
                store_version=fleet.get("version"),
                store_state=fleet.get("state"),
                lease_holder=fleet.get("lease_holder"),
            )

    def _fleet_status(self) -> dict[str, Any]:
        """One read of the fleet store for ``status()`` (empty without a shared store)."""
        if not self._shared_store:
            return {}
        store = self._fleet.store
        found: dict[str, Any] = {"store": getattr(store, "location", repr(store))}
        try:
            record = store.load()
        except StoreError as exc:
            found["state"] = "unreachable"
            found["error"] = exc.message
            return found
        found.update(
            version=record.version,
            state=record.state.value,
            lease_holder=record.lease_owner,
            tokens=record.tokens,
        )
        return found

    @property
    def cache(self) -> Any:
        """The token cache in use."""
        return self._cache

    def __repr__(self) -> str:
        return f"TokenManager(api_url={self._api_url!r}, site_host={self._site_host!r})"

    # ------------------------------------------------------------------ fork

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._after_fork_in_child()

    def _after_fork_in_child(self) -> None:
        # Threads do not survive fork and a lock held by one of them would stay held:
        # start over with fresh locks and no flights, and re-read the cache.
        self._flows.after_fork()
        self._snapshot = None
        if self._cache_store is not None:
            self._cache_store.after_fork()
        self._init_process_state()


class _Host:
    """A manager as its device flows see it (``FlowHost``). Not thread-safe by itself:
    the ``*_locked`` calls come with the manager's lock held.

    Made per call rather than kept: the runtime then holds no reference back to its
    manager, and a flow's thread, which holds its host, keeps the manager alive.
    """

    __slots__ = ("_manager",)

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager

    def process_lock(self, timeout: Optional[float] = None) -> ContextManager[bool]:
        return self._manager._process_lock(timeout)

    def sync_locked(self, *, force: bool = False) -> None:
        self._manager._sync_with_cache_locked(force=force)

    def settled_locked(self) -> Optional[TokenResult]:
        manager = self._manager
        snap = manager._snapshot
        if snap is not None and manager._time() < snap[1]:
            return snap[0]
        if manager._undecryptable is not None:
            return Failed(manager._undecryptable)
        return None

    def generation_locked(self) -> int:
        return self._manager._generation

    def closed_locked(self) -> bool:
        return self._manager._closed

    def set_error_locked(self, message: Optional[str]) -> None:
        self._manager._last_error = message

    def sign_in_locked(
        self, tokens: TokenSet, *, persist: bool, on_saved: Callable[[], None]
    ) -> TokenSet:
        return self._manager._keep_sign_in_locked(tokens, persist=persist, on_saved=on_saved)


def _reinit_all_after_fork() -> None:
    for manager in list(_MANAGERS):
        manager._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_all_after_fork)
