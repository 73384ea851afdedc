"""The token cache: a protocol, and a file shared with TextStack's .NET MCP tool.

File format (both tools read and write it)::

    {"accessToken": "...", "refreshToken": "...", "accessExpiresAt": "2026-11-28T10:15:00+00:00"}

A cache written through the token store (``_file_store``) also has ``"version": N``, the
record's generation; the .NET tool ignores the field and rewrites the file without it,
which the store reads as a new generation.

Reading trusts nothing. The file is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink is
refused, a FIFO cannot hang us) and checked with ``fstat`` on the opened descriptor: it
must be a regular file, owned by us, without any group/other permission bits, and at most
64 KiB. A refused file is left untouched and logged once, naming the fix. Content that
does not parse as the format above is moved aside to ``<name>.corrupt-<UTC time>`` and
treated as "not logged in". As in the .NET tool, keys are matched case-insensitively, an
empty or whitespace-only file is "not logged in" and left in place (the .NET tool
truncates before it writes), and ``"accessToken": null`` beside a refresh token is an
expired sign-in that is refreshed on use. On Windows ``st_mode`` is synthesised (0o666)
and ``st_uid`` is 0, so the mode and owner checks are skipped there; the file's ACL
protects it.

Writing is atomic: a randomly named temp file in the same folder is created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and 0600 (fixed with ``fchmod`` before the secret is
written, whatever the umask), synced, renamed over the cache with ``os.replace``, and
the folder is synced. A crash leaves the old pair or the new pair, never half a file.
A failed save leaves the old file intact, removes the temp file, warns once per streak
of failures and returns False; the caller keeps its tokens in memory and saves again.
Temp files abandoned by a crash (they hold secrets) are removed by later saves and by
``clear()`` once they are a minute old.

Encryption at rest (optional, see ``_cipher``): with a cipher every write is a sealed
record bound to this path, and the same rules hold for it (0600, atomic, checked on the
descriptor). A record that cannot be decrypted raises ``CacheDecryptionError`` from
``load()``: it is never parsed as plaintext, never moved aside, and ``save()`` refuses to
replace a record sealed with a key it lacks; only ``clear()`` (logout) removes it. With a
key configured, a valid plaintext cache is re-written encrypted once, and any other
unreadable content is treated as undecryptable rather than corrupt.

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
from typing import Literal, Optional, Protocol, Union, runtime_checkable

from ._cipher import (
    ENV_KEY,
    TokenCipher,
    cipher_from_env,
    is_sealed,
    record_key_id,
    undecryptable_message,
)
from ._errors import CacheDecryptionError, ConfigurationError, TextStackError
from ._filelock import InterProcessLock
from ._jwt import decode_exp, is_bearer_token
from ._models import TokenSet
from ._private_file import describe, peek_regular, read_private
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
        """Returns the stored tokens, or None ("not logged in").

        Never raises for bad content, except ``CacheDecryptionError`` from an encrypted
        store that cannot be decrypted (the caller must not sign in over it).
        """
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

    With a cipher (see ``AesGcmCipher``), every write is an encrypted record bound to this
    path; a plaintext cache found there is read once and re-written encrypted, and a
    record that cannot be decrypted raises ``CacheDecryptionError`` from ``load()`` and
    is never moved aside nor overwritten (only ``clear()`` removes it).

    Args:
        path: The cache file. None resolves ``default_cache_path()``. A relative path is
            made absolute against the current folder once, here; ``~`` is expanded.
        cipher: Encrypts the file. ``"env"`` (the default) uses ``cipher_from_env()``:
            the key from ``TEXTSTACK_CACHE_KEY``, ``TEXTSTACK_CACHE_KEY_FILE`` or
            ``TEXTSTACK_CACHE_KEY_KEYRING`` when one is set, plaintext otherwise. None
            never encrypts.

    Raises:
        ConfigurationError: ``path`` is None and no absolute default can be found, or
            ``path`` is empty or contains a NUL character, or the environment names a
            key that cannot be used.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        cipher: Union[TokenCipher, Literal["env"], None] = "env",
    ) -> None:
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
        self._save_problem: Optional[str] = None
        self._warned_folder = False
        if isinstance(cipher, str):
            if cipher != "env":
                raise ConfigurationError('cipher must be a TokenCipher, None or "env"')
            cipher = cipher_from_env()
        self._cipher: Optional[TokenCipher] = cipher
        self._store_name: Optional[str] = None
        # The last record this cache wrote or opened: a save that finds it on disk need
        # not decrypt it again to know it may replace it (bytes are compared, not trusted).
        self._opened_record: Optional[bytes] = None

    @property
    def cipher(self) -> Optional[TokenCipher]:
        """The cipher that encrypts this cache, or None when it is written in plaintext."""
        return self._cipher

    def stored_key_id(self) -> Optional[str]:
        """The key id the file on disk is encrypted with; None when plaintext or missing.

        Read whatever the file's mode: the id is not secret, and a sealed file with a
        loose mode still needs its key.
        """
        head = peek_regular(self._path, limit=MAX_CACHE_BYTES)
        return None if head is None else record_key_id(head)

    def _store_id(self) -> str:
        # Every process must bind records to the same name however it spells the path
        # (a symlinked home folder): the folder's real path, resolved once.
        if self._store_name is None:
            self._store_name = os.path.join(os.path.realpath(self.directory), self._path.name)
        return self._store_name

    @property
    def path(self) -> pathlib.Path:
        """The cache file."""
        return self._path

    @property
    def save_problem(self) -> Optional[str]:
        """Why the last ``save()`` failed (secret-free), or None after a successful one.

        Lets a caller that must not claim "saved" (``textstack login``) say what failed
        where; the token manager itself only needs ``save()``'s result.
        """
        with self._state():
            return self._save_problem

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

        Raises:
            CacheDecryptionError: The file is encrypted and no configured key decrypts
                it, or a key is configured and the file is neither a record nor a
                valid plaintext cache. The file is left exactly as it is.
        """
        return self._load(migrate=True)[0]

    def load_versioned(self) -> tuple[Optional[TokenSet], Optional[int]]:
        """Like ``load()``, with the file's ``version`` field (None when it has none)."""
        return self._load(migrate=True)

    def _load(self, *, migrate: bool) -> tuple[Optional[TokenSet], Optional[int]]:
        raw, ident = self._read_checked()
        if raw is None:
            return None, None
        if not (raw[len(_BOM) :] if raw.startswith(_BOM) else raw).strip():
            # The .NET tool truncates the file before it writes: empty means "not logged
            # in" or "a save in progress", and moving it aside could lose that save.
            return None, None
        if is_sealed(raw):
            return self._open_sealed(raw)
        tokens, problem, version = _parse(raw)
        if self._cipher is None:
            if problem is not None:
                self._move_aside(ident, problem)
            return tokens, version
        if problem is not None:
            # It may be an encrypted record damaged where the marker is: never judged
            # as plaintext, never moved aside.
            raise self._undecryptable(
                CacheDecryptionError(
                    f"it is neither an encrypted record nor a token cache ({problem})",
                    reason="malformed",
                )
            )
        assert tokens is not None
        if migrate:
            self._encrypt_in_place(tokens, version, raw, ident)
        return tokens, version

    def _open_sealed(self, raw: bytes) -> tuple[TokenSet, Optional[int]]:
        if self._cipher is None:
            raise self._undecryptable(
                CacheDecryptionError(
                    "it is encrypted and no key is configured",
                    key_id=record_key_id(raw),
                    reason="no_key",
                )
            )
        try:
            plain = self._cipher.decrypt(raw, kind="file", identity=self._store_id())
        except CacheDecryptionError as exc:
            raise self._undecryptable(exc) from None
        self._opened_record = raw
        tokens, problem, version = _parse(plain)
        if tokens is None:
            raise self._undecryptable(
                CacheDecryptionError(
                    f"it decrypts to something that is not a token cache ({problem})",
                    key_id=record_key_id(raw),
                    reason="malformed",
                )
            )
        return tokens, version

    def _undecryptable(self, exc: CacheDecryptionError) -> CacheDecryptionError:
        return CacheDecryptionError(
            undecryptable_message(str(self._path), exc), key_id=exc.key_id, reason=exc.reason
        )

    def _encrypt_in_place(
        self,
        tokens: TokenSet,
        version: Optional[int],
        raw: bytes,
        ident: Optional[tuple[int, int]],
    ) -> None:
        """Replaces a plaintext cache, just read as ``raw`` from ``ident``, by its encrypted form.

        Only a single attempt at the cross-process lock: ``load()`` may run under a
        caller's own lock, so waiting here could invert the lock order. Without the lock,
        or if another writer changed the file since it was read, the next load retries.
        The content is compared, not only the inode: the .NET tool takes no lock and
        rewrites the file in place, and sealing what we read would undo its write.
        """
        assert self._cipher is not None
        with self._lock.hold(0) as acquired:
            if not acquired:
                return
            current = read_private(self._path, limit=MAX_CACHE_BYTES, remedy="")
            if current.ident != ident or current.data != raw:
                return
            problem = self._write(self._seal(_serialise(tokens, version)))
        if problem is not None:
            _log.warning(
                "token cache %s is plaintext and could not be re-written encrypted (%s)",
                self._path,
                problem,
            )
            return
        _log.info(
            "token cache %s was plaintext; re-wrote it encrypted with key id %s",
            self._path,
            self._cipher.key_id,
        )

    def _seal(self, payload: bytes, kind: str = "file") -> bytes:
        if self._cipher is None:
            return payload
        return self._cipher.encrypt(payload, kind=kind, identity=self._store_id())

    def _foreign_record(self) -> Optional[str]:
        """Why the file on disk must not be overwritten: a sealed record we cannot open.

        Not only another key's: a damaged record, or one copied from another path, fails
        ``load()`` too, and replacing it is the user's call (``textstack logout``). Its
        mode is not judged here (a sealed file restored 0644 is still somebody's tokens).
        """
        head = peek_regular(self._path, limit=MAX_CACHE_BYTES)
        if head is None or not is_sealed(head):
            return None
        kid = record_key_id(head)
        if self._cipher is not None and kid in self._cipher.key_ids:
            if head == self._opened_record:
                return None
            try:
                self._cipher.decrypt(head, kind="file", identity=self._store_id())
            except CacheDecryptionError as exc:
                return (
                    f"it holds an encrypted record that cannot be decrypted here ({exc}) "
                    "and is not overwritten; fix: run `textstack logout` to discard it"
                )
            return None
        if kid is None:
            return (
                "it holds a damaged encrypted record and is not overwritten; fix: run "
                "`textstack logout` to discard it"
            )
        return (
            f"it holds tokens encrypted with key id {kid}, which is not configured, and "
            f"is not overwritten; fix: add that key to {ENV_KEY}, or run `textstack "
            "logout` to discard it"
        )

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
        got = read_private(path, limit=MAX_CACHE_BYTES, remedy="remove it and log in again")
        if got.problem is not None:
            _log.warning("ignoring token cache %s: %s", path, got.problem.replace("{}", str(path)))
        return got.data, got.ident

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
                describe(exc),
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

    def save(self, tokens: TokenSet, *, version: Optional[int] = None) -> bool:
        """Writes tokens atomically (temp file, fsync, rename, folder fsync), mode 0600.

        Args:
            tokens: What to store.
            version: The record's generation, written as the ``version`` field (the
                token store's; plain saves leave it out).

        Returns:
            True when the new file is in place. False when it could not be written
            (disk full, read-only folder, a symlink at the path, ...): the old file is
            intact, no temp file is left, and one warning is logged per failure streak.
        """
        if not is_bearer_token(tokens.access_token) or not (
            tokens.refresh_token is None or is_bearer_token(tokens.refresh_token)
        ):
            return self._save_failed("the tokens are not valid bearer tokens")
        problem = self._foreign_record()
        if problem is None:
            record = self._seal(_serialise(tokens, version))
            problem = self._write(record)
        if problem is not None:
            return self._save_failed(problem)
        if self._cipher is not None:
            self._opened_record = record
        with self._state():
            was_failing, self._failing = self._failing, False
            self._save_problem = None
        if was_failing:
            _log.info("token cache %s saved again", self._path)
        return True

    def rewrite(self, *, plaintext: bool = False, timeout: float = 10.0) -> Optional[str]:
        """Reads the cache and writes it again: under the first key, or in plaintext.

        For ``textstack cache rekey`` (a file written under an older key, or in
        plaintext, is re-encrypted now rather than at the next refresh) and
        ``textstack cache decrypt --to-plaintext`` (leaving encryption; the user's
        explicit choice is the one way a plaintext file is written while a key is
        configured). Holds the cross-process lock throughout.

        Args:
            plaintext: Write the tokens unencrypted.
            timeout: Longest wait for the cross-process lock.

        Returns:
            The key id the file was encrypted with before, ``"plaintext"`` when it was
            not encrypted, or None when there is no cache to rewrite.

        Raises:
            ConfigurationError: Re-encryption was asked and no key is configured.
            CacheDecryptionError: The file cannot be decrypted with the configured keys.
            TextStackError: The lock could not be taken, or the file could not be written.
        """
        if self._cipher is None and not plaintext:
            raise ConfigurationError(
                "no encryption key is configured; set TEXTSTACK_CACHE_KEY or "
                "TEXTSTACK_CACHE_KEY_FILE (make a key with `textstack cache key`)"
            )
        with self.lock(timeout) as acquired:
            if not acquired:
                raise TextStackError(f"could not lock the token cache {self._path} in time")
            before = read_private(self._path, limit=MAX_CACHE_BYTES, remedy="").data
            tokens, version = self._load(migrate=False)
            if tokens is None:
                return None
            payload = _serialise(tokens, version)
            problem = self._write(payload if plaintext else self._seal(payload))
        if problem is not None:
            raise TextStackError(f"cannot write the token cache {self._path} ({problem})")
        kid = None if before is None else record_key_id(before)
        return kid or "plaintext"

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
                describe(exc),
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
            return f"cannot inspect it ({describe(exc)})"
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
            return describe(exc)
        _fsync_directory(self.directory)
        self._remove_stale_temps()
        return None

    def _remove_stale_temps(self) -> None:
        # Temps of the cache and of its sibling files (the pending sign-in) share a prefix.
        pattern = re.compile(
            re.escape(f".{self._path.name}")
            + r"(?:\.pending|\.store)?\.[0-9a-f]{16}"
            + _TEMP_SUFFIX
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
                return f"cannot create the folder {folder} ({describe(exc)})"
            return None
        except OSError as exc:
            return f"cannot inspect the folder {folder} ({describe(exc)})"
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
            self._save_problem = problem
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

    # -- the token store's state (see _file_store) ---------------------------------------

    @property
    def store_path(self) -> pathlib.Path:
        """Where the token store keeps its state (generation, leases, intent; 0600)."""
        return self._path.with_name(self._path.name + ".store")

    def load_store_state(self) -> Optional[bytes]:
        """The store state file's content, or None when missing or refused (logged)."""
        return self._read_checked(self.store_path)[0]

    def save_store_state(self, payload: bytes) -> Optional[str]:
        """Replaces the store state file atomically; returns why it failed, or None."""
        return self._write(payload, self.store_path)

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
        if is_sealed(raw):
            if self._cipher is None:
                return None
            try:
                raw = self._cipher.decrypt(raw, kind="file-pending", identity=self._store_id())
            except CacheDecryptionError:
                # A sign-in shared under another key is not ours to cancel.
                _log.debug("ignoring a shared sign-in this process cannot decrypt")
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
        problem = self._write(self._seal(payload, "file-pending"), self.pending_path)
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


def _parse(raw: bytes) -> tuple[Optional[TokenSet], Optional[str], Optional[int]]:
    """Parses the file content: (tokens, None, version) or (None, why it is corrupt, None).

    The version is the ``version`` field when it is a positive integer, else None.
    """
    # The .NET tool writes no BOM, but Windows editors add one; it carries no meaning.
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _corrupt("not valid UTF-8")
    try:
        data = json.loads(text)
    except RecursionError:
        return _corrupt("JSON nested too deeply")
    except ValueError:
        return _corrupt("not valid JSON")
    if not isinstance(data, dict):
        return _corrupt("not a JSON object")
    # The .NET tool reads with PropertyNameCaseInsensitive: "AccessToken" is the same key.
    fields = {str(k).lower(): v for k, v in data.items()}
    access = fields.get("accesstoken")
    refresh = fields.get("refreshtoken")
    if refresh == "":
        refresh = None
    if refresh is not None and not is_bearer_token(refresh):
        return _corrupt("refreshToken is not a bearer token")
    version = fields.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        version = None
    if access is None and refresh is not None:
        # No access token but a refresh token: an expired sign-in, refreshed on use.
        return TokenSet(access_token="", refresh_token=refresh, access_exp=0.0), None, version
    if not is_bearer_token(access):
        return _corrupt("accessToken is missing or not a bearer token")
    assert isinstance(access, str)
    exp = decode_exp(access)
    if exp is None:
        exp = _parse_iso8601(fields.get("accessexpiresat"))
    return TokenSet(access_token=access, refresh_token=refresh, access_exp=exp), None, version


def _corrupt(problem: str) -> tuple[None, str, None]:
    return None, problem, None


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


def _serialise(tokens: TokenSet, version: Optional[int] = None) -> bytes:
    exp = tokens.access_exp
    try:
        if exp is None:
            raise ValueError("unknown")
        moment = _dt.datetime.fromtimestamp(exp, _dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        # Unknown means "treat as expired": the current time is already past.
        moment = _dt.datetime.fromtimestamp(time.time(), _dt.timezone.utc)
    document: dict[str, object] = {
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "accessExpiresAt": moment.isoformat(timespec="seconds"),
    }
    if version is not None:
        document["version"] = version
    return json.dumps(document).encode("utf-8")


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
        _log.debug("cannot fsync folder %s (%s)", folder, describe(exc))
    finally:
        os.close(fd)
