"""Encryption at rest, over the public API: sealing, failing closed, keys, rotation."""

from __future__ import annotations

import importlib
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from _tm_helpers import manager, seed

from textstack_sdk import (
    AesGcmCipher,
    Authorized,
    CacheDecryptionError,
    ConfigurationError,
    Failed,
    FileTokenCache,
    Pending,
    TokenCipher,
    TokenSet,
    cipher_from_env,
)
from textstack_sdk.testing import FakeClock, FakeTextStackServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
OLD = AesGcmCipher.generate_key()
NEW = AesGcmCipher.generate_key()
ACCESS = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSIsImV4cCI6MTc5NTg1MjgwMH0.SECRETACCESS"
REFRESH = "SECRETREFRESH-abc_123"
TOKENS = TokenSet(ACCESS, REFRESH, 1795852800.0)


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "textstack" / "mcp-token.json"


def sealed(path: pathlib.Path, *keys: str) -> FileTokenCache:
    return FileTokenCache(path, cipher=AesGcmCipher(list(keys)))


# -- the record --------------------------------------------------------------------------


def test_round_trip_and_the_file_holds_no_token(path: pathlib.Path) -> None:
    cache = sealed(path, OLD)
    assert cache.save(TOKENS)
    assert cache.load() == TOKENS
    raw = path.read_bytes()
    assert b"SECRET" not in raw and ACCESS.encode() not in raw
    # What TextStack's .NET tool reads: a JSON object that holds no token, not a crash.
    document = json.loads(raw)
    assert "accessToken" not in document and "refreshToken" not in document
    assert document["format"] == "textstack-sealed/1"
    assert document["kid"] == cache.stored_key_id() == AesGcmCipher(OLD).key_id
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_every_write_draws_a_new_nonce(path: pathlib.Path) -> None:
    cache = sealed(path, OLD)
    records = set()
    for _ in range(20):
        assert cache.save(TOKENS)
        records.add(json.loads(path.read_bytes())["nonce"])
    assert len(records) == 20


def test_altering_any_byte_fails_closed_and_leaves_the_file(path: pathlib.Path) -> None:
    cache = sealed(path, OLD)
    assert cache.save(TOKENS)
    original = path.read_bytes()
    for index in range(len(original)):
        for flip in (0x01, 0x20, 0x80):
            altered = bytearray(original)
            altered[index] ^= flip
            path.write_bytes(bytes(altered))
            with pytest.raises(CacheDecryptionError) as caught:
                cache.load()
            assert "textstack logout" in caught.value.message
            assert path.read_bytes() == bytes(altered)  # never moved aside nor rewritten
    # Truncations and appended bytes too.
    for altered_bytes in (original[:-1], original + b" ", original + b"\n", b" " + original):
        path.write_bytes(altered_bytes)
        with pytest.raises(CacheDecryptionError):
            cache.load()
    assert list(path.parent.glob("*.corrupt-*")) == []


def test_a_record_copied_to_another_path_does_not_decrypt(tmp_path: pathlib.Path) -> None:
    first = sealed(tmp_path / "a" / "mcp-token.json", OLD)
    assert first.save(TOKENS)
    other = tmp_path / "b" / "mcp-token.json"
    other.parent.mkdir(mode=0o700)
    shutil.copy2(first.path, other)
    with pytest.raises(CacheDecryptionError) as caught:
        sealed(other, OLD).load()
    assert caught.value.reason == "tampered"
    assert "copied from another location" in caught.value.message


def test_a_record_of_another_store_kind_does_not_decrypt() -> None:
    cipher = AesGcmCipher(OLD)
    record = cipher.encrypt(b"x", kind="file", identity="/a")
    assert cipher.decrypt(record, kind="file", identity="/a") == b"x"
    with pytest.raises(CacheDecryptionError):
        cipher.decrypt(record, kind="redis", identity="/a")
    with pytest.raises(CacheDecryptionError):
        cipher.decrypt(record, kind="file", identity="/a/")
    assert isinstance(cipher, TokenCipher)


# -- wrong keys: Failed naming the key, nothing overwritten ------------------------------


@pytest.mark.parametrize("reader_keys", [[NEW], []], ids=["unknown key id", "no key"])
def test_undecryptable_cache_fails_with_the_way_out_and_is_never_replaced(
    path: pathlib.Path, server: FakeTextStackServer, clock: FakeClock, reader_keys: list[str]
) -> None:
    seed(server, sealed(path, OLD))
    before = path.read_bytes()
    cache = sealed(path, *reader_keys) if reader_keys else FileTokenCache(path, cipher=None)
    server.reset_counters()
    tm = manager(server, clock, cache)
    try:
        for _ in range(3):
            result = tm.get_token()
            assert isinstance(result, Failed) and not result.retryable
            needed = AesGcmCipher(OLD).key_id
            assert needed in result.message
            assert "TEXTSTACK_CACHE_KEY" in result.message
            assert "textstack logout" in result.message
        assert tm.status().last_error == result.message
        assert tm.status().stored_key_id == needed
        # No sign-in was started over it, nothing was sent, the file is as it was.
        assert server.requests == []
        assert path.read_bytes() == before
        assert list(path.parent.glob("*.corrupt-*")) == []
        # A save from elsewhere (a login finishing) does not overwrite it either.
        assert not cache.save(TOKENS)
        assert path.read_bytes() == before
        # The user's say: logout discards it, and a new sign-in can start.
        tm.logout()
        assert not path.exists()
        assert isinstance(tm.get_token(), Pending)
    finally:
        tm.close()


def test_tampered_cache_gives_failed_through_the_manager(
    path: pathlib.Path, server: FakeTextStackServer, clock: FakeClock
) -> None:
    cache = sealed(path, OLD)
    seed(server, cache)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    server.reset_counters()
    with manager(server, clock, cache) as tm:
        result = tm.get_token()
        assert isinstance(result, Failed)
        assert AesGcmCipher(OLD).key_id in result.message
        assert server.requests == []
    assert path.read_bytes() == bytes(raw)


def test_a_running_manager_stops_when_the_cache_becomes_undecryptable(
    path: pathlib.Path, server: FakeTextStackServer, clock: FakeClock
) -> None:
    seed(server, sealed(path, OLD))
    with manager(server, clock, sealed(path, OLD)) as tm:
        assert isinstance(tm.get_token(), Authorized)
        # Another host, already rotated to a key this one lacks, writes the cache.
        assert sealed(path, NEW, OLD).save(TOKENS)
        clock.advance(10_000)  # the token expires: the manager goes back to the file
        before = path.read_bytes()
        result = tm.get_token()
        assert isinstance(result, Failed) and AesGcmCipher(NEW).key_id in result.message
        assert path.read_bytes() == before


# -- migration and the no-plaintext rule --------------------------------------------------


def test_plaintext_cache_is_read_once_and_rewritten_encrypted(
    path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert FileTokenCache(path, cipher=None).save(TOKENS)
    assert b"accessToken" in path.read_bytes()
    cache = sealed(path, OLD)
    with caplog.at_level(logging.INFO, logger="textstack_sdk"):
        assert cache.load() == TOKENS
        assert cache.load() == TOKENS
    lines = [r for r in caplog.records if "re-wrote it encrypted" in r.getMessage()]
    assert len(lines) == 1 and AesGcmCipher(OLD).key_id in lines[0].getMessage()
    assert cache.stored_key_id() == AesGcmCipher(OLD).key_id
    assert b"SECRET" not in path.read_bytes()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_unsafe_plaintext_cache_is_not_migrated(path: pathlib.Path) -> None:
    assert FileTokenCache(path, cipher=None).save(TOKENS)
    path.chmod(0o644)
    assert sealed(path, OLD).load() is None  # refused, as without a key
    assert b"accessToken" in path.read_bytes()


def test_corrupt_file_with_a_key_configured_is_not_moved_aside(path: pathlib.Path) -> None:
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b'{"format":"textstack-sealed/1", truncated')
    path.chmod(0o600)
    for cache in (sealed(path, OLD), FileTokenCache(path, cipher=None)):
        with pytest.raises(CacheDecryptionError):
            cache.load()
    assert path.exists() and list(path.parent.glob("*.corrupt-*")) == []


def test_no_plaintext_is_written_while_a_key_is_configured(path: pathlib.Path) -> None:
    cache = sealed(path, OLD)
    assert cache.save(TOKENS)
    assert cache.save_pending({"deviceCode": "SECRETDEVICECODE-0123456789", "n": 1})
    for written in path.parent.iterdir():
        if written.is_file():
            assert b"SECRET" not in written.read_bytes(), written.name
    assert cache.load_pending() == {"deviceCode": "SECRETDEVICECODE-0123456789", "n": 1}
    # A process without the key neither reads nor cancels that shared sign-in.
    assert FileTokenCache(path, cipher=None).load_pending() is None
    assert cache.pending_path.exists()


def test_the_environment_key_encrypts_the_default_cache(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEXTSTACK_CACHE_KEY", OLD)
    cache = FileTokenCache(path)
    assert cache.cipher is not None and cache.cipher.key_id == AesGcmCipher(OLD).key_id
    assert cache.save(TOKENS)
    assert FileTokenCache(path, cipher=AesGcmCipher(OLD)).load() == TOKENS
    monkeypatch.delenv("TEXTSTACK_CACHE_KEY")
    assert FileTokenCache(path).cipher is None


def test_manager_from_env_picks_the_key(
    path: pathlib.Path, server: FakeTextStackServer, clock: FakeClock
) -> None:
    from textstack_sdk import provider_from_env

    env = {
        "TEXTSTACK_API_URL": server.api_url,
        "TEXTSTACK_SITE_HOST": server.site_host,
        "TEXTSTACK_MCP_TOKEN_CACHE": str(path),
        "TEXTSTACK_CACHE_KEY": f"{NEW},{OLD}",
    }
    provider = provider_from_env(env)
    try:
        cache = provider.cache  # type: ignore[attr-defined]
        assert cache.cipher.key_ids == (AesGcmCipher(NEW).key_id, AesGcmCipher(OLD).key_id)
        status = provider.status()  # type: ignore[attr-defined]
        assert status.encrypted and status.key_id == AesGcmCipher(NEW).key_id
    finally:
        provider.close()  # type: ignore[attr-defined]


# -- keys ---------------------------------------------------------------------------------


def test_keys_are_32_random_bytes_in_url_safe_base64() -> None:
    import base64

    key = AesGcmCipher.generate_key()
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert AesGcmCipher(key).key_id != AesGcmCipher(AesGcmCipher.generate_key()).key_id
    assert AesGcmCipher(key.rstrip("=")).key_id == AesGcmCipher(key).key_id
    assert AesGcmCipher(base64.urlsafe_b64decode(key)).key_id == AesGcmCipher(key).key_id


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "short",
        OLD[:-2],
        OLD.replace("=", "") + "AAAA",
        OLD.translate(str.maketrans("-_", "+/")) if ("-" in OLD or "_" in OLD) else OLD + "!",
        "x" * 44,
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AesGcmCipher(bad)
    if len(bad) >= 8:
        assert bad[:8] not in str(caught.value) and bad[-8:] not in str(caught.value)
    assert not bad or bad not in repr(caught.value)


def test_key_sources_first_found_wins(tmp_path: pathlib.Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(NEW + "\n")
    key_file.chmod(0o600)
    env = {"TEXTSTACK_CACHE_KEY": OLD, "TEXTSTACK_CACHE_KEY_FILE": str(key_file)}
    old_id, new_id = AesGcmCipher(OLD).key_id, AesGcmCipher(NEW).key_id
    explicit = cipher_from_env([NEW], environ=env)
    assert explicit is not None and explicit.key_id == new_id
    from_env = cipher_from_env(environ=env)
    assert from_env is not None and from_env.key_id == old_id
    from_file = cipher_from_env(environ={"TEXTSTACK_CACHE_KEY_FILE": str(key_file)})
    assert from_file is not None and from_file.key_id == new_id
    assert cipher_from_env(environ={}) is None
    listed = cipher_from_env(environ={"TEXTSTACK_CACHE_KEY": f" {NEW} , {OLD} "})
    assert listed is not None and listed.key_ids == (new_id, old_id)


def _refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        cipher_from_env(environ=env)
    assert NEW not in str(caught.value) and NEW[:12] not in str(caught.value)
    return str(caught.value)


def test_key_file_refusals(tmp_path: pathlib.Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(NEW)
    env = {"TEXTSTACK_CACHE_KEY_FILE": str(key_file)}
    for mode in (0o640, 0o604, 0o660, 0o666):
        key_file.chmod(mode)
        assert f"{mode:04o}" in _refused(env) and "chmod 600" in _refused(env)
    key_file.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(key_file)
    assert "symbolic link" in _refused({"TEXTSTACK_CACHE_KEY_FILE": str(link)})
    assert "does not exist" in _refused({"TEXTSTACK_CACHE_KEY_FILE": str(tmp_path / "no")})
    assert "absolute" in _refused({"TEXTSTACK_CACHE_KEY_FILE": "relative/key"})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    assert "FIFO" in _refused({"TEXTSTACK_CACHE_KEY_FILE": str(fifo)})
    assert "folder" in _refused({"TEXTSTACK_CACHE_KEY_FILE": str(tmp_path)})
    if os.getuid() == 0:
        os.chown(key_file, 65534, 65534)
        assert "owned by uid 65534" in _refused(env)
        os.chown(key_file, 0, 0)
    key_file.write_text("not a key at all")
    assert "not a key" in _refused(env)
    key_file.write_text("")
    assert "no key" in _refused(env)


def test_a_configured_but_unusable_source_never_falls_back(tmp_path: pathlib.Path) -> None:
    # The key file is broken: not "no encryption", an error.
    env = {"TEXTSTACK_CACHE_KEY_FILE": str(tmp_path / "missing")}
    with pytest.raises(ConfigurationError):
        FileTokenCache(tmp_path / "c.json", cipher=cipher_from_env(environ=env))
    with pytest.raises(ConfigurationError):
        cipher_from_env(environ={"TEXTSTACK_CACHE_KEY": f"{OLD},oops"})


def test_reprs_show_key_ids_only(path: pathlib.Path) -> None:
    cipher = AesGcmCipher([NEW, OLD])
    assert NEW not in repr(cipher) and cipher.key_id in repr(cipher)
    assert NEW not in repr(FileTokenCache(path, cipher=cipher))


# -- rotation -----------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys
    from textstack_sdk import Authorized, FileTokenCache, TokenManager
    api_url, host, path, action = sys.argv[1:5]
    with TokenManager(api_url=api_url, site_host=host, cache=FileTokenCache(path),
                      prompt=False, timeout=10) as tm:
        got = tm.get_token()
        if action == "refresh" and isinstance(got, Authorized):
            tm.invalidate(got.access_token)
            got = tm.get_token()
        print(type(got).__name__, getattr(got, "access_token", getattr(got, "message", "")))
    """
)


def _child(server: FakeTextStackServer, path: pathlib.Path, keys: str, action: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTSTACK_")}
    env["TEXTSTACK_CACHE_KEY"] = keys
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, server.api_url, server.site_host, str(path), action],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    kind, _, value = done.stdout.strip().partition(" ")
    assert kind == "Authorized", done.stdout
    return value


def test_two_phase_rotation_across_processes_loses_nothing(path: pathlib.Path) -> None:
    with FakeTextStackServer() as server:
        seeded = seed(server, sealed(path, OLD))
        old_id, new_id = AesGcmCipher(OLD).key_id, AesGcmCipher(NEW).key_id
        # Before: both hosts on the old key.
        assert _child(server, path, OLD, "get") == seeded.access_token
        # Phase 1: every host gets "new,old": old files still read; saves use the new key.
        assert _child(server, path, f"{NEW},{OLD}", "get") == seeded.access_token
        assert FileTokenCache(path, cipher=None).stored_key_id() == old_id
        first = _child(server, path, f"{NEW},{OLD}", "refresh")
        assert first != seeded.access_token
        assert FileTokenCache(path, cipher=None).stored_key_id() == new_id
        assert _child(server, path, f"{NEW},{OLD}", "get") == first
        # Phase 2: the old key is dropped; everything written in phase 1 still reads.
        assert _child(server, path, NEW, "get") == first
        second = _child(server, path, NEW, "refresh")
        assert second not in (first, seeded.access_token)
        assert _child(server, path, NEW, "get") == second
        assert FileTokenCache(path, cipher=None).stored_key_id() == new_id


def test_saving_re_encrypts_an_older_key_record(path: pathlib.Path) -> None:
    assert sealed(path, OLD).save(TOKENS)
    rotated = sealed(path, NEW, OLD)
    assert rotated.load() == TOKENS
    assert rotated.stored_key_id() == AesGcmCipher(OLD).key_id
    assert rotated.save(TOKENS)
    assert rotated.stored_key_id() == AesGcmCipher(NEW).key_id
    assert sealed(path, NEW).load() == TOKENS


# -- lazy import --------------------------------------------------------------------------


def test_importing_the_package_and_the_plaintext_hot_path_import_no_cryptography(
    tmp_path: pathlib.Path,
) -> None:
    script = textwrap.dedent(
        """
        import sys
        import textstack_sdk
        from textstack_sdk import FileTokenCache, TokenManager, TokenSet
        from textstack_sdk.testing import MockTransport
        cache = FileTokenCache(sys.argv[1])
        tok = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSIsImV4cCI6NDEwMjQ0NDgwMH0.x"
        assert cache.save(TokenSet(tok, "r" * 20, 4102444800.0))
        def never(request):
            raise AssertionError("no request expected")
        tm = TokenManager(cache=cache, transport=MockTransport(never), prompt=False)
        for _ in range(3):
            assert tm.get_token().access_token == tok
        print(sorted(m for m in sys.modules if m.split(".")[0] == "cryptography"))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTSTACK_")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "c" / "mcp-token.json")],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- rewrite (the CLI's rekey and decrypt) ------------------------------------------------


def test_rewrite_re_encrypts_under_the_first_key(path: pathlib.Path) -> None:
    assert FileTokenCache(path, cipher=None).save(TOKENS)
    assert sealed(path, OLD).rewrite() == "plaintext"
    assert sealed(path, NEW, OLD).rewrite() == AesGcmCipher(OLD).key_id
    assert sealed(path, NEW).load() == TOKENS
    assert sealed(path, NEW).rewrite(plaintext=True) == AesGcmCipher(NEW).key_id
    assert json.loads(path.read_bytes())["accessToken"] == ACCESS
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigurationError):
        FileTokenCache(path, cipher=None).rewrite()
    path.unlink()
    assert sealed(path, NEW).rewrite() is None


def test_rewrite_refuses_what_it_cannot_decrypt(path: pathlib.Path) -> None:
    assert sealed(path, OLD).save(TOKENS)
    before = path.read_bytes()
    for cache in (sealed(path, NEW), FileTokenCache(path, cipher=None)):
        for plaintext in (False, True):
            if cache.cipher is None and not plaintext:
                continue
            with pytest.raises(CacheDecryptionError):
                cache.rewrite(plaintext=plaintext)
            assert path.read_bytes() == before


# -- the OS keyring (optional extra) ------------------------------------------------------


class _MemoryKeyring:
    """A keyring backend holding passwords in a dict (the CI machine has no OS keyring)."""

    def __init__(self, stored: dict[tuple[str, str], str]) -> None:
        import keyring.backend

        class Backend(keyring.backend.KeyringBackend):
            priority = 1  # type: ignore[assignment]

            def get_password(self, service: str, username: str) -> str | None:
                return stored.get((service, username))

            def set_password(self, service: str, username: str, password: str) -> None:
                stored[(service, username)] = password

            def delete_password(self, service: str, username: str) -> None:
                stored.pop((service, username), None)

        self.backend = Backend()


def _keyring() -> Any:
    if os.environ.get("CI") == "true":
        import keyring  # the test extra brings it: CI must not skip

        return keyring
    return pytest.importorskip("keyring", reason="the keyring extra is not installed")


@pytest.fixture
def memory_keyring() -> Iterator[dict[tuple[str, str], str]]:
    keyring = _keyring()
    stored: dict[tuple[str, str], str] = {}
    previous = keyring.get_keyring()
    keyring.set_keyring(_MemoryKeyring(stored).backend)
    try:
        yield stored
    finally:
        keyring.set_keyring(previous)


def test_key_from_the_os_keyring(memory_keyring: dict[tuple[str, str], str]) -> None:
    env = {"TEXTSTACK_CACHE_KEY_KEYRING": "textstack"}
    with pytest.raises(ConfigurationError, match="holds no key"):
        cipher_from_env(environ=env)
    memory_keyring[("textstack", "cache-key")] = f"{NEW},{OLD}"
    cipher = cipher_from_env(environ=env)
    assert cipher is not None and cipher.key_ids[0] == AesGcmCipher(NEW).key_id
    # The key file and the variable come first.
    first = cipher_from_env(environ={**env, "TEXTSTACK_CACHE_KEY": OLD})
    assert first is not None and first.key_id == AesGcmCipher(OLD).key_id
    memory_keyring[("textstack", "cache-key")] = "not a key"
    assert "not a key" in _refused(env)


def test_an_unusable_keyring_is_an_error_not_plaintext() -> None:
    keyring = _keyring()
    fail = importlib.import_module("keyring.backends.fail")

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        message = _refused({"TEXTSTACK_CACHE_KEY_KEYRING": "textstack"})
        assert "could not be read" in message and "TEXTSTACK_CACHE_KEY_FILE" in message
    finally:
        keyring.set_keyring(previous)
