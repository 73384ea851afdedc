"""``textstack cache key | rekey | decrypt`` and the encryption line of ``status``, in-process."""

from __future__ import annotations

import base64
import json
import os
import pathlib
from collections.abc import Iterator

import pytest

from textstack_sdk import AesGcmCipher, FileTokenCache, TokenSet
from textstack_sdk._jwt import decode_exp
from textstack_sdk.cli import main
from textstack_sdk.testing import FakeTextStackServer

pytestmark = pytest.mark.timeout(30)

OLD = AesGcmCipher.generate_key()
NEW = AesGcmCipher.generate_key()


@pytest.fixture
def cache_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "tokens" / "mcp-token.json"


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


@pytest.fixture(autouse=True)
def env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    cache_path: pathlib.Path,
    server: FakeTextStackServer,
) -> None:
    for name in list(os.environ):
        if name.startswith("TEXTSTACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN_CACHE", str(cache_path))
    monkeypatch.setenv("TEXTSTACK_API_URL", server.api_url)
    monkeypatch.setenv("TEXTSTACK_SITE_HOST", server.site_host)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def seed(server: FakeTextStackServer, cache: FileTokenCache) -> TokenSet:
    access, refresh = server.issue_tokens()
    tokens = TokenSet(access, refresh, decode_exp(access))
    assert cache.save(tokens)
    return tokens


def test_cache_key_prints_only_a_fresh_key_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "cache", "key")
    assert code == 0
    key = out.strip()
    assert out == key + "\n" and len(base64.urlsafe_b64decode(key)) == 32
    assert key not in err and key[:12] not in err
    assert "TEXTSTACK_CACHE_KEY" in err and AesGcmCipher(key).key_id in err
    assert run(capsys, "cache", "key")[1].strip() != key


def test_cache_without_an_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "cache")
    assert code == 2 and out == "" and "ACTION" in err


def test_rekey_migrates_and_rotates(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cache_path: pathlib.Path,
    server: FakeTextStackServer,
) -> None:
    tokens = seed(server, FileTokenCache(cache_path, cipher=None))
    code, _, err = run(capsys, "cache", "rekey")
    assert code == 5 and "no encryption key is configured" in err
    monkeypatch.setenv("TEXTSTACK_CACHE_KEY", OLD)
    code, out, _ = run(capsys, "cache", "rekey")
    assert code == 0 and "(was plaintext)" in out and AesGcmCipher(OLD).key_id in out
    monkeypatch.setenv("TEXTSTACK_CACHE_KEY", f"{NEW},{OLD}")
    code, out, _ = run(capsys, "status")
    assert f"on, key id {AesGcmCipher(NEW).key_id}; the file is under key id" in out
    code, out, _ = run(capsys, "cache", "rekey")
    assert code == 0 and f"was key id {AesGcmCipher(OLD).key_id}" in out
    assert FileTokenCache(cache_path, cipher=AesGcmCipher(NEW)).load() == tokens
    for key in (OLD, NEW):
        assert key not in out


def test_status_reports_encryption(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cache_path: pathlib.Path,
    server: FakeTextStackServer,
) -> None:
    seed(server, FileTokenCache(cache_path, cipher=AesGcmCipher(OLD)))
    monkeypatch.setenv("TEXTSTACK_CACHE_KEY", OLD)
    code, out, _ = run(capsys, "status")
    assert code == 0 and f"encryption:  on, key id {AesGcmCipher(OLD).key_id}" in out
    code, out, _ = run(capsys, "status", "--json")
    data = json.loads(out)
    assert data["encrypted"] is True and data["key_id"] == AesGcmCipher(OLD).key_id
    assert data["stored_key_id"] == AesGcmCipher(OLD).key_id
    monkeypatch.delenv("TEXTSTACK_CACHE_KEY")
    code, out, _ = run(capsys, "status")
    assert f"encrypted with key id {AesGcmCipher(OLD).key_id}, and no key is configured" in out
    assert "textstack logout" in out  # the last error names the way out


def test_wrong_key_then_logout_is_the_way_out(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cache_path: pathlib.Path,
    server: FakeTextStackServer,
) -> None:
    seed(server, FileTokenCache(cache_path, cipher=AesGcmCipher(OLD)))
    before = cache_path.read_bytes()
    monkeypatch.setenv("TEXTSTACK_CACHE_KEY", NEW)
    code, _, err = run(capsys, "books")
    assert code == 3 and AesGcmCipher(OLD).key_id in err and "textstack logout" in err
    code, _, err = run(capsys, "login", "--no-browser", "--timeout", "5")
    assert code == 3 and AesGcmCipher(OLD).key_id in err
    assert cache_path.read_bytes() == before
    code, out, _ = run(capsys, "logout")
    assert code == 0 and "Signed out; removed" in out
    assert not cache_path.exists()


def test_decrypt_needs_the_confirmation(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cache_path: pathlib.Path,
    server: FakeTextStackServer,
) -> None:
    tokens = seed(server, FileTokenCache(cache_path, cipher=AesGcmCipher(OLD)))
    monkeypatch.setenv("TEXTSTACK_CACHE_KEY", OLD)
    before = cache_path.read_bytes()
    code, _, err = run(capsys, "cache", "decrypt")
    assert code == 5 and "--to-plaintext" in err
    code, _, err = run(capsys, "cache", "decrypt", "--to-plaintext")
    assert code == 2 and "--yes" in err and "UNENCRYPTED" in err
    assert cache_path.read_bytes() == before
    code, out, err = run(capsys, "cache", "decrypt", "--to-plaintext", "--yes")
    assert code == 0 and "in plaintext" in out and "still configured" in err
    document = json.loads(cache_path.read_bytes())
    assert document["accessToken"] == tokens.access_token
    assert tokens.access_token not in out + err
    assert oct(cache_path.stat().st_mode & 0o777) == "0o600"
