"""The token store on Redis, for a fleet of hosts sharing one login (preview).

Keys (one hash tag, so a Redis Cluster keeps them in one slot)::

    {textstack:<namespace>}:record         hash: v, state, tokens, pending
    {textstack:<namespace>}:lease:<purpose> string "<owner>\\n<token>", PX = the lease's TTL
    {textstack:<namespace>}:intent         string "<owner>\\n<token>\\n<fingerprint>\\n<version>",
                                           PX = the lease left + a grace period

Every conditional step is one Lua script (sent by EVALSHA, loaded again on NOSCRIPT), so it
is atomic on the server. ``redis`` (redis-py) is imported only when a store is built.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import unquote, urlsplit

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigurationError, TextStackError
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
    TokenCipher,
    WriteResult,
    check_range,
    decode_tokens,
    encode_tokens,
    fingerprint,
    json_object,
    next_version,
    wait_for_version,
)

__all__ = ["ENV_TOKEN_STORE", "RedisTokenStore", "StoreTarget", "parse_store_url"]

ENV_TOKEN_STORE = "TEXTSTACK_TOKEN_STORE"
CIPHER_KIND = "redis"

_SCHEMES = {
    "redis": (False, False),
    "rediss": (True, False),
    "redis+sentinel": (False, True),
    "rediss+sentinel": (True, True),
}
_NAMESPACE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PURPOSE = re.compile(r"[a-z]{1,16}")
_T = TypeVar("_T")

_LOAD = """
local r = redis.call('HMGET', KEYS[1], 'v', 'state', 'tokens', 'pending')
return {r[1], r[2], r[3], r[4], redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2]),
        redis.call('GET', KEYS[3]), redis.call('PTTL', KEYS[3])}
"""

# ARGV: lease value, ttl ms, "1" to renew only.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if (not cur and ARGV[3] ~= '1') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, tonumber(ARGV[2]), ARGV[1]}
end
return {0, redis.call('PTTL', KEYS[1]), cur}
"""

# ARGV: lease value, "1" to withdraw this holder's intent too.
_RELEASE = """
local held = redis.call('GET', KEYS[1]) == ARGV[1]
if held then redis.call('DEL', KEYS[1]) end
if ARGV[2] == '1' then
  local i = redis.call('GET', KEYS[2])
  if i and string.sub(i, 1, #ARGV[1] + 1) == ARGV[1] .. '\\n' then redis.call('DEL', KEYS[2]) end
end
if held then return 1 end
return 0
"""

# KEYS: lease, intent, record. ARGV: lease value, expected version, fingerprint, grace ms.
# Returns {ok, reason, lease pttl, version, connected replicas}.
_INTENT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, 'lease', 0, 0, 0} end
local pttl = redis.call('PTTL', KEYS[1])
if pttl <= 0 then return {0, 'lease', 0, 0, 0} end
local rec = redis.call('HMGET', KEYS[3], 'v', 'state')
local v = tonumber(rec[1]) or 0
if v ~= tonumber(ARGV[2]) then return {0, 'version', pttl, v, 0} end
if rec[2] ~= 'live' then return {0, 'state', pttl, v, 0} end
local cur = redis.call('GET', KEYS[2])
if cur and string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. '\\n' then
  return {0, 'intent', pttl, v, 0}
end
redis.call('SET', KEYS[2], ARGV[1] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[2],
           'PX', string.format('%d', pttl + tonumber(ARGV[4])))
local info = redis.call('INFO', 'replication')
local replicas = tonumber(string.match(info, 'connected_slaves:(%d+)')) or 0
return {1, 'ok', pttl, v, replicas}
"""

# KEYS: record, intent. ARGV: expected version ('' = any lower than ARGV[2]), new version,
# tokens blob. The same script is the CAS (expected given) and the republish (expected '').
_WRITE_LIVE = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v')) or 0
if ARGV[1] ~= '' then
  if v ~= tonumber(ARGV[1]) then return {0, v} end
elseif v >= tonumber(ARGV[2]) then
  return {0, v}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'state', 'live', 'tokens', ARGV[3])
redis.call('HDEL', KEYS[1], 'pending')
redis.call('DEL', KEYS[2])
local info = redis.call('INFO', 'replication')
return {1, tonumber(ARGV[2]), tonumber(string.match(info, 'connected_slaves:(%d+)')) or 0}
"""

# KEYS: record, intent. ARGV: state, now ms, expected version ('' = unconditional).
_WRITE_STATE = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v')) or 0
if ARGV[3] ~= '' and v ~= tonumber(ARGV[3]) then return {0, v} end
local nv = math.max(v + 1, tonumber(ARGV[2]))
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'v', string.format('%d', nv), 'state', ARGV[1])
return {1, nv}
"""


@dataclass(frozen=True)
class StoreTarget:
    """Where a store lives, parsed from its URL. Immutable; its repr hides the password."""

    tls: bool
    sentinel: bool
    hosts: tuple[tuple[str, int], ...]
    db: int
    service_name: Optional[str]
    username: Optional[str]
    password: Optional[str]

    def __repr__(self) -> str:
        return f"StoreTarget({self.redacted()!r})"

    def redacted(self) -> str:
        """The URL without its credentials, fit for logs and status output."""
        scheme = ("rediss" if self.tls else "redis") + ("+sentinel" if self.sentinel else "")
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        path = f"/{self.service_name}/{self.db}" if self.sentinel else f"/{self.db}"
        auth = "***@" if self.password is not None else ""
        return f"{scheme}://{auth}{hosts}{path}"


def parse_store_url(url: str) -> StoreTarget:
    """Parses ``redis://``, ``rediss://``, ``redis+sentinel://`` or ``rediss+sentinel://``.

    Sentinel URLs list the sentinels and name the service:
    ``redis+sentinel://[user:password@]host:port,host:port/service_name[/db]``; the
    credentials are those of the Redis servers (sentinels without auth).

    Raises:
        ConfigurationError: The URL cannot work; the message never repeats the password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigurationError(
            f"{ENV_TOKEN_STORE} must start with redis://, rediss://, redis+sentinel:// "
            "or rediss+sentinel://"
        )
    tls, sentinel = _SCHEMES[scheme.lower()]
    userinfo, at, location = rest.rpartition("@")
    if not at:
        userinfo, location = "", rest
    username: Optional[str] = None
    password: Optional[str] = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon and user:
            # redis://secret@host is how redis-py reads a bare password too.
            username, password = None, unquote(user)
    netloc, _, path = location.partition("/")
    path, _, query = path.partition("?")
    if query or "#" in path:
        raise ConfigurationError(f"{ENV_TOKEN_STORE} takes no query or fragment")
    hosts = tuple(_host_port(part, 26379 if sentinel else 6379) for part in netloc.split(","))
    if len(hosts) > 1 and not sentinel:
        raise ConfigurationError(f"{ENV_TOKEN_STORE} lists several hosts: use redis+sentinel://")
    parts = [p for p in path.split("/") if p]
    service_name: Optional[str] = None
    if sentinel:
        if not parts:
            raise ConfigurationError(
                f"{ENV_TOKEN_STORE}: a Sentinel URL names its service: "
                "redis+sentinel://host:port,host:port/service_name"
            )
        service_name = parts.pop(0)
    if len(parts) > 1 or (parts and not parts[0].isdigit()):
        raise ConfigurationError(f"{ENV_TOKEN_STORE}: the path must be a database number")
    db = int(parts[0]) if parts else 0
    return StoreTarget(tls, sentinel, hosts, db, service_name, username, password)


def _host_port(part: str, default_port: int) -> tuple[str, int]:
    # urlsplit knows IPv6 brackets and port ranges; it is given one host at a time.
    try:
        split = urlsplit(f"//{part}")
        host, port = split.hostname, split.port
    except ValueError:
        host, port = None, None
    if not host:
        raise ConfigurationError(f"{ENV_TOKEN_STORE} has a host that cannot be read")
    return host, port or default_port


class RedisTokenStore(LeaseTaking):
    """The token store on Redis or Redis Sentinel. Thread-safe (redis-py's pool is).

    Args:
        url: ``redis://``, ``rediss://``, ``redis+sentinel://`` or ``rediss+sentinel://``;
            defaults to ``TEXTSTACK_TOKEN_STORE``.
        namespace: Separates logins sharing one Redis (letters, digits, ``.``, ``_``, ``-``).
        cipher: Encrypts the tokens and the pending sign-in when given.
        socket_timeout: Seconds any one Redis call may take.
        connect_timeout: Seconds a connection may take to open.
        ack_timeout: Seconds to wait for a replica to acknowledge an intent (default 0.5,
            or half the socket timeout when that is shorter; WAIT must end before it).
        replicas: Replica acknowledgements an intent needs; None asks for one whenever the
            master reports a connected replica.
        intent_grace: Seconds an intent outlives its lease, for a late holder to commit.
        poll_interval: Base seconds between looks while waiting for a lease or a change.
        clock: Monotonic time and cancellable waits.
        environ: Where to read ``TEXTSTACK_TOKEN_STORE`` (default ``os.environ``).

    Time bounds: each call takes at most one socket timeout (redis-py's own retries are
    off; a caller that wants to retry decides so on :class:`StoreUnavailable`). With
    Sentinel, finding the master may take one timeout per Sentinel that does not answer.
    A lease wait takes at most ``wait`` plus one socket timeout; an intent with replicas
    adds ``ack_timeout``.

    Raises:
        ConfigurationError: No URL, a URL that cannot work, an option out of range, or
            redis-py not installed (``pip install 'textstack-sdk[redis]'``).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        namespace: str = "default",
        cipher: Optional[TokenCipher] = None,
        socket_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        ack_timeout: Optional[float] = None,
        replicas: Optional[int] = None,
        intent_grace: float = 5.0,
        poll_interval: float = 0.05,
        clock: Clock = SYSTEM_CLOCK,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        if url is None:
            url = (os.environ if environ is None else environ).get(ENV_TOKEN_STORE) or None
        if not url:
            raise ConfigurationError(f"no token store: pass a URL or set {ENV_TOKEN_STORE}")
        if not _NAMESPACE.fullmatch(namespace):
            raise ConfigurationError("namespace must be 1-64 letters, digits, '.', '_' or '-'")
        check_range("socket_timeout", socket_timeout, 0.01, 60.0)
        check_range("connect_timeout", connect_timeout, 0.01, 60.0)
        if ack_timeout is None:
            ack_timeout = min(0.5, socket_timeout / 2)
        check_range("ack_timeout", ack_timeout, 0.001, socket_timeout * 0.9)
        check_range("intent_grace", intent_grace, 0.0, 600.0)
        check_range("poll_interval", poll_interval, 0.001, 5.0)
        if replicas is not None and not 0 <= replicas <= 16:
            raise ConfigurationError("replicas must be None or between 0 and 16")
        self._target = parse_store_url(url)
        self._namespace = namespace
        self._cipher = cipher
        self._ack_ms = max(1, int(ack_timeout * 1000))
        self._replicas = replicas
        self._grace_ms = int(intent_grace * 1000)
        self._poll = poll_interval
        self._clock = clock
        tag = f"{{textstack:{namespace}}}"
        self._record_key = f"{tag}:record"
        self._intent_key = f"{tag}:intent"
        self._tag = tag
        self._client = _connect(self._target, socket_timeout, connect_timeout)
        # WAIT counts the writes made on its own connection, so an intent and its WAIT must
        # share one: a pinned client, built on first use, one intent at a time.
        self._intent_lock = threading.Lock()
        self._intent_client: Any = None
        self._intent_script: Any = None
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("load", _LOAD),
                ("acquire", _ACQUIRE),
                ("release", _RELEASE),
                ("write_state", _WRITE_STATE),
            )
        }

    def __repr__(self) -> str:
        encrypted = "yes" if self._cipher is not None else "no"
        return (
            f"RedisTokenStore({self._target.redacted()!r}, namespace={self._namespace!r}, "
            f"encrypted={encrypted})"
        )

    @property
    def location(self) -> str:
        """The store's URL without credentials, for status output."""
        return self._target.redacted()

    @property
    def namespace(self) -> str:
        return self._namespace

    def close(self) -> None:
        """Closes the connections. Safe to call twice."""
        with self._intent_lock:
            pinned, self._intent_client = self._intent_client, None
        if pinned is not None:
            self._call(pinned.close)
        self._call(self._client.close)

    def load(self) -> Snapshot:
        raw = self._call(
            lambda: self._scripts["load"](
                keys=[self._record_key, self._lease_key("refresh"), self._intent_key]
            )
        )
        version_raw, state_raw, tokens_raw, pending_raw, lease, lease_ms, intent, intent_ms = raw
        version = int(version_raw) if version_raw is not None else 0
        state = _state(state_raw)
        tokens = None
        if state is RecordState.LIVE:
            if tokens_raw is None:
                raise StoreError("the store's live record has no tokens")
            tokens = decode_tokens(self._open(tokens_raw, "tokens"))
        pending = None
        if pending_raw is not None:
            pending = _decode_pending(self._open(pending_raw, "pending"))
        lease_owner = _text(lease).split("\n", 1)[0] if lease is not None else None
        return Snapshot(
            version=version,
            state=state,
            tokens=tokens,
            pending=pending,
            intent=_intent(intent, intent_ms),
            lease_owner=lease_owner,
            lease_remaining=max(0, int(lease_ms)) / 1000.0 if lease is not None else 0.0,
        )

    def release_lease(self, lease: Lease, *, withdraw_intent: bool = False) -> bool:
        held = self._call(
            lambda: self._scripts["release"](
                keys=[self._lease_key(lease.purpose), self._intent_key],
                args=[_lease_value(lease), "1" if withdraw_intent else "0"],
            )
        )
        return bool(held)

    def record_intent(self, lease: Lease, *, version: int, refresh_token: str) -> IntentResult:
        if lease.purpose != "refresh":
            raise StoreError("an intent needs the refresh lease")

        def attempt(client: Any, scripts: dict[str, Any]) -> IntentResult:
            started = self._clock.monotonic()
            ok, reason, pttl, current, connected = self._call(
                lambda: scripts["intent"](
                    keys=[self._lease_key("refresh"), self._intent_key, self._record_key],
                    args=[
                        _lease_value(lease),
                        str(version),
                        fingerprint(refresh_token),
                        str(self._grace_ms),
                    ],
                )
            )
            lease_deadline = started + int(pttl) / 1000.0
            if not ok:
                return IntentResult(
                    recorded=False,
                    acknowledged=False,
                    reason=_text(reason),
                    lease_deadline=lease_deadline,
                    current_version=int(current),
                )
            acknowledged = self._acknowledged(client, int(connected))
            return IntentResult(
                recorded=True,
                acknowledged=acknowledged,
                reason="" if acknowledged else "replica",
                lease_deadline=lease_deadline,
                current_version=int(current),
            )

        return self._on_pinned(attempt)

    def commit(self, expected_version: int, tokens: TokenSet, *, now: float) -> WriteResult:
        new_version = next_version(expected_version, now)
        return self._write_live(str(expected_version), new_version, tokens)

    def republish(self, held_version: int, tokens: TokenSet) -> WriteResult:
        if held_version <= 0:
            raise StoreError("only a version this process holds can be republished")
        return self._write_live("", held_version, tokens)

    def tombstone(self, *, now: float) -> WriteResult:
        return self._write_state(RecordState.TOMBSTONE, now, None)

    def mark_revoked(self, expected_version: int, *, now: float) -> WriteResult:
        return self._write_state(RecordState.REVOKED, now, expected_version)

    def offer_pending(self, record: Mapping[str, object]) -> bool:
        blob = self._seal(_encode_pending(record), "pending")
        return bool(self._call(lambda: self._client.hsetnx(self._record_key, "pending", blob)))

    def clear_pending(self) -> None:
        self._call(lambda: self._client.hdel(self._record_key, "pending"))

    def wait_for_change(self, version: int, *, timeout: float) -> Optional[Snapshot]:
        return wait_for_version(
            self.load, version, timeout=timeout, clock=self._clock, poll=self._poll
        )

    def _pinned(self) -> tuple[Any, dict[str, Any]]:
        """The connection (and its scripts) for writes that WAIT for a replica.

        Call with the intent lock held: WAIT counts the writes of its own connection.
        """
        if self._intent_client is None:
            import redis

            client = redis.Redis(
                connection_pool=self._client.connection_pool, single_connection_client=True
            )
            self._intent_script = {
                "intent": client.register_script(_INTENT),
                "write_live": client.register_script(_WRITE_LIVE),
            }
            self._intent_client = client
        return self._intent_client, self._intent_script

    def _on_pinned(self, work: Callable[[Any, dict[str, Any]], _T]) -> _T:
        """Runs ``work`` on the pinned connection, one at a time.

        A pinned connection is not checked by the pool before each use: one kept since an
        earlier call may have died with a restarted or failed-over server. Such a refused
        connection (never a timeout, which would double the bound) is replaced and the
        work tried once more; both steps are safe to repeat (same owner, same CAS).
        """
        import redis.exceptions as rex

        with self._intent_lock:
            reused = self._intent_client is not None
            client, scripts = self._call(self._pinned)
            try:
                return work(client, scripts)
            except StoreUnavailable as exc:
                self._drop_pinned()
                if not reused or isinstance(exc.__cause__, rex.TimeoutError):
                    raise
            client, scripts = self._call(self._pinned)
            try:
                return work(client, scripts)
            except StoreUnavailable:
                self._drop_pinned()
                raise

    def _drop_pinned(self) -> None:
        pinned, self._intent_client = self._intent_client, None
        if pinned is not None:
            with contextlib.suppress(Exception):
                pinned.close()

    def _acknowledged(self, client: Any, connected: int) -> bool:
        """Whether a replica has this connection's writes (WAIT), when one is needed."""
        needed = self._replicas if self._replicas is not None else min(1, connected)
        if needed <= 0:
            return True
        acked = self._call(lambda: client.wait(needed, self._ack_ms))
        return int(acked) >= needed

    def _lease_key(self, purpose: str) -> str:
        if not _PURPOSE.fullmatch(purpose):
            raise ConfigurationError("a lease purpose is 1-16 lowercase letters")
        return f"{self._tag}:lease:{purpose}"

    def _try_lease(
        self, owner: str, token: str, purpose: str, ttl: float, *, renew: bool
    ) -> Lease | float:
        """The lease when taken, else the holder's remaining seconds."""
        value = f"{owner}\n{token}"
        ttl_ms = max(1, int(ttl * 1000))
        started = self._clock.monotonic()
        ok, pttl, _holder = self._call(
            lambda: self._scripts["acquire"](
                keys=[self._lease_key(purpose)],
                args=[value, str(ttl_ms), "1" if renew else "0"],
            )
        )
        if ok:
            return Lease(owner=owner, token=token, purpose=purpose, deadline=started + ttl)
        return max(0, int(pttl)) / 1000.0

    def _write_live(self, expected: str, new_version: int, tokens: TokenSet) -> WriteResult:
        blob = self._seal(encode_tokens(tokens), "tokens")

        def attempt(client: Any, scripts: dict[str, Any]) -> WriteResult:
            answer = self._call(
                lambda: scripts["write_live"](
                    keys=[self._record_key, self._intent_key],
                    args=[expected, str(new_version), blob],
                )
            )
            if not answer[0]:
                return WriteResult(ok=False, version=int(answer[1]))
            # New tokens on the master alone are lost if it dies now: their writer must
            # know, and keep them until a replica has them.
            acknowledged = self._acknowledged(client, int(answer[2]))
            return WriteResult(ok=True, version=int(answer[1]), acknowledged=acknowledged)

        return self._on_pinned(attempt)

    def _write_state(self, state: RecordState, now: float, expected: Optional[int]) -> WriteResult:
        ok, version = self._call(
            lambda: self._scripts["write_state"](
                keys=[self._record_key, self._intent_key],
                args=[
                    state.value,
                    str(next_version(0, now)),
                    "" if expected is None else str(expected),
                ],
            )
        )
        return WriteResult(ok=bool(ok), version=int(version))

    def _seal(self, plaintext: bytes, part: str) -> bytes:
        if self._cipher is None:
            return plaintext
        return self._cipher.encrypt(plaintext, kind=CIPHER_KIND, identity=self._identity(part))

    def _open(self, blob: object, part: str) -> bytes:
        data = blob if isinstance(blob, bytes) else str(blob).encode("utf-8")
        if self._cipher is None:
            return data
        try:
            return self._cipher.decrypt(data, kind=CIPHER_KIND, identity=self._identity(part))
        except TextStackError:
            raise
        except Exception as exc:
            # The cipher's own words may name a key id; they never hold the key or the data.
            raise StoreError(
                f"the {part} record in namespace {self._namespace!r} does not decrypt "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def _identity(self, part: str) -> str:
        return f"{self._namespace}#{part}"

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Runs one Redis call, mapping redis-py's errors to ours with no secret in them."""
        import redis.exceptions as rex

        try:
            return fn()
        except (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError) as exc:
            message = self._scrub(f"token store {self.location} unreachable: {exc}")
            raise StoreUnavailable(message) from _chain(exc, self._target.password)
        except rex.RedisError as exc:
            message = self._scrub(f"token store {self.location} failed: {exc}")
            if isinstance(exc, rex.ReadOnlyError):
                # A demoted master during a failover: the new one is being found.
                raise StoreUnavailable(message) from _chain(exc, self._target.password)
            raise StoreError(message) from _chain(exc, self._target.password)

    def _scrub(self, text: str) -> str:
        secret = self._target.password
        return text.replace(secret, "***") if secret else text


def _connect(target: StoreTarget, socket_timeout: float, connect_timeout: float) -> Any:
    try:
        import redis
        import redis.sentinel
    except ImportError:
        raise ConfigurationError(
            "the Redis token store needs redis-py: pip install 'textstack-sdk[redis]'"
        ) from None
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # redis-py 6+ retries three times with backoff by default, which would multiply the
    # bound on every call; the caller decides about retrying.
    no_retry = Retry(NoBackoff(), 0)
    common: dict[str, Any] = {
        "retry": no_retry,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "username": target.username,
        "password": target.password,
        "db": target.db,
    }
    if target.tls:
        common["ssl"] = True
    if not target.sentinel:
        host, port = target.hosts[0]
        return redis.Redis(host=host, port=port, **common)
    sentinel_kwargs: dict[str, Any] = {
        "retry": no_retry,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
    }
    if target.tls:
        sentinel_kwargs["ssl"] = True
    sentinels = redis.sentinel.Sentinel(
        list(target.hosts), sentinel_kwargs=sentinel_kwargs, **common
    )
    assert target.service_name is not None
    return sentinels.master_for(target.service_name)


def _chain(exc: BaseException, secret: Optional[str]) -> Optional[BaseException]:
    """The exception to chain from: the original unless its text holds the secret."""
    if secret and secret in repr(exc):
        return None
    return exc


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _state(raw: object) -> RecordState:
    if raw is None:
        return RecordState.EMPTY
    try:
        return RecordState(_text(raw))
    except ValueError:
        raise StoreError("the store's record has an unknown state") from None


def _intent(raw: object, pttl: object) -> Optional[IntentInfo]:
    if raw is None:
        return None
    parts = _text(raw).split("\n")
    if len(parts) != 4 or not parts[3].isdigit():
        raise StoreError("the store's intent record is malformed")
    return IntentInfo(
        owner=parts[0],
        fingerprint=parts[2],
        version=int(parts[3]),
        remaining=max(0, int(pttl)) / 1000.0,  # type: ignore[call-overload]
    )


def _lease_value(lease: Lease) -> str:
    return f"{lease.owner}\n{lease.token}"


def _encode_pending(record: Mapping[str, object]) -> bytes:
    return json.dumps(dict(record), separators=(",", ":")).encode("utf-8")


def _decode_pending(payload: bytes) -> Mapping[str, object]:
    return json_object(payload, "pending sign-in")
