"""The daemon and a full disk: the free-space floor for claiming, and telling a full disk
from other failures (issue 12, item 7).

Below `queue.min_free_mb` free in the data folder nobody new is claimed (one line when it
starts, one when it ends). A write the disk refused (SQLite's SQLITE_FULL, PostgreSQL's
disk_full, ENOSPC/EDQUOT) is not a verdict on anything: the daemon makes room by sweeping
the files its own failed stages left without rows, and records the outcome then.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import structlog

from facequeue.errors import LocalIOError
from facequeue.store import database_disk_full

log = structlog.get_logger()

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(exc: BaseException) -> bool:
    if database_disk_full(exc):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    return isinstance(exc, LocalIOError) and "No space left" in str(exc)


class FreeSpaceFloor:
    """Is there room to claim someone? Logs the change of state, not every check."""

    def __init__(self, data_dir: Path, floor_mb: float) -> None:
        self.data_dir = data_dir
        self.floor_mb = floor_mb
        self.low = False

    def ok(self) -> bool:
        if self.floor_mb <= 0:
            return True
        try:
            free_mb = shutil.disk_usage(self.data_dir).free / 1e6
        except OSError:
            return True
        low = free_mb < self.floor_mb
        if low != self.low:
            self.low = low
            if low:
                log.error(
                    "disk_space_low",
                    free_mb=round(free_mb, 1),
                    min_free_mb=self.floor_mb,
                    data_dir=str(self.data_dir),
                    claiming=False,
                )
            else:
                log.info("disk_space_ok", free_mb=round(free_mb, 1), claiming=True)
        return not low
