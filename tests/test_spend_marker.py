"""The spend record in the cache's lock file: who spent which refresh token, alive or not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from textstack_sdk import FileTokenCache
from textstack_sdk._spend_marker import SpendMarker, fingerprint, new_owner

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX")


@pytest.fixture
def cache(tmp_path: Path) -> FileTokenCache:
    cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
    with cache.lock(1) as locked:  # creates the folder and the lock file
        assert locked
    return cache


def plant(marker_path: Path, **fields: object) -> None:
    """Writes a record as another process would."""
    SpendMarker(marker_path).record("the-refresh-token")
    document = json.loads(marker_path.read_bytes())
    document.update(fields)
    raw = json.dumps(document).encode()
    marker_path.write_bytes(raw + b" " * (511 - len(raw)) + b"\n")


def test_a_live_other_process_is_recognised(cache) -> None:
    plant(cache.lock_path, pid=os.getppid(), started=None)
    marker = cache.spend_marker()
    assert marker.spent_elsewhere("the-refresh-token")
    assert not marker.spent_elsewhere("another-refresh-token")


def test_our_own_record_dead_writers_and_reused_pids_do_not_count(cache) -> None:
    marker = cache.spend_marker()
    assert marker.record("the-refresh-token")
    assert not marker.spent_elsewhere("the-refresh-token")  # ours
    plant(cache.lock_path, pid=2**22 + 12345)  # no such process
    assert not marker.spent_elsewhere("the-refresh-token")
    plant(cache.lock_path, pid=os.getppid(), started="1")  # that pid is a newer process
    assert not marker.spent_elsewhere("the-refresh-token")
    plant(cache.lock_path, pid=os.getppid(), host="another-machine/boot")
    assert not marker.spent_elsewhere("the-refresh-token")


def test_cleared_or_garbled_records_mean_nothing(cache) -> None:
    plant(cache.lock_path, pid=os.getppid(), started=None)
    marker = cache.spend_marker()
    assert marker.clear()
    assert not marker.spent_elsewhere("the-refresh-token")
    cache.lock_path.write_bytes(b"\x00\xff{not json")
    assert not marker.spent_elsewhere("the-refresh-token")


def test_the_record_is_fixed_size_secret_free_and_leaves_the_lock_working(cache) -> None:
    marker = cache.spend_marker()
    assert marker.record("secret-refresh-token")
    raw = cache.lock_path.read_bytes()
    assert len(raw) == 512
    assert b"secret-refresh-token" not in raw
    assert fingerprint("secret-refresh-token").encode() in raw
    assert marker.clear()
    assert cache.lock_path.read_bytes().strip() == b""
    assert cache.lock_path.stat().st_size == 512  # rewritten in place: no new space
    with cache.lock(1) as locked:
        assert locked
        assert marker.record("secret-refresh-token")


def test_a_symlinked_lock_file_is_never_written_through(cache, tmp_path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep me")
    cache.lock_path.unlink()
    cache.lock_path.symlink_to(target)
    assert not cache.spend_marker().record("the-refresh-token")
    assert target.read_bytes() == b"keep me"


def test_in_one_process_a_live_other_owner_counts_and_a_collected_one_does_not(cache) -> None:
    import gc

    class Holder:
        pass

    spender, asker = Holder(), Holder()
    marker = cache.spend_marker()
    mine = new_owner(asker)
    assert marker.record("the-refresh-token", new_owner(spender))
    assert marker.spent_elsewhere("the-refresh-token", mine)
    del spender
    gc.collect()
    assert not marker.spent_elsewhere("the-refresh-token", mine)
