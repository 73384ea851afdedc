"""The record "process P is spending refresh token T", kept in the cache's lock file.

Why: after a rotation whose save failed (disk full), the cache still holds the refresh
token that was just spent, and the process that spent it holds the rotated pair in
memory. Another process presenting the spent token would trigger the server's reuse
detection, which revokes the whole family, the spender's live tokens included.

So the spender writes this record before it sends the refresh and blanks it after the
rotated tokens are saved (or the refresh did not rotate). Another process that finds a
record naming the token it is about to present, written by a process that is still
alive, does not present it. A record whose writer died is ignored: its answer may never
have been processed by the server, and if it was, that family died with the process.

Why the lock file: it already exists whenever a refresh runs (the refresh holds its
lock), and the record is written in place at offset 0 with a fixed size, so once the
file has held one record, writing another needs no free disk space on ordinary
(non copy-on-write) file systems. The lock is taken with ``flock`` on a separate
descriptor, so these writes never disturb it. No secret is stored: a truncated SHA-256
of the refresh token identifies it.

Thread-safety: callers hold the cross-process lock while writing; reading needs none.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import stat
import weakref
from typing import Optional

from ._store import fingerprint as store_fingerprint

__all__ = ["SpendMarker", "fingerprint", "new_owner"]

log = logging.getLogger("textstack_sdk.cache")

_SIZE = 512
_BLANK = b" " * (_SIZE - 1) + b"\n"
_FLAGS = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# Within one process, who may write records: an owner is alive while its holder (a token
# manager) is, so two managers of one process on one cache respect each other's record.
_OWNERS: weakref.WeakValueDictionary[str, object] = weakref.WeakValueDictionary()


def new_owner(holder: object) -> str:
    """A name for records written on behalf of ``holder``, valid while it lives."""
    owner = secrets.token_hex(8)
    _OWNERS[owner] = holder
    return owner


def fingerprint(refresh_token: str) -> str:
    """A secret-free identifier of a refresh token: the store's, cut to 64 bits to fit
    the record's fixed size (the on-disk format of the spend record)."""
    return store_fingerprint(refresh_token)[:16]


def _host() -> str:
    boot = ""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot = handle.read(64).strip()
    except OSError:
        pass  # not Linux: the host name alone
    return f"{socket.gethostname()[:64]}/{boot}"


def _started(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), to detect pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read(4096)
    except OSError:
        return None
    fields = raw.rpartition(b")")[2].split()
    return fields[19].decode("ascii", "replace") if len(fields) > 19 else None


def _alive(pid: int, started: object) -> bool:
    if os.name == "nt":
        return False  # os.kill(pid, 0) would terminate it there; the record is POSIX-only
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except (OSError, OverflowError):  # no such pid here (too large for a pid_t, say)
        return False
    if isinstance(started, str):
        now = _started(pid)
        if now is not None and now != started:
            return False  # the pid was reused by a newer process
    return True


class SpendMarker:
    """The spend record in one lock file. Thread-safe (stateless; see the module doc).

    Args:
        path: The cache's lock file (it must already exist to be written).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)

    def record(self, refresh_token: str, owner: str = "") -> bool:
        """Says that this process is about to present ``refresh_token``; False if not written."""
        if os.name == "nt":
            return False  # no liveness check there (see _alive), so nothing to record
        pid = os.getpid()
        document = {
            "v": 1,
            "host": _host(),
            "pid": pid,
            "started": _started(pid),
            "spent": fingerprint(refresh_token),
            "owner": owner,
        }
        data = json.dumps(document).encode("utf-8")
        if len(data) >= _SIZE:
            return False
        return self._write(data + b" " * (_SIZE - 1 - len(data)) + b"\n")

    def clear(self, owner: Optional[str] = None) -> bool:
        """Blanks the record (keeping the file's size, so the next record needs no space).

        Args:
            owner: Blank only a record ``owner`` wrote in this process: another's record,
                written since ours, may guard a token whose save failed too. None blanks
                whatever stands.

        Returns:
            False only when the file could not be written.
        """
        if owner is not None:
            document = self._read()
            if document is not None and (
                document.get("pid") != os.getpid() or document.get("owner") != owner
            ):
                return True  # not ours (any more): leave it standing
        return self._write(_BLANK)

    def reserve(self) -> bool:
        """Gives an empty lock file a blank record's room; False if it could not.

        Callers hold the lock. A record already there is left as it is.
        """
        fd = self._open()
        if fd is None:
            return False
        try:
            if os.fstat(fd).st_size >= _SIZE:
                return True
        except OSError:
            return False
        finally:
            os.close(fd)
        # Shorter than any record (each is written whole, padded): empty, or a torn blank.
        return self._write(_BLANK)

    def spent_elsewhere(self, refresh_token: str, owner: str = "") -> bool:
        """True when someone alive other than ``owner`` spent ``refresh_token``.

        That is another live process on this host, or another live owner (token
        manager) of this process.
        """
        document = self._read()
        if document is None or document.get("spent") != fingerprint(refresh_token):
            return False
        pid = document.get("pid")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            return False
        if pid == os.getpid():
            writer = document.get("owner")
            return isinstance(writer, str) and writer != owner and writer in _OWNERS
        if document.get("host") != _host():
            # Liveness cannot be checked across machines (nor does flock exclude there).
            return False
        return _alive(pid, document.get("started"))

    def _open(self) -> Optional[int]:
        try:
            fd = os.open(self._path, _FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and (os.name == "nt" or st.st_uid == os.getuid()):
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def _write(self, data: bytes) -> bool:
        fd = self._open()
        if fd is None:
            return False
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            return True
        except OSError as exc:
            log.debug("could not write the spend record in %s (%s)", self._path, exc.strerror)
            return False
        finally:
            os.close(fd)

    def _read(self) -> Optional[dict[str, object]]:
        fd = self._open()
        if fd is None:
            return None
        try:
            raw = os.read(fd, _SIZE)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        return document if isinstance(document, dict) else None
