"""Group commit for stored files: durable before `fetch` returns, without an fsync per file.

`SyncBatcher.write(job)` runs a job that writes one file (temp file + rename) and returns
once that file and its directory entry are on stable storage. Jobs arriving while a batch
runs wait for the next one, so one thread hop (and on Linux one `syncfs` per file system)
writes and syncs a whole batch: the daemon records a row for a file only after it is
durable, and neither thread hops nor syncs grow with the count of files.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sys
from collections.abc import Callable
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


def _run_batch(jobs: list[Callable[[], Path]]) -> list[Path | BaseException]:
    """Thread side: every job (each writes one file and returns its path), then one sync."""
    results: list[Path | BaseException] = []
    for job in jobs:
        try:
            results.append(job())
        except Exception as exc:  # noqa: BLE001 - handed to that job's caller
            results.append(exc)
    try:
        sync_paths([r for r in results if isinstance(r, Path)])
    except OSError as exc:
        results = [exc if isinstance(r, Path) else r for r in results]
    return results


class SyncBatcher:
    """Runs file-writing jobs in batches: one thread hop and one sync per batch."""

    def __init__(self) -> None:
        self._pending: list[tuple[Callable[[], Path], asyncio.Future[Path]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, job: Callable[[], Path]) -> Path:
        """Run `job` on the writer thread; return its path once the file is durable."""
        fut: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._pending.append((job, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            results = await asyncio.to_thread(_run_batch, [job for job, _ in batch])
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():  # its fetch was cancelled meanwhile
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
