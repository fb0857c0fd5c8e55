"""Atomic file writes: a temp file in the same folder, fsync, rename.

Readers (and a crash at any moment) see the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def atomic_write_text(dest: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    return atomic_write_bytes(dest, Path(src).read_bytes())
