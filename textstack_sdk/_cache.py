"""The token cache: a protocol, and a file shared with TextStack's .NET MCP tool.

File format (both tools read and write it)::

    {"accessToken": "...", "refreshToken": "...", "accessExpiresAt": "2026-11-28T10:15:00+00:00"}

Reading trusts nothing. The file is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink is
refused, a FIFO cannot hang us) and checked with ``fstat`` on the opened descriptor: it
must be a regular file, owned by us, without any group/other permission bits, and at most
64 KiB. A refused file is left untouched and logged once, naming the fix. Content that
does not parse as the format above is moved aside to ``<name>.corrupt-<UTC time>`` and
treated as "not logged in". On Windows ``st_mode`` is synthesised (0o666) and ``st_uid``
is 0, so the mode and owner checks are skipped there; the file's ACL protects it.

Writing is atomic: a randomly named temp file in the same folder is created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and 0600 (fixed with ``fchmod`` before the secret is
written, whatever the umask), synced, renamed over the cache with ``os.replace``, and
the folder is synced. A crash leaves the old pair or the new pair, never half a file.
A failed save leaves the old file intact, removes the temp file, warns once per streak
of failures and returns False; the caller keeps its tokens in memory and saves again.
Temp files abandoned by a crash (they hold secrets) are removed by later saves and by
``clear()`` once they are a minute old.

Cross-process coordination: ``FileTokenCache.lock(timeout)`` is an exclusive ``flock``
on ``<path>.lock`` (see ``_filelock``), a file that is never replaced or deleted (not
even by ``clear()``: deleting it would let two processes lock different inodes).
``signature()`` notices another process's write without reading the file. ``flock`` may
not exclude across NFS clients: with the home folder on NFS, two machines sharing one
cache can refresh concurrently.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import pathlib
import re
import secrets
import stat
import threading
import time
from collections.abc import Hashable, Iterator, Mapping
from typing import Optional, Protocol, runtime_checkable

from ._errors import ConfigurationError
from ._filelock import InterProcessLock
from ._jwt import decode_exp, is_bearer_token
from ._models import TokenSet
from ._spend_marker import SpendMarker

__all__ = ["MAX_CACHE_BYTES", "FileTokenCache", "TokenCache", "default_cache_path"]

_log = logging.getLogger("textstack_sdk.cache")

MAX_CACHE_BYTES = 64 * 1024
_ENV_PATH = "TEXTSTACK_MCP_TOKEN_CACHE"
_FILE_NAME = "mcp-token.json"
_BOM = b"\xef\xbb\xbf"
_POSIX = os.name != "nt"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
_WRITE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0)
)
# A crash between creating a temp file and renaming it leaves the temp behind, with
# secrets in it; saves and clears remove such leftovers once they are clearly abandoned.
_STALE_TEMP_SECONDS = 60.0
_TEMP_SUFFIX = ".tmp"
_ISO_8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)


@runtime_checkable
class TokenCache(Protocol):
    """Where a TokenSet survives between runs. Implementations must be thread-safe."""

    def load(self) -> Optional[TokenSet]:
        """Returns the stored tokens, or None ("not logged in"); never raises for bad content."""
        ...

    def save(self, tokens: TokenSet) -> bool:
        """Stores tokens; returns True when persisted, False (never an OSError) otherwise."""
        ...

    def clear(self) -> bool:
        """Forgets the stored tokens; returns True when nothing is stored any more."""
        ...


class FileTokenCache:
    """Thread-safe and multi-process-safe token cache in one JSON file (0600).

    Every call opens the file afresh and saves are atomic renames, so threads and
    processes never see half a file. Saves do not exclude each other (the last rename
    wins); callers that read-modify-write across processes hold ``lock()``.

    Args:
        path: The cache file. None resolves ``default_cache_path()``. A relative path is
            made absolute against the current folder once, here; ``~`` is expanded.

    Raises:
        ConfigurationError: ``path`` is None and no absolute default can be found, or
            ``path`` is empty or contains a NUL character.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            self._path = default_cache_path()
        else:
            text = os.fspath(path)
            if not text or "\0" in text:
                raise ConfigurationError("the token cache path is empty or contains NUL")
            self._path = pathlib.Path(os.path.abspath(os.path.expanduser(text)))
        self._lock = InterProcessLock(self.lock_path)
        self._state_lock = threading.Lock()
        self._state_pid = os.getpid()
        self._failing = False
        self._warned_folder = False

    @property
    def path(self) -> pathlib.Path:
        """The cache file."""
        return self._path

    @property
    def directory(self) -> pathlib.Path:
        """The folder holding the cache file and its lock file."""
        return self._path.parent

    @property
    def lock_path(self) -> pathlib.Path:
        """The lock file beside the cache, ``<path>.lock``."""
        return self._path.with_name(self._path.name + ".lock")

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self._path)!r})"

    # -- reading -----------------------------------------------------------------------

    def load(self) -> Optional[TokenSet]:
        """Reads the cache; None when missing, refused (logged) or corrupt (moved aside).

        Never raises for a missing, unsafe or corrupt file, nor for an OSError.
        """
        raw, ident = self._read_checked()
        if raw is None:
            return None
        tokens, problem = _parse(raw)
        if problem is not None:
            self._move_aside(ident, problem)
            return None
        return tokens

    def signature(self) -> Hashable:
        """A cheap change detector: ``(st_ino, st_mtime_ns, st_size)``, None when missing.

        Every save renames a new inode into place, so another process's save changes it.
        Symlinks are not followed.
        """
        try:
            st = os.stat(self._path, follow_symlinks=False)
        except (OSError, ValueError):
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def saved_at(self) -> Optional[float]:
        """The wall-clock time of the last save (the file's mtime), None when missing."""
        try:
            return os.stat(self._path, follow_symlinks=False).st_mtime
        except (OSError, ValueError):
            return None

    def _read_checked(
        self, path: Optional[pathlib.Path] = None
    ) -> tuple[Optional[bytes], Optional[tuple[int, int]]]:
        path = self._path if path is None else path
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                _log.warning(
                    "ignoring token cache %s: it is a symbolic link (the target is not "
                    "read); fix: replace it with a regular file, e.g. rm %s and log in again",
                    path,
                    path,
                )
            elif exc.errno == errno.ENOTDIR:
                _log.warning(
                    "ignoring token cache %s: a parent of it is not a folder; fix the path",
                    path,
                )
            else:
                _log.warning(
                    "cannot read token cache %s (%s); fix its permissions (chmod 600 %s)",
                    path,
                    _describe(exc),
                    path,
                )
            return None, None
        try:
            st = os.fstat(fd)
            problem = _refusal(st)
            if problem is not None:
                _log.warning("ignoring token cache %s: %s", path, problem.replace("{}", str(path)))
                return None, None
            data = _read_at_most(fd, MAX_CACHE_BYTES + 1)
        except OSError as exc:
            _log.warning("cannot read token cache %s (%s)", path, _describe(exc))
            return None, None
        finally:
            os.close(fd)
        if len(data) > MAX_CACHE_BYTES:
            _log.warning(
                "ignoring token cache %s: it grew past %d bytes while being read; "
                "fix: remove it and log in again",
                path,
                MAX_CACHE_BYTES,
            )
            return None, None
        return data, (st.st_dev, st.st_ino)

    def _move_aside(self, ident: Optional[tuple[int, int]], problem: str) -> None:
        path = self._path
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            current = os.stat(path, follow_symlinks=False)
            if (current.st_dev, current.st_ino) != ident:
                # Another process saved a new file since we read: that one is not ours
                # to judge, and the next load will read it.
                _log.debug("token cache %s changed while being read; not moving it", path)
                return
            os.replace(path, target)
        except FileNotFoundError:
            return
        except OSError as exc:
            _log.warning(
                "token cache %s is corrupt (%s) and could not be moved aside (%s); "
                "treating it as logged out; fix: rm %s",
                path,
                problem,
                _describe(exc),
                path,
            )
            return
        _log.warning(
            "token cache %s was corrupt (%s); moved it to %s and treating it as logged out",
            path,
            problem,
            target.name,
        )

    # -- writing -----------------------------------------------------------------------

    def save(self, tokens: TokenSet) -> bool:
        """Writes tokens atomically (temp file, fsync, rename, folder fsync), mode 0600.

        Returns:
            True when the new file is in place. False when it could not be written
            (disk full, read-only folder, a symlink at the path, ...): the old file is
            intact, no temp file is left, and one warning is logged per failure streak.
        """
        if not is_bearer_token(tokens.access_token) or not (
            tokens.refresh_token is None or is_bearer_token(tokens.refresh_token)
        ):
            return self._save_failed("the tokens are not valid bearer tokens")
        payload = _serialise(tokens)
        problem = self._write(payload)
        if problem is not None:
            return self._save_failed(problem)
        with self._state():
            was_failing, self._failing = self._failing, False
        if was_failing:
            _log.info("token cache %s saved again", self._path)
        return True

    def clear(self) -> bool:
        """Removes the cache file (a symlink at the path is removed, its target is not).

        Returns:
            True when no cache file remains (also when there was none); False, with a
            warning, when it could not be removed.
        """
        self._remove_stale_temps()
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            return True
        except OSError as exc:
            _log.warning(
                "cannot remove token cache %s (%s); fix: rm %s",
                self._path,
                _describe(exc),
                self._path,
            )
            return False
        _fsync_directory(self.directory)
        return True

    def _write(self, payload: bytes, path: Optional[pathlib.Path] = None) -> Optional[str]:
        """Writes payload over the cache (or ``path`` beside it); returns why it failed."""
        path = self._path if path is None else path
        problem = self._ensure_directory()
        if problem is not None:
            return problem
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return f"cannot inspect it ({_describe(exc)})"
        else:
            if stat.S_ISLNK(existing.st_mode):
                return f"it is a symbolic link, refusing to write through it; fix: rm {path}"
            if not stat.S_ISREG(existing.st_mode):
                return f"it is not a regular file; fix: remove {path}"
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{_TEMP_SUFFIX}")
        fd: Optional[int] = None
        try:
            fd = os.open(temp, _WRITE_FLAGS, 0o600)
            if _POSIX and stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
                os.fchmod(fd, 0o600)
            _write_all(fd, payload)
            os.fsync(fd)
            os.close(fd)
            fd = None
            os.replace(temp, path)
        except OSError as exc:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            return _describe(exc)
        _fsync_directory(self.directory)
        self._remove_stale_temps()
        return None

    def _remove_stale_temps(self) -> None:
        # Temps of the cache and of its sibling files (the pending sign-in) share a prefix.
        pattern = re.compile(
            re.escape(f".{self._path.name}") + r"(?:\.pending)?\.[0-9a-f]{16}" + _TEMP_SUFFIX
        )
        cutoff = time.time() - _STALE_TEMP_SECONDS
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if pattern.fullmatch(entry.name) is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if (
                    stat.S_ISREG(st.st_mode)
                    and (not _POSIX or st.st_uid == os.getuid())
                    and st.st_mtime < cutoff
                ):
                    os.unlink(entry.path)
            except OSError:
                continue

    def _ensure_directory(self) -> Optional[str]:
        """Creates the folder 0700 if missing; warns once if it is writable by others."""
        folder = self.directory
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            try:
                os.makedirs(folder, mode=0o700, exist_ok=True)
                if _POSIX and stat.S_IMODE(os.stat(folder).st_mode) != 0o700:
                    # We just created it, so fixing what the umask did is ours to do.
                    os.chmod(folder, 0o700)
            except OSError as exc:
                return f"cannot create the folder {folder} ({_describe(exc)})"
            return None
        except OSError as exc:
            return f"cannot inspect the folder {folder} ({_describe(exc)})"
        if not stat.S_ISDIR(st.st_mode):
            return f"{folder} is not a folder"
        if _POSIX and st.st_uid not in (os.getuid(), 0):
            # Another user could delete or pre-create the lock and pending files there.
            return f"the folder {folder} belongs to another user; fix: use a folder you own"
        if (
            _POSIX
            and st.st_uid == os.getuid()
            and st.st_mode & 0o022
            and not st.st_mode & stat.S_ISVTX
            and not self._warned_folder
        ):
            self._warned_folder = True
            _log.warning(
                "token cache folder %s is writable by group or others (mode %04o); "
                "they could replace the token file; fix: chmod 700 %s",
                folder,
                stat.S_IMODE(st.st_mode),
                folder,
            )
        return None

    def _save_failed(self, problem: str) -> bool:
        with self._state():
            was_failing, self._failing = self._failing, True
        if was_failing:
            _log.debug("token cache %s still cannot be saved (%s)", self._path, problem)
        else:
            _log.warning(
                "cannot save token cache %s (%s); the tokens stay in memory and the "
                "save is retried next time",
                self._path,
                problem,
            )
        return False

    @contextlib.contextmanager
    def _state(self) -> Iterator[None]:
        # A thread holding the lock at fork time would leave it taken in the child.
        if self._state_pid != os.getpid():
            self._state_lock = threading.Lock()
            self._state_pid = os.getpid()
        with self._state_lock:
            yield

    # -- the shared pending sign-in -----------------------------------------------------

    @property
    def pending_path(self) -> pathlib.Path:
        """Where a sign-in waiting for approval is shared between processes (0600)."""
        return self._path.with_name(self._path.name + ".pending")

    def poll_lock_path(self, device_code: str) -> pathlib.Path:
        """Held by the one process that polls this device code.

        One lock file per code, so a stopped poller of an old code never blocks a new
        sign-in. The name carries a hash, never the code itself.
        """
        digest = hashlib.sha256(device_code.encode("utf-8")).hexdigest()[:16]
        return self._path.with_name(f"{self._path.name}.poll.{digest}.lock")

    def load_pending(self) -> Optional[dict[str, object]]:
        """The shared pending sign-in record, or None (missing, unsafe or corrupt)."""
        raw, _ = self._read_checked(self.pending_path)
        if raw is None:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            self.clear_pending()
            return None
        return data if isinstance(data, dict) else None

    def save_pending(self, record: Mapping[str, object]) -> bool:
        """Writes the shared pending sign-in atomically, owner-only (it holds a device code)."""
        payload = json.dumps(dict(record), separators=(",", ":")).encode("utf-8")
        problem = self._write(payload, self.pending_path)
        if problem is not None:
            _log.warning("cannot share the pending sign-in in %s (%s)", self.pending_path, problem)
            return False
        return True

    def clear_pending(self) -> None:
        """Removes the shared pending sign-in, if any."""
        with contextlib.suppress(FileNotFoundError, OSError):
            os.unlink(self.pending_path)

    def poll_lock(self, device_code: str) -> InterProcessLock:
        """A new handle on the poll lock of one code (held while this process polls it)."""
        self._ensure_directory()
        return InterProcessLock(self.poll_lock_path(device_code))

    def touch_poll(self, device_code: str, when: float) -> None:
        """Records that this code was just polled: the poll-lock file's mtime is ``when``.

        A heartbeat that needs no lock and rewrites nothing: a stopped poller can never
        be caught holding the cache lock because of it.
        """
        path = self.poll_lock_path(device_code)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
        except OSError:
            return
        try:
            os.utime(fd, (when, when))
        except OSError:
            pass
        finally:
            os.close(fd)

    def polled_at(self, device_code: str) -> Optional[float]:
        """When this code was last polled by any process (see ``touch_poll``), or None."""
        try:
            return os.stat(self.poll_lock_path(device_code), follow_symlinks=False).st_mtime
        except (OSError, ValueError):
            return None

    def remove_poll_locks(self) -> None:
        """Removes the poll-lock files of ended sign-ins (a holder keeps its own inode)."""
        pattern = re.compile(re.escape(f"{self._path.name}.poll.") + r"[0-9a-f]{16}\.lock")
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if pattern.fullmatch(entry.name) is not None:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    # -- cross-process -----------------------------------------------------------------

    def spend_marker(self) -> SpendMarker:
        """Where a refresh records the token it spends (the lock file; see _spend_marker)."""
        return SpendMarker(self.lock_path)

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[bool]:
        """Exclusive cross-process lock on ``<path>.lock``; yields whether it was acquired.

        Waits at most ``timeout`` seconds; yields False on timeout or when the lock file
        is unusable (logged), and the caller decides what to do without it. Re-entrant
        in the holding thread; see ``_filelock.InterProcessLock`` for fork behaviour.
        """
        self._ensure_directory()
        with self._lock.hold(timeout) as acquired:
            yield acquired


def default_cache_path(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """The cache file to use when none is given.

    ``TEXTSTACK_MCP_TOKEN_CACHE`` if it is an absolute path (``~`` and ``~/...`` are
    expanded); else ``$XDG_CONFIG_HOME/textstack/mcp-token.json`` if XDG_CONFIG_HOME is
    absolute; else ``~/.textstack/mcp-token.json``. Relative or empty values are
    ignored (XDG spec), never resolved against the current folder.

    Args:
        environ: The environment to read; ``os.environ`` when None.

    Raises:
        ConfigurationError: No absolute home folder can be found.
    """
    env = os.environ if environ is None else environ
    override = env.get(_ENV_PATH, "")
    if override:
        resolved = _absolute_override(override, env)
        if resolved is not None:
            return resolved
        _log.warning("ignoring %s=%r: it must be an absolute path to a file", _ENV_PATH, override)
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg) and "\0" not in xdg:
        return pathlib.Path(xdg) / "textstack" / _FILE_NAME
    return _home(env) / ".textstack" / _FILE_NAME


def _absolute_override(value: str, env: Mapping[str, str]) -> Optional[pathlib.Path]:
    if "\0" in value or value.endswith(("/", os.sep)):
        return None
    if value.startswith("~"):
        head, _, rest = value.partition("/")
        if head == "~":
            if not rest:
                return None
            try:
                return _home(env) / rest
            except ConfigurationError:
                return None
        value = os.path.expanduser(value)
    if not os.path.isabs(value):
        return None
    return pathlib.Path(os.path.normpath(value))


def _home(env: Mapping[str, str]) -> pathlib.Path:
    candidates = [env.get("HOME", "")]
    if not _POSIX:
        candidates.append(env.get("USERPROFILE", ""))
        candidates.append(env.get("HOMEDRIVE", "") + env.get("HOMEPATH", ""))
    for candidate in candidates:
        if candidate and os.path.isabs(candidate) and "\0" not in candidate:
            return pathlib.Path(candidate)
    if _POSIX:
        try:
            import pwd  # POSIX only

            pw_dir = pwd.getpwuid(os.getuid()).pw_dir
        except (ImportError, KeyError, OSError):
            pw_dir = ""
        if pw_dir and os.path.isabs(pw_dir):
            return pathlib.Path(pw_dir)
    raise ConfigurationError(
        f"cannot find an absolute home folder for the token cache; set {_ENV_PATH} "
        "to an absolute file path"
    )


# -- pure helpers ----------------------------------------------------------------------


def _refusal(st: os.stat_result) -> Optional[str]:
    """Why an opened file must not be read, or None. ``{}`` stands for its path."""
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "a folder"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        return f"it is {kind}, not a regular file; fix: remove it and log in again"
    if _POSIX:
        if st.st_uid != os.getuid():
            return (
                f"it is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
                "fix: remove it and log in again"
            )
        if mode & 0o077:
            return (
                f"its mode is {stat.S_IMODE(mode):04o}, readable or writable by group or "
                "others, so the tokens may be compromised; fix: chmod 600 {} "
                "(and log in again if others could read it)"
            )
    if st.st_size > MAX_CACHE_BYTES:
        return (
            f"it is {st.st_size} bytes, more than the {MAX_CACHE_BYTES}-byte cap of a "
            "token cache; fix: remove it and log in again"
        )
    return None


def _parse(raw: bytes) -> tuple[Optional[TokenSet], Optional[str]]:
    """Parses the file content: (tokens, None) or (None, why it is corrupt)."""
    # The .NET tool writes no BOM, but Windows editors add one; it carries no meaning.
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    try:
        data = json.loads(text)
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    access = data.get("accessToken")
    if not is_bearer_token(access):
        return None, "accessToken is missing or not a bearer token"
    assert isinstance(access, str)
    refresh = data.get("refreshToken")
    if refresh == "":
        refresh = None
    if refresh is not None and not is_bearer_token(refresh):
        return None, "refreshToken is not a bearer token"
    exp = decode_exp(access)
    if exp is None:
        exp = _parse_iso8601(data.get("accessExpiresAt"))
    return TokenSet(access_token=access, refresh_token=refresh, access_exp=exp), None


def _parse_iso8601(value: object) -> Optional[float]:
    """Unix seconds of an ISO 8601 date-time with an offset (or Z); None if unreadable.

    Accepts .NET's seven fractional digits, which ``datetime.fromisoformat`` of
    Python 3.9 does not. A time without an offset is ambiguous and gives None.
    """
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _ISO_8601.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = _dt.timedelta(0)
        if not zulu:
            offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m))
            if sign == "-":
                offset = -offset
        moment = _dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=_dt.timezone(offset),
        )
        return moment.timestamp()
    except (ValueError, OverflowError):
        return None


def _serialise(tokens: TokenSet) -> bytes:
    exp = tokens.access_exp
    try:
        if exp is None:
            raise ValueError("unknown")
        moment = _dt.datetime.fromtimestamp(exp, _dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        # Unknown means "treat as expired": the current time is already past.
        moment = _dt.datetime.fromtimestamp(time.time(), _dt.timezone.utc)
    document = {
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "accessExpiresAt": moment.isoformat(timespec="seconds"),
    }
    return json.dumps(document).encode("utf-8")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(folder: pathlib.Path) -> None:
    """Makes a rename or unlink durable. Best effort: some systems cannot sync folders."""
    if not _POSIX:
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        _log.debug("cannot fsync folder %s (%s)", folder, _describe(exc))
    finally:
        os.close(fd)


def _describe(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
