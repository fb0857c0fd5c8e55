"""Atomic file writes: a temp file in the same folder, fsync, rename.

Readers (and a crash at any moment) see the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from facequeue.errors import LocalIOError

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


TMP_MARK = ".tmp"  # atomic-write temp files: .<name>.<pid>.tmp (a sweep knows the pid)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}{TMP_MARK}")
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
