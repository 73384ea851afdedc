"""The real cipher in the Redis store: the records of a namespace are sealed to it."""
# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import time
import uuid

import pytest
from _redis_harness import RedisProcess, redis_binary, shared_redis  # noqa: F401 - fixtures

from textstack_sdk import AesGcmCipher, TextStackError, TokenSet
from textstack_sdk._redis_store import RedisTokenStore

pytestmark = pytest.mark.timeout(30)

TOKENS = TokenSet("access-secret-1", "refresh-secret-1", 1e9)
KEY = AesGcmCipher.generate_key()


def test_aes_gcm_records_in_redis_are_bound_to_their_namespace(
    shared_redis: RedisProcess,
) -> None:
    namespace = f"c-{uuid.uuid4().hex[:12]}"
    cipher = AesGcmCipher(KEY)
    store = RedisTokenStore(shared_redis.url, namespace=namespace, cipher=cipher)
    other = RedisTokenStore(shared_redis.url, namespace=namespace + "x", cipher=cipher)
    stranger = RedisTokenStore(
        shared_redis.url, namespace=namespace, cipher=AesGcmCipher(AesGcmCipher.generate_key())
    )
    client = shared_redis.client()
    try:
        assert store.commit(0, TOKENS, now=time.time()).ok
        assert store.offer_pending({"device_code": "device-secret-1", "user_code": "ABCD"})
        raw = client.hgetall(f"{{textstack:{namespace}}}:record")
        for value in raw.values():
            for secret in (b"access-secret-1", b"refresh-secret-1", b"device-secret-1"):
                assert secret not in value
        assert b'"format":"textstack-sealed/1"' in raw[b"tokens"]
        assert store.load().tokens == TOKENS
        assert store.load().pending == {"device_code": "device-secret-1", "user_code": "ABCD"}
        client.hset(f"{{textstack:{namespace}x}}:record", mapping=raw)
        with pytest.raises(TextStackError, match=cipher.key_id):
            other.load()  # copied to another namespace
        with pytest.raises(TextStackError, match=cipher.key_id):
            stranger.load()  # another key: the message names the one it needs
        assert KEY not in repr(store)
    finally:
        client.close()
        for made in (store, other, stranger):
            made.close()
