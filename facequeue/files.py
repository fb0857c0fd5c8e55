"""Atomic file writes: a temp file in the same folder, fsync, rename.

Readers (and a crash at any moment) see the old file or the new one, never half of one.
Temp names carry their owner (host and pid): on a data_dir shared by several machines a
sweep removes only the temps of owners that are dead, never a live writer's.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import uuid
from pathlib import Path

from facequeue.errors import LocalIOError

_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9_-]+)~(?P<pid>\d+)~[0-9a-f]{8}\.(tmp|part)$")


def host_tag(host: str) -> str:
    """A host name as it appears in temp file names."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", host) or "host"


def owner_tag(host: str | None = None, pid: int | None = None) -> str:
    """host~pid (default: this process), as it appears in temp file names."""
    return f"{host_tag(host or socket.gethostname())}~{pid or os.getpid()}"


def temp_name(name: str, suffix: str = "tmp") -> str:
    """A hidden temp name for `name`, unique to this process and call, naming its owner."""
    return f".{name}.{owner_tag()}~{uuid.uuid4().hex[:8]}.{suffix}"


def temp_owner(path: str | os.PathLike) -> tuple[str, int] | None:
    match = _OWNER.search(Path(path).name)
    return (match.group("host"), int(match.group("pid"))) if match else None


def owner_is_dead(path: str | os.PathLike, live: set[str] | None = None) -> bool | None:
    """True when the temp's owner is gone: a dead pid on this host, or (given the set of
    live daemons' host~pid tags from the database) no live daemon on another host.
    None when this cannot be told (old-style name, other host without a live set)."""
    owner = temp_owner(path)
    if owner is None:
        return None
    host, pid = owner
    if host == owner_tag().split("~")[0]:
        return not _pid_alive(pid)
    if live is None:
        return None
    return f"{host}~{pid}" not in live


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Errors of this machine's own disk: the work is retried later, never judged by them.
LOCAL_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}
)


def local_io_error(exc: BaseException) -> LocalIOError | None:
    """A LocalIOError for a full, read-only or forbidden local disk; None for anything else.

    Callers pass only errors of local file operations or OSErrors that are not network
    errors (an aiohttp.ClientOSError is a network error whatever its errno)."""
    if isinstance(exc, LocalIOError):
        return exc
    if isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS:
        where = f" ({exc.filename})" if exc.filename else ""
        return LocalIOError(f"local disk: {exc.strerror or exc}{where}")
    return None


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(temp_name(dest.name))
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)  # the rename itself survives a power cut
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename/creation in `folder` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(dest: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    return atomic_write_bytes(dest, Path(src).read_bytes())


def remove_unlisted(folder: Path, keep: set[str]) -> None:
    """After (re)curation a person's folder holds exactly the files in `keep`."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name not in keep and path.is_file():
            path.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()
