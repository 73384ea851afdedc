"""Reading a file that holds a secret: the checks shared by the token cache and key files.

The file is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink is refused, a FIFO cannot
hang us) and judged with ``fstat`` on the opened descriptor, so what is checked is what
is read: a regular file, owned by us, without any group/other permission bits, and at
most ``limit`` bytes. On Windows ``st_mode`` is synthesised (0o666) and ``st_uid`` is 0,
so the mode and owner checks are skipped there; the file's ACL protects it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Optional

__all__ = ["PrivateRead", "peek_regular", "read_private", "refusal"]

_POSIX = os.name != "nt"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC


@dataclass(frozen=True)
class PrivateRead:
    """The outcome of one read. Immutable.

    ``data`` is None when the file is missing (``problem`` None) or refused (``problem``
    says why and how to fix it; ``{}`` in it stands for the path).
    """

    data: Optional[bytes]
    ident: Optional[tuple[int, int]] = None
    problem: Optional[str] = None


def read_private(path: os.PathLike[str] | str, *, limit: int, remedy: str) -> PrivateRead:
    """Reads at most ``limit`` bytes of an owner-only regular file, checked on its descriptor.

    Args:
        path: The file.
        limit: The largest size accepted.
        remedy: What fixes a wrong file type, owner or size, e.g. "remove it and log in
            again".
    """
    try:
        fd = os.open(path, READ_FLAGS)
    except FileNotFoundError:
        return PrivateRead(None)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            problem = (
                "it is a symbolic link (the target is not read); fix: replace it with a "
                "regular file, e.g. rm {} and " + remedy.replace("remove it and ", "")
            )
        elif exc.errno == errno.ENOTDIR:
            problem = "a parent of it is not a folder; fix the path"
        else:
            problem = f"it cannot be opened ({describe(exc)}); fix its permissions (chmod 600 {{}})"
        return PrivateRead(None, problem=problem)
    try:
        st = os.fstat(fd)
        refused = refusal(st, limit=limit, remedy=remedy)
        if refused is not None:
            return PrivateRead(None, problem=refused)
        data = _read_at_most(fd, limit + 1)
    except OSError as exc:
        return PrivateRead(None, problem=f"it cannot be read ({describe(exc)})")
    finally:
        os.close(fd)
    if len(data) > limit:
        return PrivateRead(
            None, problem=f"it grew past {limit} bytes while being read; fix: {remedy}"
        )
    return PrivateRead(data, (st.st_dev, st.st_ino))


def peek_regular(path: os.PathLike[str] | str, *, limit: int) -> Optional[bytes]:
    """At most ``limit`` bytes of a regular file whatever its owner and mode, or None.

    For reading what is not secret in a file that ``read_private`` refuses: which key a
    sealed record names, so that it is never replaced just because its mode is wrong.
    A symlink or anything but a regular file gives None, as does any OSError.
    """
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return _read_at_most(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def refusal(st: os.stat_result, *, limit: int, remedy: str) -> Optional[str]:
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
        return f"it is {kind}, not a regular file; fix: {remedy}"
    if _POSIX:
        if st.st_uid != os.getuid():
            return f"it is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); fix: {remedy}"
        if mode & 0o077:
            return (
                f"its mode is {stat.S_IMODE(mode):04o}, readable or writable by group or "
                "others, so the secrets in it may be compromised; fix: chmod 600 {} "
                "(and replace them if others could read it)"
            )
    if st.st_size > limit:
        return f"it is {st.st_size} bytes, more than the {limit}-byte cap; fix: {remedy}"
    return None


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


def describe(exc: OSError) -> str:
    """The human part of an OSError (never a path: callers add it where it belongs)."""
    return exc.strerror or exc.__class__.__name__
