"""Encryption at rest under attack: the gaps an adversarial review found, each pinned.

A key pasted into the wrong variable, a set-but-blank key variable, sealed records that
``save()`` cannot open, paths that are not UTF-8, a key file written by a Windows editor,
and pickling a cipher.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import pickle
import shutil
import sys
import types
from collections.abc import Iterator

import pytest

from textstack_sdk import (
    AesGcmCipher,
    CacheDecryptionError,
    ConfigurationError,
    FileTokenCache,
    TokenSet,
    cipher_from_env,
)
from textstack_sdk.cli import main

KEY = AesGcmCipher.generate_key()
OTHER = AesGcmCipher.generate_key()
ACCESS = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSIsImV4cCI6MTc5NTg1MjgwMH0.SECRETACCESS"
TOKENS = TokenSet(ACCESS, "SECRETREFRESH-abc_123", 1795852800.0)
NEWER = TokenSet(ACCESS + "2", "SECRETREFRESH-def_456", 1795852800.0)


def variants(key: str) -> list[str]:
    """The key as text, unpadded, in standard base64, and a long prefix of each."""
    raw = base64.urlsafe_b64decode(key)
    forms = {key, key.rstrip("="), base64.b64encode(raw).decode("ascii"), raw.hex()}
    return sorted(forms | {form[:16] for form in forms})


def leaks(text: str, key: str) -> list[str]:
    return [form for form in variants(key) if form in text]


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "textstack" / "mcp-token.json"


@pytest.fixture
def fake_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """A ``keyring`` module whose answer the test chooses (a value or an exception)."""
    answer: dict[str, object] = {"value": None}

    def get_password(service: str, user: str) -> object:
        value = answer["value"]
        if isinstance(value, BaseException):
            raise value
        return value

    monkeypatch.setitem(sys.modules, "keyring", types.SimpleNamespace(get_password=get_password))
    yield answer


# -- the key is never echoed, even from a variable meant for something else ----------------


@pytest.mark.parametrize(
    "env",
    [
        {"TEXTSTACK_CACHE_KEY_FILE": KEY},
        {"TEXTSTACK_CACHE_KEY_FILE": f"  {KEY}\n"},
        {"TEXTSTACK_CACHE_KEY_KEYRING": KEY},
    ],
    ids=["key in KEY_FILE", "padded key in KEY_FILE", "key in KEY_KEYRING"],
)
@pytest.mark.parametrize("backend", ["raises", "empty"])
def test_a_key_pasted_into_a_name_variable_is_not_echoed(
    env: dict[str, str], backend: str, fake_keyring: dict[str, object]
) -> None:
    fake_keyring["value"] = RuntimeError("no backend") if backend == "raises" else None
    with pytest.raises(ConfigurationError) as caught:
        cipher_from_env(environ=env)
    name = next(iter(env))
    assert name in str(caught.value)
    assert leaks(str(caught.value), KEY) == []
    assert leaks(str(caught.value) + repr(caught.value), KEY) == []


def test_the_cli_does_not_echo_a_key_pasted_into_the_key_file_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: pathlib.Path
) -> None:
    for name in list(os.environ):
        if name.startswith("TEXTSTACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN_CACHE", str(path))
    monkeypatch.setenv("TEXTSTACK_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("TEXTSTACK_CACHE_KEY_FILE", KEY)
    for argv in (["status"], ["cache", "rekey"], ["token"]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code != 0
        assert "TEXTSTACK_CACHE_KEY_FILE" in captured.err
        assert leaks(captured.out + captured.err, KEY) == [], argv


# -- a key variable that is set but blank is not "no encryption" -------------------------


@pytest.mark.parametrize(
    "name", ["TEXTSTACK_CACHE_KEY", "TEXTSTACK_CACHE_KEY_FILE", "TEXTSTACK_CACHE_KEY_KEYRING"]
)
@pytest.mark.parametrize("value", ["", "  ", "\n"])
def test_a_set_but_blank_key_variable_is_an_error_not_plaintext(
    name: str, value: str, path: pathlib.Path
) -> None:
    # `docker run -e TEXTSTACK_CACHE_KEY="$KEY"` with $KEY unset in the shell: the
    # deployment meant to encrypt, and a silent plaintext cache is what issue 12 forbids.
    with pytest.raises(ConfigurationError) as caught:
        cipher_from_env(environ={name: value})
    assert name in str(caught.value) and "unset" in str(caught.value)
    # Not a fallback to the next source either.
    with pytest.raises(ConfigurationError):
        cipher_from_env(environ={name: value, "TEXTSTACK_CACHE_KEY_KEYRING": "svc"})
    assert not path.exists()


def test_unset_key_variables_still_mean_no_encryption() -> None:
    assert cipher_from_env(environ={}) is None
    assert cipher_from_env(environ={"TEXTSTACK_OTHER": ""}) is None


# -- save() never replaces a sealed record it cannot open --------------------------------


def _tamper(path: pathlib.Path) -> None:
    document = json.loads(path.read_bytes())
    data = document["data"]
    document["data"] = ("A" if data[0] != "A" else "B") + data[1:]
    path.write_bytes(json.dumps(document, separators=(",", ":")).encode("ascii"))


def _break_json(path: pathlib.Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def _copy_from_elsewhere(path: pathlib.Path) -> None:
    elsewhere = path.parent.parent / "elsewhere" / "mcp-token.json"
    assert FileTokenCache(elsewhere, cipher=AesGcmCipher(KEY)).save(TOKENS)
    shutil.copyfile(elsewhere, path)


def _open_to_group(path: pathlib.Path) -> None:
    path.chmod(0o644)  # a sealed file restored from a backup: its mode is no secret


@pytest.mark.parametrize(
    ("writer", "damage", "reader"),
    [
        (KEY, _tamper, KEY),
        (KEY, _tamper, None),
        (KEY, _break_json, KEY),
        (KEY, _break_json, None),
        (KEY, _copy_from_elsewhere, KEY),
        (OTHER, _open_to_group, KEY),
        (OTHER, _open_to_group, None),
    ],
    ids=[
        "tampered, own key",
        "tampered, no key",
        "truncated, own key",
        "truncated, no key",
        "copied from another path, own key",
        "foreign key, mode 0644",
        "foreign key, mode 0644, no key",
    ],
)
def test_save_never_replaces_a_sealed_record_it_cannot_open(
    path: pathlib.Path,
    writer: str,
    damage: object,
    reader: str | None,
) -> None:
    assert FileTokenCache(path, cipher=AesGcmCipher(writer)).save(TOKENS)
    assert callable(damage)
    damage(path)
    before = path.read_bytes()
    cache = FileTokenCache(path, cipher=None if reader is None else AesGcmCipher(reader))
    # A new sign-in that finished while the file became unreadable must not replace it.
    assert cache.save(NEWER) is False
    assert path.read_bytes() == before
    problem = cache.save_problem or ""
    assert "textstack logout" in problem
    assert list(path.parent.glob("*.corrupt-*")) == []
    # The user's say: logout discards it, and then a sign-in is saved.
    assert cache.clear() and cache.save(NEWER) and cache.load() == NEWER


def test_save_still_replaces_what_it_can_open(path: pathlib.Path) -> None:
    # Rotation: a record under an older key is re-encrypted by the next save.
    assert FileTokenCache(path, cipher=AesGcmCipher(OTHER)).save(TOKENS)
    rotated = FileTokenCache(path, cipher=AesGcmCipher([KEY, OTHER]))
    assert rotated.save(NEWER) and rotated.stored_key_id() == AesGcmCipher(KEY).key_id
    # A plaintext file and a corrupt plaintext file are no sealed records.
    path.write_bytes(b"{not json")
    assert rotated.save(TOKENS) and rotated.load() == TOKENS


# -- paths that are not UTF-8 --------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux allows non-UTF-8 file names")
def test_a_cache_path_that_is_not_utf8_round_trips(tmp_path: pathlib.Path) -> None:
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    cache = FileTokenCache(os.path.join(folder, "mcp-token.json"), cipher=AesGcmCipher(KEY))
    assert cache.save(TOKENS) is True
    assert cache.load() == TOKENS
    # Still bound to its place: the same bytes elsewhere do not open.
    other = FileTokenCache(tmp_path / "plain" / "mcp-token.json", cipher=AesGcmCipher(KEY))
    other.directory.mkdir(mode=0o700)
    shutil.copyfile(cache.path, other.path)
    other.path.chmod(0o600)
    with pytest.raises(CacheDecryptionError):
        other.load()


# -- key files as editors write them --------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        f"{KEY}\n".encode(),
        f"{KEY}\r\n".encode(),
        b"\xef\xbb\xbf" + f"{KEY}\r\n".encode(),
        b"\xef\xbb\xbf" + f"{KEY}\r\n{OTHER}\r\n".encode(),
    ],
    ids=["LF", "CRLF", "BOM+CRLF", "BOM, two keys"],
)
def test_key_files_with_line_ends_and_a_bom(tmp_path: pathlib.Path, content: bytes) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    cipher = cipher_from_env(environ={"TEXTSTACK_CACHE_KEY_FILE": str(key_file)})
    assert cipher is not None and cipher.key_id == AesGcmCipher(KEY).key_id


def test_a_utf16_key_file_is_refused_by_name(tmp_path: pathlib.Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY.encode("utf-16"))
    key_file.chmod(0o600)
    with pytest.raises(ConfigurationError) as caught:
        cipher_from_env(environ={"TEXTSTACK_CACHE_KEY_FILE": str(key_file)})
    assert str(key_file) in str(caught.value) and leaks(str(caught.value), KEY) == []


# -- a cipher is never pickled --------------------------------------------------------------


class _KeepsItsKey:
    """An AEAD object that pickles with its key, as cryptography's Python AESGCM once did."""

    def __init__(self, key: bytes) -> None:
        self._key = key


def test_a_cipher_refuses_pickling_whatever_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    monkeypatch.setattr(aead, "AESGCM", _KeepsItsKey)
    cipher = AesGcmCipher(KEY)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError) as caught:
            pickle.dumps(cipher, protocol=protocol)
        assert leaks(str(caught.value), KEY) == []


# -- migration against an in-place writer ----------------------------------------------------


def _plaintext(tokens: TokenSet) -> bytes:
    return json.dumps(
        {"accessToken": tokens.access_token, "refreshToken": tokens.refresh_token}
    ).encode()


def test_migration_never_overwrites_a_plaintext_write_made_in_place(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TextStack's .NET tool truncates the file and writes into the same inode, taking no
    # lock: between our read and our re-write the file can hold newer tokens under the
    # same (st_dev, st_ino). Sealing what we read would put back a spent refresh token.
    from textstack_sdk import _filelock

    path.parent.mkdir(mode=0o700)
    path.write_bytes(_plaintext(TOKENS))
    path.chmod(0o600)
    real_acquire = _filelock.InterProcessLock.acquire
    writes: list[bool] = []

    def acquire(self: _filelock.InterProcessLock, timeout: float) -> bool:
        if not writes:
            writes.append(True)
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, _plaintext(NEWER))
            finally:
                os.close(fd)
        return real_acquire(self, timeout)

    monkeypatch.setattr(_filelock.InterProcessLock, "acquire", acquire)
    cache = FileTokenCache(path, cipher=AesGcmCipher(KEY))
    assert cache.load() is not None and writes
    # The newer plaintext is still there; the next load reads it and seals it.
    assert cache.stored_key_id() is None
    assert json.loads(path.read_bytes())["refreshToken"] == NEWER.refresh_token
    monkeypatch.setattr(_filelock.InterProcessLock, "acquire", real_acquire)
    loaded = cache.load()
    assert loaded is not None and loaded.refresh_token == NEWER.refresh_token
    assert cache.stored_key_id() == AesGcmCipher(KEY).key_id
    assert cache.load() == loaded


# -- the format is frozen: a record written today opens tomorrow -----------------------------

# Written by this release (key: the bytes 0..31). The record must be canonical to open, so
# any change to how records are rendered (the note's wording, field order, padding) would
# make every existing cache "altered": this record must keep opening, byte for byte.
KAT_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
KAT_IDENTITY = "/srv/textstack/mcp-token.json"
KAT_PLAIN = b'{"accessToken": null, "refreshToken": "kat-refresh"}'
KAT_RECORD = (
    b'{"format":"textstack-sealed/1","alg":"A256GCM","kid":"d38b617bcea5957a",'
    b'"nonce":"R-6BmKYTp9MNbGDe","data":"Vqh9zwjBVXxy_CtBubw2QtydMbsIWfJ-TAlJORjVBdHfZUXz3'
    b'gWZMaccPvZI3sEypJ50mjtyssyzmhmsVzyfHQkymnk","note":"encrypted TextStack tokens; '
    b'readable only by textstack_sdk with the key (TEXTSTACK_CACHE_KEY) named by kid"}'
)


def test_a_record_of_format_1_still_opens() -> None:
    cipher = AesGcmCipher(KAT_KEY)
    assert cipher.key_id == "d38b617bcea5957a"
    assert cipher.decrypt(KAT_RECORD, kind="file", identity=KAT_IDENTITY) == KAT_PLAIN
    # A re-encryption renders the same envelope around a fresh nonce and ciphertext.
    fresh = json.loads(cipher.encrypt(KAT_PLAIN, kind="file", identity=KAT_IDENTITY))
    frozen = json.loads(KAT_RECORD)
    assert list(fresh) == list(frozen)
    assert {k: fresh[k] for k in ("format", "alg", "kid", "note")} == {
        k: frozen[k] for k in ("format", "alg", "kid", "note")
    }


def test_the_associated_data_is_the_documented_layout() -> None:
    # Pinned for other readers of the format (the Redis store, a port in another
    # language): domain, format, kind and identity joined by NUL bytes.
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    record = json.loads(KAT_RECORD)

    def b64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    ad = b"\x00".join(
        [b"textstack-sdk sealed record", b"", b"textstack-sealed/1", b"file", KAT_IDENTITY.encode()]
    )
    opened = aead.AESGCM(b64(KAT_KEY)).decrypt(b64(record["nonce"]), b64(record["data"]), ad)
    assert opened == KAT_PLAIN


def test_status_names_the_key_of_a_sealed_file_whatever_its_mode(path: pathlib.Path) -> None:
    # The key id is not secret: a sealed file restored 0644 (refused for reading tokens)
    # still says which key it needs, so `textstack status` does not call it plaintext.
    assert FileTokenCache(path, cipher=AesGcmCipher(OTHER)).save(TOKENS)
    path.chmod(0o644)
    for cipher in (AesGcmCipher(KEY), None):
        cache = FileTokenCache(path, cipher=cipher)
        assert cache.stored_key_id() == AesGcmCipher(OTHER).key_id
