"""POST /api/recognize: bounded uploads, bounded concurrency, the seed's answer plus `faces`.

Memory stays bounded: a request waits for a slot *before* its body is read (at most
`max_concurrent` bodies in memory or on disk), a body over `max_upload_mb` is cut off at that
size, and the image header is checked against `max_pixels` before anything decodes it.
Detection and embedding run in worker processes (`max_concurrent` of them, models loaded
once), so a slow photo never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from facequeue.config import Config
from facequeue.serve.gallery import LiveGallery
from facequeue.vision.analyze import AnalysisSettings
from facequeue.vision.pool import AnalysisPool, WorkerFailed, WorkerLost
from facequeue.vision.recognize import QueryPhoto, Recognition, embed_faces, name_faces

CHUNK = 1 << 16


class UploadError(Exception):
    """A bad upload: answered with `status` and a one-line JSON error."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


@dataclass(frozen=True)
class Upload:
    path: Path
    size: int
    top: int


def check_image(path: Path, max_pixels: int) -> tuple[int, int]:
    """Read only the header: (width, height), or an UploadError for what is not a usable image."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UploadError(413, f"image too large (decompression bomb?): {exc}") from None
        except UnidentifiedImageError:
            raise UploadError(415, "not an image (unknown or unsupported format)") from None
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad headers
            raise UploadError(422, f"unreadable image: {type(exc).__name__}: {exc}") from None
    if w * h > max_pixels:
        raise UploadError(413, f"image too large: {w}x{h} pixels (limit {max_pixels:,})")
    return w, h


class Recognizer:
    """The worker pool, the slots, and the answer."""

    def __init__(self, cfg: Config, gallery: LiveGallery) -> None:
        self.cfg, self.gallery = cfg, gallery
        self.settings = AnalysisSettings.from_config(cfg)
        self.max_bytes = int(cfg.serve.max_upload_mb * 1024 * 1024)
        self.slots = asyncio.Semaphore(cfg.serve.max_concurrent)
        self.waiting = 0
        self.pool: AnalysisPool | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="uploads-", dir=self._tmp_root(cfg)))

    @staticmethod
    def _tmp_root(cfg: Config) -> str:
        cfg.tmp_dir.mkdir(parents=True, exist_ok=True)
        return str(cfg.tmp_dir)

    async def start(self) -> None:
        pool = await asyncio.to_thread(
            AnalysisPool,
            self.settings,
            self.cfg.serve.max_concurrent,
            self.cfg.analysis.image_timeout_s,
        )
        self.pool = pool
        await asyncio.to_thread(pool.warm)

    async def close(self) -> None:
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)
        for p in self.tmp.glob("*"):
            p.unlink(missing_ok=True)
        self.tmp.rmdir()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """A recognition slot; waits up to queue_wait_s, else a 503. Yields the wait."""
        t = time.monotonic()
        self.waiting += 1
        try:
            await asyncio.wait_for(self.slots.acquire(), self.cfg.serve.queue_wait_s)
        except TimeoutError:
            waited = round(time.monotonic() - t, 3)
            raise UploadError(
                503,
                f"busy: {self.cfg.serve.max_concurrent} recognitions running, waited {waited} s",
                waited_s=waited,
            ) from None
        finally:
            self.waiting -= 1
        try:
            yield time.monotonic() - t
        finally:
            self.slots.release()

    async def read_upload(self, request: web.Request, dest: Path) -> Upload:
        """Stream the multipart field `image` to dest (at most max_bytes); read `top`."""
        if request.content_length is not None and request.content_length > self.max_bytes + CHUNK:
            raise self._too_big()
        if not request.content_type.startswith("multipart/"):
            raise UploadError(400, "send multipart/form-data with the photo in the field 'image'")
        reader = await request.multipart()
        size, top, found = 0, 3, False
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "image" and not found:
                found = True
                size = await self._save(part, dest)
            elif part.name == "top":
                top = _parse_top(await part.text())
        if not found:
            raise UploadError(400, "no 'image' field in the form")
        if size == 0:
            raise UploadError(400, "the 'image' field is empty")
        return Upload(dest, size, top)

    async def _save(self, part: BodyPartReader, dest: Path) -> int:
        size = 0
        with open(dest, "wb") as fh:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_big()
                fh.write(chunk)
        return size

    def _too_big(self) -> UploadError:
        return UploadError(
            413, f"upload larger than serve.max_upload_mb ({self.cfg.serve.max_upload_mb:g} MB)"
        )

    async def recognize(self, upload: Upload) -> tuple[dict, QueryPhoto]:
        await asyncio.to_thread(check_image, upload.path, self.cfg.serve.max_pixels)
        assert self.pool is not None, "start() first"
        try:
            photo: QueryPhoto = await self.pool.run(embed_faces, str(upload.path), self.settings)
        except (WorkerLost, WorkerFailed) as exc:  # the worker died or hung on this image
            raise UploadError(422, f"image could not be analysed: {exc}") from None
        if photo.status == "unreadable":
            raise UploadError(422, f"unreadable image: {photo.detail}")
        await self.gallery.refresh()
        index = self.gallery.index
        faces = await asyncio.to_thread(name_faces, index, photo, upload.top)
        return answer(photo, faces, index.people), photo


def _parse_top(text: str) -> int:
    try:
        top = int(text.strip())
    except ValueError:
        raise UploadError(400, f"'top' must be a whole number, got {text[:20]!r}") from None
    if not 1 <= top <= 100:
        raise UploadError(400, "'top' must be between 1 and 100")
    return top


def answer(photo: QueryPhoto, faces: list[Recognition], identities: int) -> dict:
    """The seed's shape (status, person, confidence, best_match) plus every face."""
    named = [f for f in faces if f.person_id is not None]
    best = min(named, key=lambda f: f.distance or 0.0) if named else None
    status = "no_face" if photo.status == "no_face" or not faces else "unknown"
    out: dict[str, Any] = {"status": status, "person": None, "confidence": None}
    out["best_match"] = None
    if best is not None:
        m = best.matches[0]
        out.update(status="success", person=best.label, confidence=best.confidence)
        out["best_match"] = {
            "identity": Path(m.image_path).name,
            "distance": m.distance,
            "person_id": m.person_id,
        }
    out["faces"] = [
        {
            **{k: v for k, v in f.as_dict().items() if k != "matches"},
            "candidates": [
                {
                    "person_id": m.person_id,
                    "person": m.name,
                    "country": m.country,
                    "distance": m.distance,
                    "confidence": m.confidence,
                    "identity": Path(m.image_path).name,
                }
                for m in f.matches
            ],
        }
        for f in faces
    ]
    out["image"] = {"width": photo.width, "height": photo.height}
    out["gallery_identities"] = identities
    return out
