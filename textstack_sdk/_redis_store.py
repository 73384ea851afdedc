"""The token store on Redis, for a fleet of hosts sharing one login (preview).

Keys (one hash tag, so a Redis Cluster keeps them in one slot)::

    {textstack:<namespace>}:record         hash: v, state, tokens, pending, pending_fp
    {textstack:<namespace>}:lease:<purpose> string "<owner>\\n<token>", PX = the lease's TTL
    {textstack:<namespace>}:intent         string "<owner>\\n<token>\\n<fingerprint>\\n<version>",
                                           PX = the lease left + a grace period

Every conditional step is one Lua script (sent by EVALSHA, loaded again on NOSCRIPT), so it
is atomic on the server. New versions are taken from the server's clock (``TIME``), never
from a host's. Intents and record writes then wait (``WAIT``) for a replica on the
connection that wrote them. ``redis`` (redis-py) is imported only when a store is built.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import unquote, urlsplit

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigurationError, TextStackError
from ._models import TokenSet
from ._store import (
    ENV_TOKEN_STORE,
    IntentInfo,
    IntentResult,
    Lease,
    RecordState,
    Snapshot,
    StoreError,
    StoreUnavailable,
    TokenCipher,
    WriteResult,
    decode_tokens,
    encode_tokens,
    fingerprint,
    json_object,
)

__all__ = ["ENV_TOKEN_STORE", "RedisTokenStore", "StoreTarget", "parse_store_url"]

CIPHER_KIND = "redis"

_SCHEMES = {
    "redis": (False, False),
    "rediss": (True, False),
    "redis+sentinel": (False, True),
    "rediss+sentinel": (True, True),
}
_NAMESPACE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_OWNER = re.compile(r"[^\n]{1,200}")
_PURPOSE = re.compile(r"[a-z]{1,16}")
_T = TypeVar("_T")

_LOAD = """
local r = redis.call('HMGET', KEYS[1], 'v', 'state', 'tokens', 'pending')
return {r[1], r[2], r[3], r[4], redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2]),
        redis.call('GET', KEYS[3]), redis.call('PTTL', KEYS[3])}
"""

# KEYS: lease, intent. ARGV: lease value, ttl ms, "1" to renew only, intent grace ms.
# A holder's own intent must outlive its lease by the grace however often the lease is
# renewed, or a renewed holder's intent could vanish while its request is still in flight.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if (not cur and ARGV[3] ~= '1') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local i = redis.call('GET', KEYS[2])
  if i and string.sub(i, 1, #ARGV[1] + 1) == ARGV[1] .. '\\n' then
    local want = tonumber(ARGV[2]) + tonumber(ARGV[4])
    if redis.call('PTTL', KEYS[2]) < want then
      redis.call('PEXPIRE', KEYS[2], string.format('%d', want))
    end
  end
  return {1, tonumber(ARGV[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
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

# How many replicas the master has connected now: an intent (or a logout) waits for one.
_REPLICAS = """
local function replicas()
  local info = redis.call('INFO', 'replication')
  return tonumber(string.match(info, 'connected_slaves:(%d+)')) or 0
end
"""

# KEYS: lease, intent, record. ARGV: lease value, expected version, fingerprint, grace ms.
# Returns {ok, reason, lease pttl, version, connected replicas}.
_INTENT = (
    _REPLICAS
    + """
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
return {1, 'ok', pttl, v, replicas()}
"""
)

# KEYS: record. ARGV: the fingerprint of the sign-in the caller saw ('' = none may be
# open), that of the one to write ('' = drop it), its blob. The fingerprint is of the
# plaintext, so the comparison holds whatever the cipher does to the blob.
_REPLACE_PENDING = """
if ARGV[1] == '' then
  if redis.call('HEXISTS', KEYS[1], 'pending') == 1 then return 0 end
elseif redis.call('HGET', KEYS[1], 'pending_fp') ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'pending', 'pending_fp')
else
  redis.call('HSET', KEYS[1], 'pending', ARGV[3], 'pending_fp', ARGV[2])
end
return 1
"""

# The Redis server's clock in milliseconds. Versions are taken from it, not from the
# hosts' clocks: one host whose clock is ahead would otherwise lift every version above
# what a later write after a data loss can reach (a logout would then be undone by a
# republish), and one whose clock is behind would write a login after a loss with a
# version below what the other hosts hold (and they would republish over it).
_NOW_MS = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: record, intent. ARGV: "cas" or "republish", version, tokens blob. The CAS writes
# when the record still has ARGV[2], with a new version; the republish writes ARGV[2]
# itself, only while the record's version is lower.
_WRITE_LIVE = (
    _NOW_MS
    + _REPLICAS
    + """
local v = tonumber(redis.call('HGET', KEYS[1], 'v')) or 0
local nv
if ARGV[1] == 'cas' then
  if v ~= tonumber(ARGV[2]) then return {0, v, 0} end
  nv = math.max(v + 1, now)
else
  nv = tonumber(ARGV[2])
  if v >= nv then return {0, v, 0} end
end
redis.call('HSET', KEYS[1], 'v', string.format('%d', nv), 'state', 'live', 'tokens', ARGV[3])
redis.call('HDEL', KEYS[1], 'pending', 'pending_fp')
redis.call('DEL', KEYS[2])
return {1, nv, replicas()}
"""
)

# KEYS: record, intent. ARGV: state, expected version ('' = unconditional).
_WRITE_STATE = (
    _NOW_MS
    + _REPLICAS
    + """
local v = tonumber(redis.call('HGET', KEYS[1], 'v')) or 0
if ARGV[2] ~= '' and v ~= tonumber(ARGV[2]) then return {0, v, 0} end
local nv = math.max(v + 1, now)
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'v', string.format('%d', nv), 'state', ARGV[1])
return {1, nv, replicas()}
"""
)


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


class RedisTokenStore:
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
        max_connections: Redis calls this process makes at once; more wait their turn
            (at most one socket timeout, then ``StoreUnavailable``). One more
            connection is kept for the intents.
        clock: Monotonic time and cancellable waits.
        environ: Where to read ``TEXTSTACK_TOKEN_STORE`` (default ``os.environ``).

    Time bounds (redis-py's own retries are off; a caller that wants to retry decides so
    on ``StoreUnavailable``): against a server that stops answering, a call ends
    within one socket timeout, plus ``connect_timeout`` when it must open a connection;
    with Sentinel, finding the master adds up to one timeout per Sentinel that does not
    answer. A script the server lost (a restart, a failover, ``SCRIPT FLUSH``) is loaded
    again, two more exchanges. Intents and record writes add up to ``ack_timeout`` when a
    replica must acknowledge them. A lease wait takes at most ``wait`` plus one call, a
    ``wait_for_change()`` its ``timeout`` plus one call. A call that finds
    ``max_connections`` calls in flight waits at most one more socket timeout for its turn.

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
        max_connections: int = 64,
        clock: Clock = SYSTEM_CLOCK,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        if url is None:
            url = (os.environ if environ is None else environ).get(ENV_TOKEN_STORE) or None
        if not url:
            raise ConfigurationError(f"no token store: pass a URL or set {ENV_TOKEN_STORE}")
        if not _NAMESPACE.fullmatch(namespace):
            raise ConfigurationError("namespace must be 1-64 letters, digits, '.', '_' or '-'")
        _check_range("socket_timeout", socket_timeout, 0.01, 60.0)
        _check_range("connect_timeout", connect_timeout, 0.01, 60.0)
        if ack_timeout is None:
            ack_timeout = min(0.5, socket_timeout / 2)
        _check_range("ack_timeout", ack_timeout, 0.001, socket_timeout * 0.9)
        _check_range("intent_grace", intent_grace, 0.0, 600.0)
        _check_range("poll_interval", poll_interval, 0.001, 5.0)
        if replicas is not None and not 0 <= replicas <= 16:
            raise ConfigurationError("replicas must be None or between 0 and 16")
        if isinstance(max_connections, bool) or not 1 <= max_connections <= 10000:
            raise ConfigurationError("max_connections must be between 1 and 10000")
        self._target = parse_store_url(url)
        self._namespace = namespace
        self._cipher = cipher
        self._ack_ms = max(1, int(ack_timeout * 1000))
        self._replicas = replicas
        self._grace_ms = int(intent_grace * 1000)
        self._poll = poll_interval
        self._clock = clock
        self._never = threading.Event()
        tag = f"{{textstack:{namespace}}}"
        self._record_key = f"{tag}:record"
        self._intent_key = f"{tag}:intent"
        self._tag = tag
        # redis-py fails a caller at once ("Too many connections") when its pool is full,
        # which would pass a busy process's healthy Redis for unreachable: callers over
        # the limit queue here instead, for a bounded time. The pool has one connection
        # more than the slots, for the pinned intent connection.
        self._max_connections = max_connections
        self._slot_wait = socket_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._client = _connect(self._target, socket_timeout, connect_timeout, max_connections + 1)
        # WAIT counts the writes made on its own connection, so an intent (or a commit, a
        # logout) and its WAIT must share one: a pinned client, built on first use, one
        # at a time.
        self._pid = os.getpid()
        self._intent_lock = threading.Lock()
        self._intent_client: Any = None
        self._intent_scripts: dict[str, Any] = {}
        _INSTANCES.add(self)
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("load", _LOAD),
                ("acquire", _ACQUIRE),
                ("release", _RELEASE),
                ("replace_pending", _REPLACE_PENDING),
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
        self._check_fork()
        with self._intent_lock:
            pinned, self._intent_client = self._intent_client, None
        if pinned is not None:
            self._call(pinned.close, pooled=False)
        self._call(self._client.close, pooled=False)

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

    def acquire_lease(
        self, owner: str, *, ttl: float, wait: float, purpose: str = "refresh"
    ) -> Optional[Lease]:
        if not _OWNER.fullmatch(owner):
            raise ConfigurationError("a lease owner is 1-200 characters without a newline")
        _check_range("ttl", ttl, 0.001, 3600.0)
        _check_range("wait", wait, 0.0, 3600.0)
        token = secrets.token_hex(16)
        deadline = self._clock.monotonic() + wait
        while True:
            lease = self._try_lease(owner, token, purpose, ttl, renew=False)
            if isinstance(lease, Lease):
                return lease
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return None
            holder_left = lease / 1000.0 if lease > 0 else self._poll
            pause = min(left, holder_left, self._jittered())
            self._clock.wait(pause, self._never)

    def renew_lease(self, lease: Lease, *, ttl: float) -> Optional[Lease]:
        _check_range("ttl", ttl, 0.001, 3600.0)
        renewed = self._try_lease(lease.owner, lease.token, lease.purpose, ttl, renew=True)
        return renewed if isinstance(renewed, Lease) else None

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
        keys = [self._lease_key("refresh"), self._intent_key, self._record_key]
        args = [_lease_value(lease), str(version), fingerprint(refresh_token), str(self._grace_ms)]
        started = self._clock.monotonic()
        (ok, reason, pttl, current, _connected), acknowledged = self._replicated(
            "intent", keys, args, done=lambda reply: bool(reply[0]), connected=4
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
        return IntentResult(
            recorded=True,
            acknowledged=acknowledged,
            reason="" if acknowledged else "replica",
            lease_deadline=lease_deadline,
            current_version=int(current),
        )

    def commit(self, expected_version: int, tokens: TokenSet, *, now: float) -> WriteResult:
        # ``now`` is not used: the new version comes from the Redis server's clock.
        return self._write_live("cas", expected_version, tokens)

    def republish(self, held_version: int, tokens: TokenSet) -> WriteResult:
        if held_version <= 0:
            raise StoreError("only a version this process holds can be republished")
        return self._write_live("republish", held_version, tokens)

    def tombstone(self, *, now: float) -> WriteResult:
        return self._write_state(RecordState.TOMBSTONE, None)

    def mark_revoked(self, expected_version: int, *, now: float) -> WriteResult:
        return self._write_state(RecordState.REVOKED, expected_version)

    def offer_pending(self, record: Mapping[str, object]) -> bool:
        return self._replace_pending(None, record)

    def replace_pending(
        self, expected: Mapping[str, object], record: Optional[Mapping[str, object]]
    ) -> bool:
        return self._replace_pending(expected, record)

    def clear_pending(self) -> None:
        self._call(lambda: self._client.hdel(self._record_key, "pending", "pending_fp"))

    def wait_for_change(self, version: int, *, timeout: float) -> Optional[Snapshot]:
        _check_range("timeout", timeout, 0.0, 3600.0)
        deadline = self._clock.monotonic() + timeout
        while True:
            snapshot = self.load()
            if snapshot.version != version:
                return snapshot
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return None
            self._clock.wait(min(left, self._jittered()), self._never)

    def _check_fork(self) -> None:
        # uWSGI may fork without running Python's fork hooks: the pid tells too.
        if self._pid != os.getpid():
            self._after_fork()

    def _after_fork(self) -> None:
        """Forgets the parent's pinned connection and intent lock, in a forked child.

        The pinned client's socket is the parent's too (redis-py's pool notices a fork,
        a connection held outside it does not): replies on it would cross. A parent thread
        that was inside :meth:`record_intent` at the fork holds the lock, and no thread in
        the child will release it; slots taken by parent threads likewise. The parent's
        socket is dropped, not closed: closing it here could not shut the parent's
        connection, and must not try.
        """
        self._pid = os.getpid()
        self._slots = threading.BoundedSemaphore(self._max_connections)
        self._intent_lock = threading.Lock()
        self._intent_client = None
        self._intent_scripts = {}

    def _replicated(
        self,
        script: str,
        keys: list[str],
        args: list[str],
        *,
        done: Callable[[Any], bool],
        connected: int,
    ) -> tuple[Any, bool]:
        """Runs a pinned script, then waits for a replica to have what it wrote.

        ``done`` tells from the reply whether the script wrote; ``connected`` is the
        reply's index of the master's connected replicas. Returns the reply and whether
        enough replicas acknowledged (true when nothing was written or none is needed).
        """
        self._check_fork()
        with self._intent_lock:
            client, scripts = self._call(self._pinned, pooled=False)
            self._call(lambda: _ready(client), pooled=False)
            reply = self._call(lambda: scripts[script](keys=keys, args=args), pooled=False)
            if not done(reply):
                return reply, True
            needed = self._replicas if self._replicas is not None else min(1, int(reply[connected]))
            if needed == 0:
                return reply, True
            acked = self._call(lambda: client.wait(needed, self._ack_ms), pooled=False)
            return reply, int(acked) >= needed

    def _pinned(self) -> tuple[Any, dict[str, Any]]:
        """The pinned connection and its scripts (call with the intent lock held)."""
        if self._intent_client is None:
            import redis

            client = redis.Redis(
                connection_pool=self._client.connection_pool, single_connection_client=True
            )
            self._intent_scripts = {
                "intent": client.register_script(_INTENT),
                "write_state": client.register_script(_WRITE_STATE),
                "write_live": client.register_script(_WRITE_LIVE),
            }
            self._intent_client = client
        return self._intent_client, self._intent_scripts

    def _replace_pending(
        self, expected: Optional[Mapping[str, object]], record: Optional[Mapping[str, object]]
    ) -> bool:
        seen = "" if expected is None else _pending_fingerprint(expected)
        new, blob = "", b""
        if record is not None:
            plaintext = _encode_pending(record)
            new, blob = _pending_fingerprint(record), self._seal(plaintext, "pending")
        done = self._call(
            lambda: self._scripts["replace_pending"](
                keys=[self._record_key], args=[seen, new, blob]
            )
        )
        return bool(done)

    def _jittered(self) -> float:
        # Jitter keeps hosts that woke together from polling Redis in lockstep.
        return self._poll * (0.5 + random.random())  # noqa: S311 - spacing, not a secret

    def _lease_key(self, purpose: str) -> str:
        if not _PURPOSE.fullmatch(purpose):
            raise ConfigurationError("a lease purpose is 1-16 lowercase letters")
        return f"{self._tag}:lease:{purpose}"

    def _try_lease(
        self, owner: str, token: str, purpose: str, ttl: float, *, renew: bool
    ) -> Lease | int:
        """The lease when taken, else the holder's remaining milliseconds."""
        value = f"{owner}\n{token}"
        ttl_ms = max(1, int(ttl * 1000))
        started = self._clock.monotonic()
        ok, pttl = self._call(
            lambda: self._scripts["acquire"](
                keys=[self._lease_key(purpose), self._intent_key],
                args=[value, str(ttl_ms), "1" if renew else "0", str(self._grace_ms)],
            )
        )
        if ok:
            return Lease(owner=owner, token=token, purpose=purpose, deadline=started + ttl)
        return max(0, int(pttl))

    def _write_live(self, mode: str, version: int, tokens: TokenSet) -> WriteResult:
        blob = self._seal(encode_tokens(tokens), "tokens")
        return self._write("write_live", [mode, str(version), blob])

    def _write_state(self, state: RecordState, expected: Optional[int]) -> WriteResult:
        return self._write("write_state", [state.value, "" if expected is None else str(expected)])

    def _write(self, script: str, args: list[Any]) -> WriteResult:
        (ok, version, _connected), acknowledged = self._replicated(
            script,
            [self._record_key, self._intent_key],
            args,
            done=lambda reply: bool(reply[0]),
            connected=2,
        )
        return WriteResult(ok=bool(ok), version=int(version), acknowledged=acknowledged)

    def _seal(self, plaintext: bytes, part: str) -> bytes:
        cipher = self._cipher
        if cipher is None:
            return plaintext
        identity = self._identity(part)
        return self._ciphered(
            "encrypt", part, lambda: cipher.encrypt(plaintext, kind=CIPHER_KIND, identity=identity)
        )

    def _open(self, blob: object, part: str) -> bytes:
        data = blob if isinstance(blob, bytes) else str(blob).encode("utf-8")
        cipher = self._cipher
        if cipher is None:
            return data
        identity = self._identity(part)
        return self._ciphered(
            "decrypt", part, lambda: cipher.decrypt(data, kind=CIPHER_KIND, identity=identity)
        )

    def _ciphered(self, verb: str, part: str, fn: Callable[[], bytes]) -> bytes:
        """The cipher's answer; its failure (a wrong key, a key service out of reach) as
        the store's error, so that it has the package's one exception root."""
        try:
            return fn()
        except TextStackError:
            raise
        except Exception as exc:
            # The cipher's own words may name a key id; they never hold the key or the data.
            raise StoreError(
                f"the {part} record in namespace {self._namespace!r} does not {verb} "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def _identity(self, part: str) -> str:
        return f"{self._namespace}#{part}"

    def _call(self, fn: Callable[[], _T], *, pooled: bool = True) -> _T:
        """Runs one Redis call, mapping redis-py's errors to ours with no secret in them.

        ``pooled`` calls take a connection from the shared pool, so they take a slot first.
        """
        import redis.exceptions as rex

        slots = self._slots if pooled else None
        if slots is not None and not slots.acquire(timeout=self._slot_wait):
            raise StoreUnavailable(
                f"token store {self.location}: {self._max_connections} calls already in "
                "flight in this process (max_connections)"
            )
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
        finally:
            if slots is not None:
                slots.release()

    def _scrub(self, text: str) -> str:
        secret = self._target.password
        return text.replace(secret, "***") if secret else text


_INSTANCES: weakref.WeakSet[RedisTokenStore] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for store in list(_INSTANCES):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _connect(
    target: StoreTarget, socket_timeout: float, connect_timeout: float, max_connections: int
) -> Any:
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
        "max_connections": max_connections,
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


def _ready(client: Any) -> None:
    """Makes a pinned connection ready: reopened if the server closed it while idle, and
    reopened through the connection's own ``connect``.

    redis-py's pool checks a connection as it hands it out and opens it with ``connect``;
    a client pinned to one does neither. Its first command after a restart or failover
    would fail, and a command on a closed connection reopens it without ``connect``, to
    the address it had: a Sentinel-managed one would never ask where the master went.
    An idle connection with something to read holds nothing but the close.
    """
    import redis.exceptions as rex

    connection = client.connection
    if connection._sock is not None:
        try:
            stale = connection.can_read(0)
        except (rex.ConnectionError, OSError):
            stale = True  # redis-py reads the close as an error
        if not stale:
            return
        connection.disconnect()
    connection.connect()


def _chain(exc: BaseException, secret: Optional[str]) -> Optional[BaseException]:
    """The exception to chain from: the original unless its text holds the secret."""
    if secret and secret in repr(exc):
        return None
    return exc


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g} seconds")


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


def _pending_fingerprint(record: Mapping[str, object]) -> str:
    # A record read back decodes to the same mapping, and encodes to the same bytes.
    return fingerprint(_encode_pending(record).decode("utf-8"))


def _decode_pending(payload: bytes) -> Mapping[str, object]:
    return json_object(payload, "pending sign-in")
