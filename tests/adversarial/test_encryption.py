"""Encryption at rest under attack: altered records, foreign places, wrong keys, junk files.

Every case runs over the public API (``FileTokenCache``, ``TokenManager``) against real
files, and checks the failure rules: an undecryptable cache is never parsed as
plaintext, never moved aside, never overwritten, and ``get_token()`` says which key it
needs and how to get out.
"""

from __future__ import annotations

import json
import pathlib
import random
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from textstack_sdk import (
    AesGcmCipher,
    CacheDecryptionError,
    Failed,
    FileTokenCache,
    TokenManager,
    TokenSet,
)
from textstack_sdk.testing import FakeClock, FakeTextStackServer

from . import _budget
from ._report import scenario

KEY = AesGcmCipher.generate_key()
OTHER = AesGcmCipher.generate_key()
ACCESS = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSIsImV4cCI6MTc5NTg1MjgwMH0.SECRETACCESS"
TOKENS = TokenSet(ACCESS, "SECRETREFRESH-abc_123", 1795852800.0)

ALTERED = scenario(
    "encryption",
    "sealed cache: every byte of the record flipped (3 bit patterns each), random "
    "multi-byte edits, truncations and extensions",
    "load() raises CacheDecryptionError with the way out (`textstack logout`); the file "
    "stays byte-for-byte; "
    "nothing moved aside; never a token",
)
JUNK = scenario(
    "encryption",
    "key configured, arbitrary bytes / marker-bearing JSON in a 0600 cache file",
    "a valid plaintext cache is migrated, anything else raises CacheDecryptionError; "
    "never moved aside, never rewritten",
)
PLACES = scenario(
    "encryption",
    "a record copied to other paths, or opened as another store kind or identity",
    "CacheDecryptionError (tampered); the tokens never decrypt outside their place",
)
WRONG_KEYS = scenario(
    "encryption",
    "TokenManager over a cache sealed with another key, with no key, and altered",
    "get_token() is Failed naming the key id, TEXTSTACK_CACHE_KEY and `textstack logout`; "
    "no request sent; file unchanged",
)


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "textstack" / "mcp-token.json"


def _assert_fails_closed(cache: FileTokenCache, path: pathlib.Path, content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(CacheDecryptionError) as caught:
        cache.load()
    assert "textstack logout" in caught.value.message
    assert path.read_bytes() == content
    assert not any(".corrupt-" in p.name for p in path.parent.iterdir())


def test_every_altered_byte_fails_closed(path: pathlib.Path) -> None:
    cache = FileTokenCache(path, cipher=AesGcmCipher(KEY))
    assert cache.save(TOKENS)
    record = path.read_bytes()
    for index in range(len(record)):
        for flip in (0x01, 0x10, 0xFF):
            altered = bytearray(record)
            altered[index] ^= flip
            _assert_fails_closed(cache, path, bytes(altered))
            ALTERED.add("records altered")
    rng = random.Random(_budget.SEED)
    for _ in range(_budget.PROPERTY_EXAMPLES):
        altered = bytearray(record)
        for _ in range(rng.randint(2, 8)):
            altered[rng.randrange(len(altered))] = rng.randrange(256)
        if bytes(altered) == record:
            continue
        _assert_fails_closed(cache, path, bytes(altered))
        ALTERED.add("records altered")
    for cut in range(0, len(record), 7):
        _assert_fails_closed(cache, path, record[:cut] or b"{}")
        ALTERED.add("records altered")
    for tail in (b" ", b"\n", b"\x00", b"{}", record):
        _assert_fails_closed(cache, path, record + tail)
        ALTERED.add("records altered")


@given(
    content=st.one_of(
        st.binary(max_size=600),
        st.builds(
            lambda doc: doc.encode(),
            st.fixed_dictionaries(
                {
                    "format": st.sampled_from(["textstack-sealed/1", "textstack-sealed/2"]),
                    "kid": st.text("0123456789abcdef", min_size=0, max_size=17),
                    "nonce": st.text(max_size=20),
                    "data": st.text(max_size=80),
                }
            ).map(lambda d: json.dumps(d, separators=(",", ":"))),
        ),
    )
)
@_budget.PROPERTY_SETTINGS
def test_arbitrary_files_with_a_key_configured(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "junk" / "mcp-token.json"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o600)
    cache = FileTokenCache(path, cipher=AesGcmCipher(KEY))
    try:
        loaded = cache.load()
    except CacheDecryptionError:
        assert path.read_bytes() == content
        JUNK.add("undecryptable files left alone")
    else:
        # Only an absent-by-refusal file or a real plaintext cache gets here.
        if loaded is not None:
            assert cache.stored_key_id() == AesGcmCipher(KEY).key_id
            JUNK.add("plaintext caches migrated")
        else:
            assert path.read_bytes() == content
            JUNK.add("refused files left alone")
    assert not any(".corrupt-" in p.name for p in path.parent.iterdir())
    JUNK.add("inputs tried")


def test_records_do_not_decrypt_anywhere_else(tmp_path: pathlib.Path) -> None:
    cipher = AesGcmCipher(KEY)
    home = tmp_path / "a" / "mcp-token.json"
    assert FileTokenCache(home, cipher=cipher).save(TOKENS)
    record = home.read_bytes()
    elsewhere = [
        tmp_path / "b" / "mcp-token.json",
        tmp_path / "a" / "mcp-token.json.bak",
        tmp_path / "a" / "other.json",
        tmp_path / "a" / "sub" / "mcp-token.json",
    ]
    for other in elsewhere:
        other.parent.mkdir(mode=0o700, exist_ok=True)
        shutil.copy2(home, other)
        with pytest.raises(CacheDecryptionError) as caught:
            FileTokenCache(other, cipher=cipher).load()
        assert caught.value.reason == "tampered"
        PLACES.add("places tried")
    for kind, ident in (("redis", str(home)), ("file-pending", str(home)), ("file", "")):
        with pytest.raises(CacheDecryptionError):
            cipher.decrypt(record, kind=kind, identity=ident)
        PLACES.add("places tried")


@pytest.mark.parametrize("variant", ["other key", "no key", "altered"])
def test_manager_over_an_undecryptable_cache(path: pathlib.Path, variant: str) -> None:
    clock = FakeClock()
    with FakeTextStackServer(clock=clock, interval=5) as server:
        access, refresh = server.issue_tokens()
        assert FileTokenCache(path, cipher=AesGcmCipher(KEY)).save(TokenSet(access, refresh))
        if variant == "altered":
            raw = bytearray(path.read_bytes())
            raw[-20] ^= 0x04
            path.write_bytes(bytes(raw))
        before = path.read_bytes()
        cipher = {"other key": AesGcmCipher(OTHER), "no key": None}.get(variant, AesGcmCipher(KEY))
        server.reset_counters()
        with TokenManager(
            api_url=server.api_url,
            site_host=server.site_host,
            cache=FileTokenCache(path, cipher=cipher),
            clock=clock,
            prompt=False,
            timeout=5,
        ) as tm:
            for _ in range(5):
                result = tm.get_token()
                assert isinstance(result, Failed)
                for needed in (AesGcmCipher(KEY).key_id, "TEXTSTACK_CACHE_KEY", "textstack logout"):
                    assert needed in result.message
                clock.advance(120)
                WRONG_KEYS.add("get_token calls refused")
        assert server.requests == []
        assert path.read_bytes() == before
