from __future__ import annotations

import base64
import errno
import json
import logging
import os
import pathlib
import pwd
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from textstack_sdk import _cache
from textstack_sdk._cache import (
    MAX_CACHE_BYTES,
    FileTokenCache,
    TokenCache,
    _parse_iso8601,
    default_cache_path,
)
from textstack_sdk._errors import ConfigurationError
from textstack_sdk._filelock import InterProcessLock
from textstack_sdk._models import TokenSet

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXP = 1795852800  # 2026-11-28T08:00:00Z
CORRUPT_NAME = re.compile(r"mcp-token\.json\.corrupt-\d{8}T\d{6}\.\d{6}Z")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(exp: object, marker: str = "SECRETACCESS") -> str:
    header = _b64(b'{"alg":"RS256","typ":"JWT"}')
    payload = _b64(json.dumps({"sub": "u1", "exp": exp}).encode())
    return f"{header}.{payload}.{marker}"


ACCESS = make_jwt(EXP)
REFRESH = "SECRETREFRESH-abc_123"


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "cfg" / "textstack" / "mcp-token.json"


@pytest.fixture
def cache(path: pathlib.Path) -> FileTokenCache:
    return FileTokenCache(path)


def write(path: pathlib.Path, content: bytes | str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    os.chmod(path, mode)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "textstack_sdk.cache" and r.levelno >= logging.INFO
    ]


def leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # System.Text.Json default (compact), .NET's "O" format with 7 fractional digits.
        '{"accessToken":"%s","refreshToken":"%s",'
        '"accessExpiresAt":"2026-11-28T08:00:00.0000000+00:00"}',
        '{"accessToken": "%s", "refreshToken": "%s", '
        '"accessExpiresAt": "2026-11-28T08:00:00+00:00"}',
        '{\r\n  "accessToken": "%s",\r\n  "refreshToken": "%s"\r\n}',
    ],
)
def test_loads_the_dotnet_format(path: pathlib.Path, cache: FileTokenCache, text: str) -> None:
    write(path, text % (ACCESS, REFRESH))
    assert cache.load() == TokenSet(ACCESS, REFRESH, float(EXP))


def test_save_writes_the_exact_dotnet_format(path: pathlib.Path, cache: FileTokenCache) -> None:
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP))) is True
    raw = path.read_text()
    assert raw == (
        f'{{"accessToken": "{ACCESS}", "refreshToken": "{REFRESH}", '
        '"accessExpiresAt": "2026-11-28T08:00:00+00:00"}'
    )
    assert list(json.loads(raw)) == ["accessToken", "refreshToken", "accessExpiresAt"]
    assert cache.load() == TokenSet(ACCESS, REFRESH, float(EXP))


def test_save_without_refresh_token_writes_null(path: pathlib.Path, cache: FileTokenCache) -> None:
    assert cache.save(TokenSet(ACCESS, None, float(EXP)))
    assert json.loads(path.read_text())["refreshToken"] is None
    assert cache.load() == TokenSet(ACCESS, None, float(EXP))


def test_unknown_exp_is_saved_as_now_so_it_reads_as_expired(
    path: pathlib.Path, cache: FileTokenCache
) -> None:
    before = int(time.time())
    assert cache.save(TokenSet("opaque-token", REFRESH, None))
    after = time.time()
    stamp = json.loads(path.read_text())["accessExpiresAt"]
    assert stamp.endswith("+00:00")
    written = _parse_iso8601(stamp)
    assert written is not None and before <= written <= after
    loaded = cache.load()
    assert loaded is not None and loaded.access_exp == written


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-28T10:15:00+00:00", 1795860900.0),
        ("2026-11-28T10:15:00Z", 1795860900.0),
        ("2026-11-28T10:15:00z", 1795860900.0),
        ("2026-11-28T12:15:00+02:00", 1795860900.0),
        ("2026-11-28T05:15:00-0500", 1795860900.0),
        ("2026-11-28T10:15:00.5000000+00:00", 1795860900.5),
        ("2026-11-28T10:15:00.123456789Z", 1795860900.123456),
        ("2026-11-28T10:15+00:00", 1795860900.0),
        ("2026-11-28T10:15:00", None),  # no offset: ambiguous
        ("2026-13-28T10:15:00Z", None),
        ("2026-11-28T10:15:00+25:00", None),
        ("tomorrow", None),
        ("", None),
        (1795860900, None),
        (None, None),
        (["2026-11-28T10:15:00Z"], None),
    ],
)
def test_iso8601_parsing(stamp: object, expected: float | None) -> None:
    result = _parse_iso8601(stamp)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("extra", "expected_exp"),
    [
        ({"accessExpiresAt": "2026-11-28T10:15:00Z"}, 1795860900.0),
        ({"accessExpiresAt": "not a date"}, None),
        ({"accessExpiresAt": 12}, None),
        ({}, None),
    ],
)
def test_opaque_token_falls_back_to_access_expires_at(
    path: pathlib.Path, cache: FileTokenCache, extra: dict[str, object], expected_exp: float | None
) -> None:
    write(path, json.dumps({"accessToken": "opaque", "refreshToken": REFRESH, **extra}))
    assert cache.load() == TokenSet("opaque", REFRESH, expected_exp)


def test_jwt_exp_wins_over_access_expires_at(path: pathlib.Path, cache: FileTokenCache) -> None:
    document = {"accessToken": ACCESS, "accessExpiresAt": "2030-01-01T00:00:00Z"}
    write(path, json.dumps(document))
    loaded = cache.load()
    assert loaded is not None and loaded.access_exp == EXP


@pytest.mark.parametrize("refresh", ["missing", None, ""])
def test_refresh_token_may_be_absent(
    path: pathlib.Path, cache: FileTokenCache, refresh: object
) -> None:
    document: dict[str, object] = {"accessToken": ACCESS}
    if refresh != "missing":
        document["refreshToken"] = refresh
    write(path, json.dumps(document))
    assert cache.load() == TokenSet(ACCESS, None, float(EXP))


def test_unknown_keys_are_ignored_and_not_preserved(
    path: pathlib.Path, cache: FileTokenCache
) -> None:
    write(path, json.dumps({"accessToken": ACCESS, "refreshToken": REFRESH, "user": {"x": 1}}))
    assert cache.load() == TokenSet(ACCESS, REFRESH, float(EXP))
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    assert "user" not in json.loads(path.read_text())


def test_utf8_bom_is_stripped_and_accepted(path: pathlib.Path, cache: FileTokenCache) -> None:
    write(path, b"\xef\xbb\xbf" + json.dumps({"accessToken": ACCESS}).encode())
    assert cache.load() == TokenSet(ACCESS, None, float(EXP))
    assert path.exists()


def test_is_a_token_cache_and_repr_shows_only_the_path(cache: FileTokenCache) -> None:
    assert isinstance(cache, TokenCache)
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    assert repr(cache) == f"FileTokenCache({str(cache.path)!r})"
    assert cache.directory == cache.path.parent
    assert cache.lock_path == cache.path.with_name("mcp-token.json.lock")


# -- default path --------------------------------------------------------------------------

HOME = {"HOME": "/home/ann"}
DEFAULT = pathlib.Path("/home/ann/.textstack/mcp-token.json")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "/srv/t.json"}, pathlib.Path("/srv/t.json")),
        ({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "/srv/../srv/t.json"}, pathlib.Path("/srv/t.json")),
        ({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "~/t/x.json"}, pathlib.Path("/home/ann/t/x.json")),
        ({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "tokens.json"}, DEFAULT),
        ({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "./tokens.json"}, DEFAULT),
        ({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": ""}, DEFAULT),
        ({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "~"}, DEFAULT),
        ({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "/srv/dir/"}, DEFAULT),
        (
            {**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "rel", "XDG_CONFIG_HOME": "/x"},
            pathlib.Path("/x/textstack/mcp-token.json"),
        ),
        ({**HOME, "XDG_CONFIG_HOME": "/x"}, pathlib.Path("/x/textstack/mcp-token.json")),
        ({**HOME, "XDG_CONFIG_HOME": ".config"}, DEFAULT),
        ({**HOME, "XDG_CONFIG_HOME": "~/.config"}, DEFAULT),
        ({**HOME, "XDG_CONFIG_HOME": ""}, DEFAULT),
        (HOME, DEFAULT),
    ],
)
def test_default_path(env: dict[str, str], expected: pathlib.Path) -> None:
    assert default_cache_path(env) == expected


def test_tilde_user_is_expanded_from_the_password_database() -> None:
    root_home = pwd.getpwnam("root").pw_dir
    result = default_cache_path({**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "~root/t.json"})
    assert result == pathlib.Path(root_home) / "t.json"


def test_relative_values_are_never_resolved_against_the_cwd(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {**HOME, "TEXTSTACK_MCP_TOKEN_CACHE": "t.json", "XDG_CONFIG_HOME": "cfg"}
    with caplog.at_level(logging.WARNING, logger="textstack_sdk.cache"):
        result = default_cache_path(env)
    assert result == DEFAULT
    assert not str(result).startswith(str(tmp_path))
    assert "TEXTSTACK_MCP_TOKEN_CACHE" in caplog.text


@pytest.mark.parametrize("home", [None, "", "relative/home"])
def test_unusable_home_falls_back_to_the_password_database(home: str | None) -> None:
    env = {} if home is None else {"HOME": home}
    expected = pathlib.Path(pwd.getpwuid(os.getuid()).pw_dir) / ".textstack" / "mcp-token.json"
    assert default_cache_path(env) == expected


def test_no_absolute_home_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(ConfigurationError):
        default_cache_path({})
    # An absolute override needs no home.
    assert default_cache_path({"TEXTSTACK_MCP_TOKEN_CACHE": "/a/b.json"}) == pathlib.Path(
        "/a/b.json"
    )
    # "~/..." without a home is unusable, not a crash.
    with pytest.raises(ConfigurationError):
        default_cache_path({"TEXTSTACK_MCP_TOKEN_CACHE": "~/b.json"})


def test_constructor_defaults_to_the_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "env.json"
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN_CACHE", str(target))
    assert FileTokenCache().path == target
    assert FileTokenCache(None).path == target


def test_constructor_makes_explicit_paths_absolute(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "/home/ann")
    assert FileTokenCache("t.json").path == tmp_path / "t.json"
    assert FileTokenCache(pathlib.Path("~/t.json")).path == pathlib.Path("/home/ann/t.json")
    for bad in ("", "a\0b"):
        with pytest.raises(ConfigurationError):
            FileTokenCache(bad)


# -- read hardening ------------------------------------------------------------------------


def test_missing_file_or_folder_is_none_without_noise(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert FileTokenCache(tmp_path / "nope.json").load() is None
        assert FileTokenCache(tmp_path / "no" / "such" / "nope.json").load() is None
        assert FileTokenCache(tmp_path / "nope.json").signature() is None
    assert caplog.records == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644, 0o666, 0o610])
def test_group_or_world_accessible_file_is_refused_and_untouched(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    content = json.dumps({"accessToken": ACCESS, "refreshToken": REFRESH})
    write(path, content, mode)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
    records = warnings_of(caplog)
    assert len(records) == 1
    message = records[0].getMessage()
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert f"chmod 600 {path}" in message
    assert path.read_text() == content
    assert os.stat(path).st_mode & 0o777 == mode
    assert [p.name for p in path.parent.iterdir()] == ["mcp-token.json"]


def test_owner_only_modes_are_accepted(path: pathlib.Path, cache: FileTokenCache) -> None:
    for mode in (0o400, 0o600, 0o700):
        write(path, json.dumps({"accessToken": ACCESS}), mode)
        assert cache.load() == TokenSet(ACCESS, None, float(EXP))


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown")
def test_file_of_another_owner_is_refused_and_untouched(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    content = json.dumps({"accessToken": ACCESS})
    write(path, content)
    os.chown(path, 1, 1)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
    records = warnings_of(caplog)
    assert len(records) == 1
    assert str(path) in records[0].getMessage() and "uid 1" in records[0].getMessage()
    assert path.read_text() == content and os.stat(path).st_uid == 1


def test_symlink_to_a_valid_file_is_refused_and_target_untouched(
    tmp_path: pathlib.Path,
    path: pathlib.Path,
    cache: FileTokenCache,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = tmp_path / "elsewhere.json"
    content = json.dumps({"accessToken": ACCESS})
    write(target, content)
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
        assert cache.save(TokenSet(make_jwt(EXP + 1), REFRESH, None)) is False
    records = warnings_of(caplog)
    assert len(records) == 2
    assert all("symbolic link" in r.getMessage() and str(path) in r.getMessage() for r in records)
    assert target.read_text() == content
    assert path.is_symlink()
    assert leftovers(path.parent) == []
    assert cache.clear() is True
    assert not path.is_symlink() and target.read_text() == content


def test_dangling_symlink_is_refused_and_target_not_created(
    tmp_path: pathlib.Path,
    path: pathlib.Path,
    cache: FileTokenCache,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = tmp_path / "victim"
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
        assert cache.save(TokenSet(ACCESS, REFRESH, None)) is False
    assert len(warnings_of(caplog)) == 2
    assert not target.exists()
    assert path.is_symlink()


def test_directory_at_path_is_refused(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    path.mkdir(parents=True, mode=0o700)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
    records = warnings_of(caplog)
    assert len(records) == 1 and "a folder" in records[0].getMessage()
    assert cache.save(TokenSet(ACCESS, REFRESH, None)) is False
    assert cache.clear() is False
    assert path.is_dir() and leftovers(path.parent) == []


@pytest.mark.timeout(5)
def test_fifo_at_path_is_refused_without_hanging(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    path.parent.mkdir(parents=True)
    os.mkfifo(path, 0o600)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
    records = warnings_of(caplog)
    assert len(records) == 1 and "FIFO" in records[0].getMessage()


def test_device_at_path_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # /dev/zero reads endlessly: the refusal must come from fstat, before any read.
    counts = _count_reads(monkeypatch)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert FileTokenCache("/dev/zero").load() is None
    assert counts == []
    records = warnings_of(caplog)
    assert len(records) == 1 and "a device, not a regular file" in records[0].getMessage()


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counts: list[int] = []
    real_read = os.read

    def counting(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        counts.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting)
    return counts


def test_huge_file_is_refused_without_reading_it(
    path: pathlib.Path,
    cache: FileTokenCache,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(path, b"{" + b" " * (10 * MAX_CACHE_BYTES))
    counts = _count_reads(monkeypatch)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
    assert sum(counts) <= MAX_CACHE_BYTES + 1
    records = warnings_of(caplog)
    assert len(records) == 1 and "bytes" in records[0].getMessage()
    assert path.stat().st_size == 10 * MAX_CACHE_BYTES + 1  # left in place


def test_file_growing_after_fstat_is_read_only_up_to_the_cap(
    path: pathlib.Path,
    cache: FileTokenCache,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(path, b"x" * (3 * MAX_CACHE_BYTES))
    real_fstat = os.fstat

    def small_fstat(fd: int) -> os.stat_result:
        fields = list(real_fstat(fd))
        fields[6] = 10  # st_size, as if the file grew after this fstat
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", small_fstat)
    counts = _count_reads(monkeypatch)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
    assert sum(counts) == MAX_CACHE_BYTES + 1
    assert len(warnings_of(caplog)) == 1
    assert path.exists()


CORRUPT = [
    pytest.param(b'{"accessToken": "SECRETACCESS-trunc', id="truncated"),
    pytest.param(b'{"accessToken": "SECRET\xff\xfeACCESS"}', id="invalid-utf8"),
    pytest.param(b"\xef\xbb\xbf\xef\xbb\xbf{}", id="double-bom"),
    pytest.param(b"[]", id="list"),
    pytest.param(b"null", id="null"),
    pytest.param(b'"SECRETACCESS"', id="string"),
    pytest.param(b'{"accessToken": null}', id="access-null-no-refresh"),
    pytest.param(b'{"accessToken": 12345}', id="access-int"),
    pytest.param(b'{"accessToken": ""}', id="access-empty"),
    pytest.param(b'{"accessToken": "SECRET ACCESS"}', id="access-space"),
    pytest.param(b'{"accessToken": "SECRETACCESS\\nX"}', id="access-newline"),
    pytest.param(b'{"accessToken": ["SECRETACCESS"]}', id="access-list"),
    pytest.param(b'{"accessToken": "SECRETACCESS", "refreshToken": 7}', id="refresh-int"),
    pytest.param(b'{"accessToken": "SECRETACCESS", "refreshToken": "a b"}', id="refresh-bad"),
    pytest.param(b"[" * 30000 + b"]" * 30000, id="deep-nesting"),
    pytest.param(b'{"a":' * 10000 + b"1" + b"}" * 10000, id="deep-objects"),
    pytest.param(b"NaN", id="nan"),
]


@pytest.mark.parametrize("content", CORRUPT)
def test_corrupt_content_is_moved_aside(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    write(path, content)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
    records = warnings_of(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert str(path) in records[0].getMessage()
    assert "SECRET" not in caplog.text
    assert not path.exists()
    moved = [p for p in path.parent.iterdir() if p.name != "mcp-token.json.lock"]
    assert len(moved) == 1 and CORRUPT_NAME.fullmatch(moved[0].name)
    assert moved[0].read_bytes() == content
    assert moved[0].stat().st_mode & 0o777 == 0o600
    assert cache.load() is None  # now simply logged out


# -- living beside the .NET tool (TokenCache.cs) ---------------------------------------------


@pytest.mark.parametrize("content", [b"", b"   ", b"\r\n\t \n", _cache._BOM, _cache._BOM + b" \n"])
def test_empty_or_blank_file_is_logged_out_and_left_in_place(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    # The .NET tool truncates, chmods, then writes: a reader may see the empty file
    # between those steps, and moving it aside would lose the save that follows.
    write(path, content)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.load() is None
    assert warnings_of(caplog) == []
    assert path.read_bytes() == content
    assert sorted(p.name for p in path.parent.iterdir()) == ["mcp-token.json"]
    # ...and the .NET tool's write then lands in the same file and is read.
    write(path, f'{{"AccessToken": "{ACCESS}", "RefreshToken": "{REFRESH}"}}')
    assert cache.load() == TokenSet(ACCESS, REFRESH, float(EXP))


@pytest.mark.parametrize(
    "keys",
    [
        ("AccessToken", "RefreshToken", "AccessExpiresAt"),
        ("ACCESSTOKEN", "refreshtoken", "accessexpiresat"),
        ("accessToken", "REFRESHTOKEN", "AccessExpiresAT"),
    ],
)
def test_keys_are_read_case_insensitively_as_dotnet_does(
    path: pathlib.Path, cache: FileTokenCache, keys: tuple[str, str, str]
) -> None:
    opaque = "opaque-access-token"
    access_key, refresh_key, exp_key = keys
    write(
        path,
        json.dumps(
            {access_key: opaque, refresh_key: REFRESH, exp_key: "2026-11-28T08:00:00+00:00"}
        ),
    )
    assert cache.load() == TokenSet(opaque, REFRESH, float(EXP))


@pytest.mark.parametrize(
    "content",
    [
        '{"accessToken": null, "refreshToken": "%s"}',
        '{"AccessToken": null, "RefreshToken": "%s", "AccessExpiresAt": null}',
        '{"refreshToken": "%s"}',
    ],
)
def test_null_access_token_with_a_refresh_token_is_an_expired_sign_in(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    write(path, content % REFRESH)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        tokens = cache.load()
    assert tokens is not None and tokens.refresh_token == REFRESH
    assert tokens.access_exp is not None and tokens.access_exp <= time.time()
    assert warnings_of(caplog) == []
    assert path.exists()


def test_corrupt_file_replaced_meanwhile_is_not_moved(
    path: pathlib.Path, cache: FileTokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(path, b"{broken")
    other = FileTokenCache(path)
    real_parse = _cache._parse

    def parse_while_another_process_saves(raw: bytes) -> object:
        assert other.save(TokenSet(ACCESS, REFRESH, float(EXP)))
        return real_parse(raw)

    monkeypatch.setattr(_cache, "_parse", parse_while_another_process_saves)
    assert cache.load() is None
    monkeypatch.undo()
    assert cache.load() == TokenSet(ACCESS, REFRESH, float(EXP))
    assert not any("corrupt" in p.name for p in path.parent.iterdir())


# -- write hardening -----------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o777])
def test_save_creates_folder_0700_and_file_0600_whatever_the_umask(
    path: pathlib.Path, cache: FileTokenCache, umask: int
) -> None:
    old = os.umask(umask)
    try:
        assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP))) is True
    finally:
        os.umask(old)
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600
    assert cache.load() == TokenSet(ACCESS, REFRESH, float(EXP))
    assert leftovers(path.parent) == []


def test_existing_0644_file_is_replaced_by_a_0600_one(
    path: pathlib.Path, cache: FileTokenCache
) -> None:
    write(path, json.dumps({"accessToken": "old"}), 0o644)
    old_inode = path.stat().st_ino
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_ino != old_inode
    assert cache.load() == TokenSet(ACCESS, REFRESH, float(EXP))


def test_temp_file_is_fixed_to_0600_before_the_secret_is_written(
    path: pathlib.Path, cache: FileTokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if an inherited ACL or a odd file system widened the mode at creation.
    real_open, real_write = os.open, os.write
    modes_at_write: list[int] = []

    def widening_open(file: object, flags: int, mode: int = 0o777, **kw: object) -> int:
        fd = real_open(file, flags, mode, **kw)  # type: ignore[arg-type]
        if flags & os.O_CREAT and str(file).endswith(".tmp"):
            os.fchmod(fd, 0o666)
        return fd

    def recording_write(fd: int, data: object) -> int:
        modes_at_write.append(os.fstat(fd).st_mode & 0o777)
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", widening_open)
    monkeypatch.setattr(os, "write", recording_write)
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    assert modes_at_write and set(modes_at_write) == {0o600}
    assert path.stat().st_mode & 0o777 == 0o600


def test_group_writable_folder_is_warned_about_once_not_changed(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    path.parent.mkdir(parents=True)
    os.chmod(path.parent, 0o775)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
        assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    records = warnings_of(caplog)
    assert len(records) == 1 and f"chmod 700 {path.parent}" in records[0].getMessage()
    assert path.parent.stat().st_mode & 0o777 == 0o775


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("failing", ["write", "fsync", "replace", "open"])
def test_failed_save_keeps_old_file_removes_temp_and_warns_once_per_streak(
    path: pathlib.Path,
    cache: FileTokenCache,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    old = path.read_bytes()
    new = TokenSet(make_jwt(EXP + 60), "SECRETREFRESH-2", float(EXP + 60))
    if failing == "open":
        real_open = os.open

        def open_fails_for_temp(file: object, flags: int, *a: object, **kw: object) -> int:
            if str(file).endswith(".tmp"):
                raise OSError(errno.EROFS, "Read-only file system")
            return real_open(file, flags, *a, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", open_fails_for_temp)
    else:
        monkeypatch.setattr(os, failing, _enospc)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.save(new) is False
        assert cache.save(new) is False
        monkeypatch.undo()
        assert path.read_bytes() == old
        assert leftovers(path.parent) == []
        assert len([r for r in warnings_of(caplog) if r.levelno == logging.WARNING]) == 1
        assert cache.save(new) is True
        assert cache.load() == new
        monkeypatch.setattr(os, "replace", _enospc)
        assert cache.save(new) is False  # a new streak warns again
    warnings = [r for r in warnings_of(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(str(path) in r.getMessage() for r in warnings)
    assert "SECRET" not in caplog.text


def test_invalid_tokens_are_not_written(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.cache"):
        assert cache.save(TokenSet("SECRET token", None, None)) is False
        assert cache.save(TokenSet(ACCESS, "SECRET\nrefresh", None)) is False
    assert not path.exists()
    assert "SECRET" not in caplog.text


def test_no_secret_in_any_log_record(
    path: pathlib.Path, cache: FileTokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
        cache.load()
        os.chmod(path, 0o644)
        cache.load()
        os.chmod(path, 0o600)
        path.write_text(path.read_text()[:-3])
        cache.load()
        cache.clear()
    assert caplog.records
    assert "SECRET" not in caplog.text


def test_clear(path: pathlib.Path, cache: FileTokenCache) -> None:
    assert cache.clear() is True  # nothing there
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    with cache.lock(1) as acquired:
        assert acquired
    assert cache.clear() is True
    assert not path.exists() and cache.load() is None
    assert cache.lock_path.exists()  # never deleted: another process may be locking it


# -- concurrency and crashes ---------------------------------------------------------------


@pytest.mark.timeout(30)
def test_concurrent_saves_and_loads_never_see_half_a_file_or_mixed_generations(
    path: pathlib.Path,
) -> None:
    sets = [
        TokenSet(make_jwt(EXP + i, f"gen{i}"), f"refresh-{i}", float(EXP + i)) for i in range(4)
    ]
    assert FileTokenCache(path).save(sets[0])
    barrier = threading.Barrier(5)
    seen: list[TokenSet | None] = []
    results: list[bool] = []

    def writer(tokens: TokenSet) -> None:
        cache = FileTokenCache(path)
        barrier.wait()
        results.extend(cache.save(tokens) for _ in range(40))

    def reader() -> None:
        cache = FileTokenCache(path)
        barrier.wait()
        seen.extend(cache.load() for _ in range(200))

    threads = [threading.Thread(target=writer, args=(s,)) for s in sets]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert all(results) and len(results) == 160
    assert len(seen) == 200 and all(s in sets for s in seen)
    assert leftovers(path.parent) == []


SAVER = r"""
import sys
from textstack_sdk._cache import FileTokenCache
from textstack_sdk._models import TokenSet
cache = FileTokenCache(sys.argv[1])
i = 0
while True:
    i += 1
    cache.save(TokenSet("access-%d" % i, "refresh-%d" % i, None))
    if i == 20:
        print("saving", flush=True)
"""


@pytest.mark.timeout(20)
def test_kill_9_during_saves_leaves_a_whole_file(path: pathlib.Path) -> None:
    assert FileTokenCache(path).save(TokenSet("access-0", "refresh-0", None))
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "saving"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    loaded = FileTokenCache(path).load()
    assert loaded is not None
    generation = loaded.access_token.split("-")[1]
    assert loaded.refresh_token == f"refresh-{generation}"
    assert not any("corrupt" in p.name for p in path.parent.iterdir())


def test_abandoned_temp_files_are_removed_by_save_and_clear(
    path: pathlib.Path, cache: FileTokenCache
) -> None:
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    old = time.time() - 3600
    abandoned = path.with_name(".mcp-token.json.0123456789abcdef.tmp")
    fresh = path.with_name(".mcp-token.json.fedcba9876543210.tmp")  # a save in flight
    foreign = path.with_name(".other.json.0123456789abcdef.tmp")
    for temp in (abandoned, fresh, foreign):
        write(temp, "SECRET")
    os.utime(abandoned, (old, old))
    os.utime(foreign, (old, old))
    assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP)))
    assert not abandoned.exists() and fresh.exists() and foreign.exists()
    write(abandoned, "SECRET")
    os.utime(abandoned, (old, old))
    assert cache.clear()
    assert not abandoned.exists() and fresh.exists()


# -- change detection and the lock ---------------------------------------------------------


def test_signature_changes_on_every_save_and_not_otherwise(
    path: pathlib.Path, cache: FileTokenCache
) -> None:
    assert cache.signature() is None
    signatures = []
    for i in range(5):
        assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP + i)))
        signatures.append(cache.signature())
        assert cache.signature() == signatures[-1]
        cache.load()
        assert cache.signature() == signatures[-1]
    assert len(set(signatures)) == 5
    st = os.stat(path)
    assert signatures[-1] == (st.st_ino, st.st_mtime_ns, st.st_size)
    # Another instance (another process) writing is noticed.
    assert FileTokenCache(path).save(TokenSet(ACCESS, REFRESH, float(EXP)))
    assert cache.signature() != signatures[-1]
    cache.clear()
    assert cache.signature() is None


def test_lock_file_is_never_replaced_across_saves(
    path: pathlib.Path, cache: FileTokenCache
) -> None:
    with cache.lock(1) as acquired:  # creates the folder if needed
        assert acquired
    lock_inode = os.stat(cache.lock_path).st_ino
    for i in range(3):
        with cache.lock(1) as acquired:
            assert acquired
            assert cache.save(TokenSet(ACCESS, REFRESH, float(EXP + i)))
    cache.clear()
    assert os.stat(cache.lock_path).st_ino == lock_inode
    assert os.stat(cache.lock_path).st_size == 0
    assert os.stat(cache.lock_path).st_mode & 0o777 == 0o600


@pytest.fixture
def holder(path: pathlib.Path) -> Iterator[subprocess.Popen[str]]:
    script = (
        "import sys\n"
        "from textstack_sdk._cache import FileTokenCache\n"
        "with FileTokenCache(sys.argv[1]).lock(5) as ok:\n"
        "    print(ok, flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@pytest.mark.timeout(20)
def test_cache_lock_excludes_another_process(
    cache: FileTokenCache, holder: subprocess.Popen[str]
) -> None:
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "True"
    start = time.monotonic()
    with cache.lock(0.1) as acquired:
        assert acquired is False
    assert time.monotonic() - start < 2.0
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(10) == 0
    with cache.lock(5) as acquired:
        assert acquired is True
        # flock on a second descriptor excludes even within one process
        assert InterProcessLock(cache.lock_path).acquire(0) is False
    assert cache.directory.stat().st_mode & 0o777 == 0o700
