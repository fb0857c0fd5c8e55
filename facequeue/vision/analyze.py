"""Process-pool side of face analysis: decode once, detect once, measure, embed once, hash.

Everything a worker runs is a module-level function on paths/arrays and small frozen
dataclasses; expected outcomes (no face, unreadable file) are values, not exceptions.
The models load once per worker process (``init_worker``). The parent talks to the pool
through ``AnalysisPool`` (asyncio). See docs/faces.md for the measured choices.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facequeue.config import AnalysisConfig, Config
from facequeue.errors import ModelWeightsMissing
from facequeue.files import atomic_write_bytes
from facequeue.vision import engine

CHIP_SIZE = 150  # dlib's aligned chip; also the normalised size for blur / hash
CHIP_PADDING = 0.25  # dlib.get_face_chip default


_DEFAULTS = AnalysisConfig()  # defaults live in the config model only


@dataclass(frozen=True)
class AnalysisSettings:
    """What a worker process needs of the config (small and picklable)."""

    detector: str = _DEFAULTS.detector
    model: str = _DEFAULTS.model
    max_side: int = _DEFAULTS.max_side
    align: bool = _DEFAULTS.align
    deepface_home: str = _DEFAULTS.deepface_home
    allow_weight_download: bool = _DEFAULTS.allow_weight_download
    chip_size: int = CHIP_SIZE

    @classmethod
    def from_config(cls, cfg: Config) -> AnalysisSettings:
        a = cfg.analysis
        return cls(
            detector=a.detector,
            model=a.model,
            max_side=a.max_side,
            align=a.align,
            deepface_home=str(engine.default_home(cfg)),
            allow_weight_download=a.allow_weight_download,
        )


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    w: int
    h: int
    confidence: float


@dataclass(frozen=True)
class FaceAnalysis:
    status: str  # 'ok' | 'no_face' | 'unreadable'
    detail: str | None
    width: int
    height: int
    faces: tuple[Face, ...] = ()  # largest first, full-resolution boxes
    blur: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    embedding: bytes | None = None  # float32 bytes
    phash: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def main_face(self) -> Face | None:
        return self.faces[0] if self.faces else None

    def vector(self) -> np.ndarray | None:
        return None if self.embedding is None else np.frombuffer(self.embedding, np.float32)


# --------------------------------------------------------------------------- decoding


def decode_image(path: str) -> np.ndarray:
    """BGR uint8 array with EXIF orientation applied. Raises ValueError when unreadable."""
    from PIL import Image, ImageOps

    try:
        with open(path, "rb") as fh:  # Python I/O: non-ASCII paths work
            data = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise ValueError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            im: Image.Image = ImageOps.exif_transpose(opened)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, rgba)
            rgb = np.asarray(im.convert("RGB"))
    except Exception as exc:  # PIL raises many types for bad data (OSError, SyntaxError...)
        raise ValueError(f"not a readable image: {type(exc).__name__}: {exc}") from None
    if rgb.ndim != 3 or rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ValueError(f"degenerate image of shape {rgb.shape}")
    return np.ascontiguousarray(rgb[:, :, ::-1])


# --------------------------------------------------------------------------- worker state

_STATE: dict[str, Any] = {}


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)  # parent died: never linger as an orphan


def init_worker(settings: AnalysisSettings, parent_pid: int | None = None) -> None:
    """Load the detector and model once per process (pool initializer; also usable in-process)."""
    if parent_pid is not None and not _STATE.get("watching"):
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
        _STATE["watching"] = True
    if _STATE.get("settings") == settings:
        return
    home = settings.deepface_home or str(Path("data") / "deepface")
    engine.prepare(settings.model, settings.detector, home, settings.allow_weight_download)
    import cv2

    cv2.setNumThreads(1)
    det, rec = engine.build_models(settings.model, settings.detector)
    sp = engine.shape_predictor(home) if (settings.align and settings.model == "Dlib") else None
    _STATE.update(settings=settings, detector=det, model=rec, sp=sp)


def _ensure(settings: AnalysisSettings) -> None:
    if _STATE.get("settings") != settings:
        init_worker(settings)


# --------------------------------------------------------------------------- analysis


def analyze_image(path: str, settings: AnalysisSettings) -> FaceAnalysis:
    t0 = time.perf_counter()
    try:
        img = decode_image(path)
    except ValueError as exc:
        return FaceAnalysis(
            "unreadable", str(exc), 0, 0, timings={"decode": time.perf_counter() - t0}
        )
    decode_s = time.perf_counter() - t0
    result = analyze_bgr(img, settings)
    result.timings["decode"] = decode_s
    return result


def _detect(img: np.ndarray, settings: AnalysisSettings) -> tuple[list[tuple[Face, Any]], float]:
    """Detect on a copy scaled to at most max_side; boxes (and eyes) mapped back to full size."""
    import cv2

    h, w = img.shape[:2]
    scale = min(1.0, settings.max_side / max(h, w))
    small = (
        img
        if scale >= 1.0
        else cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    )
    if settings.detector == "dlib":
        regions = _dlib_regions(small, need_eyes=_STATE.get("sp") is None)
    else:
        regions = _STATE["detector"].detect_faces(small)
    out = []
    inv = 1.0 / scale
    for r in regions:
        x0, y0 = max(0, int(r.x * inv)), max(0, int(r.y * inv))
        x1, y1 = min(w, int(round((r.x + r.w) * inv))), min(h, int(round((r.y + r.h) * inv)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        eyes = None
        if r.left_eye is not None and r.right_eye is not None:
            eyes = (tuple(v * inv for v in r.left_eye), tuple(v * inv for v in r.right_eye))
        conf = float(r.confidence) if r.confidence is not None else 0.0
        out.append((Face(x0, y0, x1 - x0, y1 - y0, round(conf, 4)), eyes))
    out.sort(key=lambda fe: fe[0].w * fe[0].h, reverse=True)
    return out, scale


HOG_WINDOW = 80  # dlib's frontal HOG detector finds faces down to ~80 px without upsampling


def _dlib_regions(small: np.ndarray, need_eyes: bool) -> list[Any]:
    """DeepFace's dlib detector (same HOG model and scores), cheaper on large photos.

    DeepFace always upsamples once (4x the pixels). Without upsampling, HOG finds faces
    of >= ~80 px; when that pass already finds a face of >= 2 x 80 px, every face that
    could matter (>= extra_face_fraction 0.5 of it) is >= 80 px and was found too, so the
    upsampled pass is only run when no face or only a small one was found.
    """
    from deepface.models.Detector import FacialAreaRegion

    model = _STATE["detector"].model
    hog = model["face_detector"]
    dets, scores, _ = hog.run(small, 0)
    if not len(dets) or max(d.width() for d in dets) < 2 * HOG_WINDOW:
        dets, scores, _ = hog.run(small, 1)
    h, w = small.shape[:2]
    out = []
    for det, score in zip(dets, scores, strict=True):
        x, y = max(0, det.left()), max(0, det.top())
        fw, fh = min(det.right(), w) - x, min(det.bottom(), h) - y
        left_eye = right_eye = None
        if need_eyes:
            shape = model["sp"](small, det)
            right_eye = (
                (shape.part(2).x + shape.part(3).x) // 2,
                (shape.part(2).y + shape.part(3).y) // 2,
            )
            left_eye = (
                (shape.part(0).x + shape.part(1).x) // 2,
                (shape.part(0).y + shape.part(1).y) // 2,
            )
        out.append(
            FacialAreaRegion(
                x=x,
                y=y,
                w=fw,
                h=fh,
                left_eye=left_eye,
                right_eye=right_eye,
                confidence=min(max(0.0, float(score)), 1.0),
            )
        )
    return out


def _dlib_chip(img: np.ndarray, face: Face, size: int) -> np.ndarray:
    """dlib's 5-landmark aligned chip (BGR), computed on a region around the face."""
    import dlib

    h, w = img.shape[:2]
    m = max(face.w, face.h)
    x0, y0 = max(0, face.x - m), max(0, face.y - m)
    x1, y1 = min(w, face.x + face.w + m), min(h, face.y + face.h + m)
    region = np.ascontiguousarray(img[y0:y1, x0:x1, ::-1])  # RGB
    rect = dlib.rectangle(face.x - x0, face.y - y0, face.x - x0 + face.w, face.y - y0 + face.h)
    shape = _STATE["sp"](region, rect)
    chip = dlib.get_face_chip(region, shape, size=size, padding=CHIP_PADDING)
    return np.ascontiguousarray(chip[:, :, ::-1])


def _eye_chip(img: np.ndarray, face: Face, eyes: Any, size: int, align: bool) -> np.ndarray:
    """Generic chip: the face box (rotated so the eyes are level when align), resized square."""
    import cv2

    h, w = img.shape[:2]
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    side = max(face.w, face.h)
    if align and eyes is not None:
        (lx, ly), (rx, ry) = eyes
        angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
        if abs(angle) > 90:
            angle -= 180 * np.sign(angle)
    else:
        angle = 0.0
    m = cv2.getRotationMatrix2D((cx, cy), angle, size / side)
    m[0, 2] += size / 2 - cx
    m[1, 2] += size / 2 - cy
    return cv2.warpAffine(
        img,
        m,
        (size, size),
        flags=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def analyze_bgr(img: np.ndarray, settings: AnalysisSettings) -> FaceAnalysis:
    import cv2
    import imagehash
    from PIL import Image

    _ensure(settings)
    timings: dict[str, float] = {}
    height, width = img.shape[:2]
    t = time.perf_counter()
    detected, _ = _detect(img, settings)
    timings["detect"] = time.perf_counter() - t
    faces = tuple(f for f, _ in detected)
    if not faces:
        return FaceAnalysis("no_face", "no face detected", width, height, timings=timings)

    main, eyes = detected[0]
    t = time.perf_counter()
    size = settings.chip_size
    if _STATE.get("sp") is not None:
        chip = _dlib_chip(img, main, size)
    else:
        chip = _eye_chip(img, main, eyes, size, settings.align)
    timings["align"] = time.perf_counter() - t

    t = time.perf_counter()
    grey = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)
    blur = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    brightness = float(grey.mean())
    contrast = float(grey.std())
    phash = str(imagehash.phash(Image.fromarray(grey)))
    timings["quality"] = time.perf_counter() - t

    t = time.perf_counter()
    embedding = _embed(chip)
    timings["embed"] = time.perf_counter() - t
    return FaceAnalysis(
        "ok",
        None,
        width,
        height,
        faces,
        round(blur, 2),
        round(brightness, 2),
        round(contrast, 2),
        embedding,
        phash,
        timings,
    )


def embed_every_face(
    img: np.ndarray, settings: AnalysisSettings, min_side: int
) -> tuple[list[tuple[Face, bytes | None]], dict[str, float]]:
    """Every detected face (largest first) with its embedding, aligned exactly as analysis
    aligns the main face; a face narrower than `min_side` px gets None. (Recognition's
    entry point: one detection, one embedding per face.)"""
    _ensure(settings)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    detected, _ = _detect(img, settings)
    timings["detect"] = time.perf_counter() - t
    t = time.perf_counter()
    out: list[tuple[Face, bytes | None]] = []
    for face, eyes in detected:
        if min(face.w, face.h) < min_side:
            out.append((face, None))
            continue
        if _STATE.get("sp") is not None:
            chip = _dlib_chip(img, face, settings.chip_size)
        else:
            chip = _eye_chip(img, face, eyes, settings.chip_size, settings.align)
        out.append((face, _embed(chip)))
    timings["embed"] = time.perf_counter() - t
    return out, timings


def _embed(chip_bgr: np.ndarray) -> bytes:
    """One embedding of an already cropped/aligned face through DeepFace (detector 'skip')."""
    from deepface import DeepFace

    settings: AnalysisSettings = _STATE["settings"]
    res = DeepFace.represent(
        img_path=chip_bgr,
        model_name=settings.model,
        detector_backend="skip",
        enforce_detection=False,
        align=False,
    )
    return np.asarray(res[0]["embedding"], dtype=np.float32).tobytes()


# --------------------------------------------------------------------------- crops


def crop_box(face: Face, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The face box grown by `margin` of its size on each side, clamped to the image."""
    mx, my = int(face.w * margin), int(face.h * margin)
    return (
        max(0, face.x - mx),
        max(0, face.y - my),
        min(width, face.x + face.w + mx),
        min(height, face.y + face.h + my),
    )


def write_crop(src_path: str, face: Face, margin: float, dest_path: str) -> tuple[int, int]:
    """Write the face crop (margin, clamped) atomically: temp file in the same folder + rename."""
    import cv2

    img = decode_image(src_path)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = crop_box(face, margin, w, h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {face} lies outside the {w}x{h} image")
    crop = img[y0:y1, x0:x1]
    ext = Path(dest_path).suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, crop, params)
    if not ok:
        raise ValueError(f"cannot encode crop as {ext}")
    atomic_write_bytes(dest_path, buf.tobytes())
    return x1 - x0, y1 - y0


def _noop() -> int:
    return os.getpid()


# --------------------------------------------------------------------------- pool


class AnalysisPool:
    """Spawned worker processes, each with the models loaded once; asyncio front end."""

    def __init__(self, settings: AnalysisSettings, workers: int) -> None:
        self.settings = settings
        self.workers = max(1, int(workers))
        # Fail fast in the parent (one clear line) rather than in every worker.
        engine.prepare(
            settings.model,
            settings.detector,
            settings.deepface_home or "data/deepface",
            settings.allow_weight_download,
        )
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=mp.get_context("spawn"),
            initializer=init_worker,
            initargs=(settings, os.getpid()),
        )
        import structlog

        self._log = structlog.get_logger("facequeue.vision.analyze")

    def warm(self) -> list[int]:
        """Start every worker now (models loaded); returns their pids."""
        futs = [self._executor.submit(_noop) for _ in range(self.workers)]
        return [f.result() for f in futs]

    def pids(self) -> list[int]:
        procs = (self._executor._processes or {}).values()  # noqa: SLF001
        return [p.pid for p in procs if p.pid is not None]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def analyze(self, path: str) -> FaceAnalysis:
        t = time.perf_counter()
        result: FaceAnalysis = await self.run(analyze_image, path, self.settings)
        self._log.debug(
            "image_analyzed",
            path=path,
            status=result.status,
            faces=len(result.faces),
            total_s=round(time.perf_counter() - t, 4),
            **{f"{k}_s": round(v, 4) for k, v in result.timings.items()},
        )
        return result

    async def crop(
        self, src_path: str, face: Face, margin: float, dest_path: str
    ) -> tuple[int, int]:
        return await self.run(write_crop, src_path, face, margin, dest_path)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> AnalysisPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = [
    "AnalysisSettings",
    "Face",
    "FaceAnalysis",
    "AnalysisPool",
    "init_worker",
    "analyze_image",
    "analyze_bgr",
    "embed_every_face",
    "decode_image",
    "write_crop",
    "crop_box",
    "ModelWeightsMissing",
]
