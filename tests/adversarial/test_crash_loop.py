"""kill -9 during cache writes, disk full and read-only folders during a rotation save.

The crash loop forks writers from a small single-threaded helper process
(``_crash_zygote``) that saves two known complete pairs alternately and is SIGKILLed
after a seeded random delay; after every kill this process reads the cache.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from textstack_sdk import AesGcmCipher, Authorized, FileTokenCache, TokenManager, TokenSet
from textstack_sdk import _cache as cache_module
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeClock, FakeTextStackServer

from . import _budget
from ._crash_zygote import PAIRS
from ._report import scenario
from .test_wire_faults import refresh_is_live

ROOT = Path(__file__).resolve().parents[2]

KILL_LOOP = scenario(
    "crash",
    "writer SIGKILLed at random moments while saving two known pairs in a tight loop",
    "load() gives exactly one complete known pair after every kill (None only before the "
    "first save); never corrupt; temp files 0600 and removed by the cache's cleanup",
)
KILL_LOOP_SEALED = scenario(
    "crash",
    "writer SIGKILLed at random moments while saving two known pairs to an ENCRYPTED cache",
    "load() decrypts exactly one complete known pair after every kill; never an "
    "undecryptable or partial record; temp files 0600",
)
DISK = scenario(
    "disk",
    "disk full (ENOSPC mid-write, EDQUOT at fsync) and read-only folder (EROFS on "
    "rename, EACCES on create) while saving a rotated token in a real refresh",
    "old file intact, temp removed, new tokens kept in memory, one cache warning per "
    "streak, the next save succeeds once the fault is gone",
)


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(".mcp-token.json.*.tmp"))


@pytest.mark.timeout(600 if _budget.FULL else 120)
@pytest.mark.parametrize("sealed", [False, True], ids=["plaintext", "encrypted"])
def test_kill_9_during_saves_leaves_a_complete_pair(tmp_path: Path, sealed: bool) -> None:
    rng = random.Random(_budget.SEED)
    path = tmp_path / "mcp-token.json"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    key = AesGcmCipher.generate_key()
    if sealed:
        env["TEXTSTACK_CACHE_KEY"] = key  # the writers pick it up as any process would
    row = KILL_LOOP_SEALED if sealed else KILL_LOOP
    kills = _budget.CRASH_KILLS // 2 if sealed else _budget.CRASH_KILLS
    zygote = subprocess.Popen(
        [sys.executable, "-m", "tests.adversarial._crash_zygote", str(path)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert zygote.stdin is not None and zygote.stdout is not None
    known = {(p.access_token, p.refresh_token) for p in PAIRS}
    seen: dict[tuple[str, str | None], int] = {}
    mid_write = 0
    existed = False
    reader = FileTokenCache(path, cipher=AesGcmCipher(key) if sealed else None)
    started = time.monotonic()
    try:
        for _ in range(kills):
            # Mostly short: the first saves; sometimes long: deep in the loop.
            micros = rng.choice([rng.randint(0, 2000), rng.randint(0, 20000)])
            temps_before = len(_temps(tmp_path))
            zygote.stdin.write(f"{micros}\n")
            zygote.stdin.flush()
            assert zygote.stdout.readline().strip() == "killed 9"
            loaded = reader.load()
            if loaded is None:
                assert not existed and not path.exists(), "a saved cache read as None"
            else:
                existed = True
                pair = (loaded.access_token, loaded.refresh_token)
                assert pair in known, "a mixed or partial pair"
                seen[pair] = seen.get(pair, 0) + 1
            temps = _temps(tmp_path)
            if len(temps) > temps_before:
                mid_write += 1
            for temp in temps:
                assert temp.stat().st_mode & 0o777 == 0o600  # temps hold secrets
            assert not list(tmp_path.glob("*.corrupt-*"))
            if sealed and existed:
                assert reader.stored_key_id() == AesGcmCipher(key).key_id
            row.add("kills survived")
    finally:
        zygote.stdin.close()
        zygote.wait(10)
    assert len(seen) == 2, "the kills never landed after both pairs"
    assert len(_temps(tmp_path)) <= kills
    row.add("kills landing between temp create and rename", mid_write)
    # Abandoned temps are removed by the next save once they are a minute old.
    old = time.time() - 120
    for temp in _temps(tmp_path):
        os.utime(temp, (old, old))
    assert reader.save(PAIRS[0])
    assert _temps(tmp_path) == []
    assert time.monotonic() - started < (900 if _budget.FULL else 100)


# ------------------------------------------------------------------ disk faults


class _FaultyOs:
    """The ``os`` module as the cache sees it, with one call failing on demand."""

    def __init__(self, name: str, fail: Callable[..., Any]) -> None:
        self._name = name
        self._fail = fail
        self.active = True
        self.tripped = 0

    def __getattr__(self, attr: str) -> Any:
        real = getattr(os, attr)
        if attr != self._name:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.active:
                result = self._fail(real, *args, **kwargs)
                if result is not _PASS:
                    return result
            return real(*args, **kwargs)

        return call


_PASS = object()


def _half_then_enospc(real: Callable[..., Any], fd: int, data: Any) -> Any:
    if len(data) > 1:
        return real(fd, bytes(data[: len(data) // 2]))  # a partial write first
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _raise(code: int, only_temp: bool = False) -> Callable[..., Any]:
    def fail(real: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if only_temp and not str(args[0]).endswith(".tmp"):
            return _PASS
        raise OSError(code, os.strerror(code))

    return fail


DISK_FAULTS = {
    "ENOSPC mid-write": ("write", _half_then_enospc),
    "EDQUOT at fsync": ("fsync", _raise(errno.EDQUOT)),
    "EROFS on rename": ("replace", _raise(errno.EROFS)),
    "EACCES creating the temp": ("open", _raise(errno.EACCES, only_temp=True)),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(clock=clock, interval=5) as srv:
        yield srv


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("fault", sorted(DISK_FAULTS))
def test_save_failure_during_rotation_keeps_old_file_and_new_tokens(
    tmp_path: Path,
    server: FakeTextStackServer,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    path = tmp_path / "textstack" / "mcp-token.json"
    cache = FileTokenCache(path)
    access, refresh = server.issue_tokens()
    assert cache.save(TokenSet(access, refresh, decode_exp(access)))
    before = path.read_bytes()
    name, fail = DISK_FAULTS[fault]
    faulty = _FaultyOs(name, fail)
    monkeypatch.setattr(cache_module, "os", faulty)
    handler = _Warnings()
    logging.getLogger("textstack_sdk").addHandler(handler)
    try:
        with TokenManager(
            api_url=server.api_url,
            site_host=server.site_host,
            cache=cache,
            clock=clock,
            timeout=5,
            prompt=False,
        ) as tm:
            clock.advance(1000)  # expired: the next call refreshes and rotates
            first = tm.get_token()
            assert isinstance(first, Authorized) and first.access_token != access
            assert path.read_bytes() == before  # the old pair, byte for byte
            assert _temps(path.parent) == []
            assert tm.get_token() == first  # kept in memory
            assert server.is_valid_access_token(first.access_token)
            # A second failing save (the next rotation) does not warn again.
            clock.advance(1000)
            second = tm.get_token()
            assert isinstance(second, Authorized) and second != first
            assert path.read_bytes() == before and _temps(path.parent) == []
            cache_warnings = [r for r in handler.records if r.name == "textstack_sdk.cache"]
            assert len(cache_warnings) == 1, [r.getMessage() for r in cache_warnings]
            assert str(path) in cache_warnings[0].getMessage()
            # The fault is gone: the next rotation is saved.
            faulty.active = False
            clock.advance(1000)
            third = tm.get_token()
            assert isinstance(third, Authorized) and third != second
            stored = cache.load()
            assert stored is not None and stored.access_token == third.access_token
    finally:
        logging.getLogger("textstack_sdk").removeHandler(handler)
    assert refresh_is_live(server, stored.refresh_token)
    DISK.add("faults injected", 2)
    DISK.add("rotations saved after the fault")
