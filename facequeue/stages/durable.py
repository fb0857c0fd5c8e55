"""Group commit for stored files: durable before `fetch` returns, without an fsync per file.

`SyncBatcher.durable(path)` returns once the file and its directory entry are on stable
storage. Files stored while a sync runs wait for the next one, so one thread hop (and on
Linux one `syncfs` per file system) makes a whole batch durable: the daemon records a row
for a file only after it is durable, and the cost no longer grows with the count of files.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sys
from pathlib import Path

_syncfs = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _syncfs = ctypes.CDLL(None, use_errno=True).syncfs  # libc, already loaded


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_paths(paths: list[Path]) -> None:
    """Make the files and their directories durable: syncfs once per file system if we can."""
    dirs = {p.parent for p in paths}
    if _syncfs is not None:
        done: set[int] = set()
        for d in dirs:
            dev = os.stat(d).st_dev
            if dev in done:
                continue
            fd = os.open(d, os.O_RDONLY)
            try:
                if _syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err), str(d))
            finally:
                os.close(fd)
            done.add(dev)
        return
    for p in paths:
        _fsync(p)
    for d in dirs:
        with contextlib.suppress(OSError):  # some systems cannot fsync a directory
            _fsync(d)


class SyncBatcher:
    def __init__(self) -> None:
        self._pending: list[tuple[Path, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def durable(self, path: Path) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((path, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        await fut

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            error: BaseException | None = None
            try:
                await asyncio.to_thread(sync_paths, [p for p, _ in batch])
            except OSError as exc:
                error = exc
            for _, fut in batch:
                if not fut.done():  # its fetch may have been cancelled meanwhile
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)
