"""What the file store adds to the contract: the .NET tool's view of the file, generations
it did not write, deletions read as logouts, dead holders, encryption, a damaged state."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from textstack_sdk._cache import FileTokenCache
from textstack_sdk._cipher import AesGcmCipher
from textstack_sdk._file_store import FileTokenStore
from textstack_sdk._models import TokenSet
from textstack_sdk._store import RecordState, StoreError

pytestmark = pytest.mark.timeout(30)


def tokens(n: int) -> TokenSet:
    return TokenSet(access_token=f"access-{n}", refresh_token=f"refresh-{n}", access_exp=1e9 + n)


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "mcp-token.json"


def store(path: pathlib.Path, **options: object) -> FileTokenStore:
    return FileTokenStore(FileTokenCache(path, cipher=None), poll_interval=0.01, **options)  # type: ignore[arg-type]


def test_the_file_keeps_the_dotnet_fields_and_adds_the_version(path: pathlib.Path) -> None:
    result = store(path).commit(0, tokens(1), now=time.time())
    document = json.loads(path.read_bytes())
    assert document["accessToken"] == "access-1"
    assert document["refreshToken"] == "refresh-1"
    assert "accessExpiresAt" in document
    assert document["version"] == result.version
    assert FileTokenCache(path, cipher=None).load() == tokens(1)


def test_a_rewrite_without_the_version_is_a_new_generation_not_a_regression(
    path: pathlib.Path,
) -> None:
    fleet = store(path)
    held = fleet.commit(0, tokens(1), now=time.time() + 3600).version
    # The .NET tool refreshed: same format, no version field, a rotated refresh token.
    document = {"accessToken": "access-2", "refreshToken": "refresh-2"}
    document["accessExpiresAt"] = "2001-09-09T01:46:42+00:00"
    tmp = path.with_name("dotnet.tmp")
    tmp.write_text(json.dumps(document))
    tmp.chmod(0o600)
    os.replace(tmp, path)
    snap = fleet.load()
    assert snap.state is RecordState.LIVE and snap.tokens is not None
    assert snap.tokens.refresh_token == "refresh-2"
    assert snap.version > held and not snap.regressed_from(held)
    assert fleet.load().version == snap.version, "the same file reads as the same version"
    assert not fleet.republish(held, tokens(1)).ok, "the spent token is never put back"
    assert fleet.commit(snap.version, tokens(3), now=time.time()).ok


def test_a_cache_file_deleted_by_another_tool_reads_as_a_logout(path: pathlib.Path) -> None:
    fleet = store(path)
    held = fleet.commit(0, tokens(1), now=time.time()).version
    path.unlink()  # `textstack logout` of an older SDK, or the .NET tool's logout
    snap = fleet.load()
    assert snap.state is RecordState.TOMBSTONE and snap.version > held
    assert not fleet.republish(held, tokens(1)).ok


def test_a_tombstone_leaves_no_cache_file_so_the_dotnet_tool_sees_logged_out(
    path: pathlib.Path,
) -> None:
    fleet = store(path)
    fleet.commit(0, tokens(1), now=time.time())
    assert fleet.tombstone(now=time.time()).ok
    assert not path.exists()
    assert FileTokenCache(path, cipher=None).load() is None
    assert fleet.load().state is RecordState.TOMBSTONE


def test_a_dead_holders_lease_is_free_at_once(path: pathlib.Path) -> None:
    code = (
        "import pathlib, sys\n"
        "from textstack_sdk._cache import FileTokenCache\n"
        "from textstack_sdk._file_store import FileTokenStore\n"
        "s = FileTokenStore(FileTokenCache(pathlib.Path(sys.argv[1]), cipher=None))\n"
        "assert s.acquire_lease('gone', ttl=600, wait=0) is not None\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=30)
    fleet = store(path)
    snap = fleet.load()
    assert snap.lease_owner is None, "a lease whose process has exited holds nothing"
    assert fleet.acquire_lease("me", ttl=10, wait=0) is not None


def test_a_live_holder_in_another_process_keeps_its_lease(path: pathlib.Path) -> None:
    code = (
        "import pathlib, sys\n"
        "from textstack_sdk._cache import FileTokenCache\n"
        "from textstack_sdk._file_store import FileTokenStore\n"
        "s = FileTokenStore(FileTokenCache(pathlib.Path(sys.argv[1]), cipher=None))\n"
        "assert s.acquire_lease('other', ttl=600, wait=0) is not None\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        fleet = store(path)
        assert fleet.load().lease_owner == "other"
        assert fleet.acquire_lease("me", ttl=10, wait=0) is None
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
    assert fleet.acquire_lease("me", ttl=10, wait=0) is not None


def test_the_version_is_inside_the_encrypted_record(path: pathlib.Path) -> None:
    cipher = AesGcmCipher([b"k" * 32])
    fleet = FileTokenStore(FileTokenCache(path, cipher=cipher))
    version = fleet.commit(0, tokens(1), now=time.time()).version
    assert b"access-1" not in path.read_bytes()
    assert b'"version"' not in path.read_bytes()
    snap = FileTokenStore(FileTokenCache(path, cipher=cipher)).load()
    assert (snap.version, snap.tokens) == (version, tokens(1))


def test_a_store_that_cannot_decrypt_the_cache_fails_rather_than_guessing(
    path: pathlib.Path,
) -> None:
    FileTokenStore(FileTokenCache(path, cipher=AesGcmCipher([b"k" * 32]))).commit(
        0, tokens(1), now=time.time()
    )
    stranger = FileTokenStore(FileTokenCache(path, cipher=AesGcmCipher([b"x" * 32])))
    with pytest.raises(StoreError):
        stranger.load()


def test_a_damaged_state_file_fails_closed(path: pathlib.Path) -> None:
    fleet = store(path)
    fleet.commit(0, tokens(1), now=time.time())
    fleet.cache.store_path.write_text('{"hw": "many"}')
    with pytest.raises(StoreError, match="malformed"):
        fleet.load()
