"""Response and file bodies for the downloader: in memory when small, spooled when large.

A body up to `SPOOL_BYTES` stays in memory (one write later, no thread hop per chunk); a
larger one is written to a temp file in `SPOOL_BYTES` pieces, so memory stays bounded by
concurrency x SPOOL_BYTES however large the images a host sends. Hashing happens as the
bytes arrive.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

from facequeue.files import temp_name

SPOOL_BYTES = 1 << 20


class TooLarge(Exception):
    """The body passed the size cap while it was being read."""


@dataclass
class Body:
    sha256: str | None  # None until `digest()`: hashed on the thread that writes it
    size: int
    data: bytes | None = None  # the whole body, when small
    spool: Path | None = None  # a temp file holding it, when large (the caller removes it)

    def digest(self) -> str:
        if self.sha256 is None:  # hashlib releases the GIL: on a thread it runs beside the loop
            self.sha256 = hashlib.sha256(self.data or b"").hexdigest()
        return self.sha256

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)


async def read_response(
    resp: aiohttp.ClientResponse, max_bytes: int, tmp_path: Callable[[], Path]
) -> Body:
    """The whole body, hashed; TooLarge past max_bytes. Spools past SPOOL_BYTES."""
    length = resp.content_length
    if length is not None and length <= SPOOL_BYTES:  # aiohttp reads exactly that many
        data = await resp.read()
        return Body(None, len(data), data=data)
    digest, buf, size = hashlib.sha256(), bytearray(), 0
    spool: Path | None = None
    f: BinaryIO | None = None
    try:
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"body over {max_bytes} bytes")
            buf += chunk
            if len(buf) >= SPOOL_BYTES:
                digest.update(buf)
                if f is None:
                    spool = tmp_path()
                    f = await asyncio.to_thread(open, spool, "wb")
                piece, buf = bytes(buf), bytearray()
                await asyncio.to_thread(f.write, piece)
        if f is None:
            return Body(None, size, data=bytes(buf))
        digest.update(buf)
        await asyncio.to_thread(_finish_spool, f, bytes(buf))
        f = None
        return Body(digest.hexdigest(), size, spool=spool)
    except BaseException:
        if f is not None:
            f.close()
        if spool is not None:
            spool.unlink(missing_ok=True)
        raise


def _finish_spool(f: BinaryIO, rest: bytes) -> None:
    with f:
        f.write(rest)


def read_file(src: Path, tmp: Path) -> Body:
    """Thread side: a local file, in memory when small, else copied to tmp while hashing."""
    if src.stat().st_size <= SPOOL_BYTES:
        data = src.read_bytes()
        return Body(None, len(data), data=data)
    digest, size = hashlib.sha256(), 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while piece := fin.read(SPOOL_BYTES):
                size += len(piece)
                digest.update(piece)
                fout.write(piece)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Body(digest.hexdigest(), size, spool=tmp)


def place(body: Body, dest_dir: Path, ext: str, tmp_name: str) -> Path:
    """Thread side, once per file: hash, then into `dest_dir/<sha[:2]>/<sha>.<ext>` by rename
    (no fsync here; see durable.py). Returns the path."""
    sha = body.digest()
    dest = dest_dir / sha[:2] / f"{sha}.{ext}"
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = body.spool or Path(tmp_name)
    try:  # a write cut short (ENOSPC) must not leave its partial temp file behind
        if body.spool is None:
            src.write_bytes(body.data or b"")
        try:
            src.replace(dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # tmp_dir on another file system: copy beside dest
                raise
            part = dest.parent / temp_name(dest.name, "part")
            try:
                shutil.copyfile(src, part)
                part.replace(dest)
            finally:
                part.unlink(missing_ok=True)
    finally:
        src.unlink(missing_ok=True)
    return dest
