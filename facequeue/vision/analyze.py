"""Process-pool side of face analysis: decode once, detect once, measure, embed once, hash.

Everything a worker runs is a module-level function on paths/arrays and small frozen
dataclasses; expected outcomes (no face, unreadable file) are values, not exceptions.
The models load once per worker process (``init_worker``). The parent talks to the pool
through ``AnalysisPool`` (asyncio). See docs/faces.md for the measured choices.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facequeue.config import AnalysisConfig, Config
from facequeue.errors import ModelWeightsMissing
from facequeue.files import atomic_write_bytes
from facequeue.vision import decode, detect, engine
from facequeue.vision.detect import Face
from facequeue.vision.phash import phash

CHIP_SIZE = 150  # dlib's aligned chip; also the normalised size for blur / hash


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
    # Which faces besides the largest get embedded (curation decides group photos on them).
    min_face_px: int = _DEFAULTS.min_face_px
    extra_face_fraction: float = _DEFAULTS.extra_face_fraction
    extra_face_min_confidence: float = _DEFAULTS.extra_face_min_confidence
    max_faces: int = 8  # embeddings per image at most (a crowd is no training photo)
    decode_max_pixels: int = decode.DEFAULT_MAX_PIXELS
    decode_budget_mb: int = _DEFAULTS.decode_budget_mb

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
            min_face_px=a.min_face_px,
            extra_face_fraction=a.extra_face_fraction,
            extra_face_min_confidence=a.extra_face_min_confidence,
            decode_budget_mb=a.decode_budget_mb,
        )


@dataclass(frozen=True)
class FaceValues:
    """What analysis measured on one embedded face (``index`` into FaceAnalysis.faces)."""

    index: int
    blur: float
    brightness: float
    contrast: float
    embedding: bytes  # float32
    phash: str  # of the aligned grey chip
    phash_mirror: str  # of the same chip mirrored: a mirrored copy of a photo matches it
    landmarks: tuple[tuple[int, int], ...] = ()  # dlib's 5 points, full resolution

    def vector(self) -> np.ndarray:
        return np.frombuffer(self.embedding, np.float32)


@dataclass(frozen=True)
class FaceAnalysis:
    # 'ok' | 'no_face' | 'unreadable' | 'analysis_error' | 'analysis_crashed' | 'analysis_timeout'
    status: str
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
    embedded: tuple[FaceValues, ...] = ()  # the main face first, then other usable faces

    @property
    def main_face(self) -> Face | None:
        return self.faces[0] if self.faces else None

    def values_of(self, index: int) -> FaceValues | None:
        return next((v for v in self.embedded if v.index == index), None)

    def with_face(self, index: int) -> FaceAnalysis:
        """The same analysis seen from face ``index``: it becomes faces[0] and the top values."""
        v = self.values_of(index)
        if index == 0 or v is None:
            return self
        faces = (self.faces[index],) + tuple(f for k, f in enumerate(self.faces) if k != index)
        return replace(
            self,
            faces=faces,
            blur=v.blur,
            brightness=v.brightness,
            contrast=v.contrast,
            embedding=v.embedding,
            phash=v.phash,
        )

    def vector(self) -> np.ndarray | None:
        return None if self.embedding is None else np.frombuffer(self.embedding, np.float32)


# --------------------------------------------------------------------------- decoding


def decode_image(path: str, settings: AnalysisSettings | None = None) -> np.ndarray:
    """BGR uint8 array with EXIF orientation applied, within the settings' memory budget.

    Raises ``decode.Unreadable`` (a ValueError) with a one-line reason when unreadable.
    """
    s = settings or AnalysisSettings()
    img, _ = decode.decode_file(path, s.decode_max_pixels, s.decode_budget_mb << 20)
    return img


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


def analyze_image(
    path: str, settings: AnalysisSettings, crops: tuple[str, float] | None = None
) -> FaceAnalysis:
    """Decode once, detect once, measure and embed every usable face (pool function).

    ``crops=(prefix, margin)`` also writes each embedded face's crop (``crop_name``) from
    the same decoded array. Every failure is a value: ``unreadable`` with the reason, or
    ``analysis_error`` with the exception, never an exception out of here.
    """
    t0 = time.perf_counter()
    try:
        img = decode_image(path, settings)
    except ValueError as exc:
        return FaceAnalysis(
            "unreadable", str(exc), 0, 0, timings={"decode": time.perf_counter() - t0}
        )
    except Exception as exc:  # noqa: BLE001 - one image's failure never fails its person
        return FaceAnalysis("analysis_error", _one_line(exc), 0, 0)
    decode_s = time.perf_counter() - t0
    try:
        result = analyze_bgr(img, settings)
        if crops is not None:
            t = time.perf_counter()
            for v in result.embedded:
                _write_crop_bgr(img, result.faces[v.index], crops[1], crop_name(crops[0], v.index))
            result.timings["crops"] = time.perf_counter() - t
    except ModelWeightsMissing:
        raise
    except Exception as exc:  # noqa: BLE001
        return FaceAnalysis("analysis_error", _one_line(exc), img.shape[1], img.shape[0])
    result.timings["decode"] = decode_s
    return result


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _embedded_indexes(faces: tuple[Face, ...], s: AnalysisSettings) -> list[int]:
    """The main face and every other face that could be the person or count against it."""
    main = faces[0]
    keep = [0]
    for k, f in enumerate(faces[1:], start=1):
        if f.confidence < s.extra_face_min_confidence:
            continue
        if min(f.w, f.h) >= s.min_face_px or f.w >= s.extra_face_fraction * main.w:
            keep.append(k)
    return keep[: s.max_faces]


def _measure(img: np.ndarray, face: Face, eyes: Any, index: int, s: AnalysisSettings) -> FaceValues:
    import cv2

    marks: tuple[tuple[int, int], ...] = ()
    if _STATE.get("sp") is not None:
        chip, marks = detect.dlib_chip(img, face, s.chip_size, _STATE["sp"])
    else:
        chip = detect.eye_chip(img, face, eyes, s.chip_size, s.align)
    grey = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)
    return FaceValues(
        index=index,
        blur=round(float(cv2.Laplacian(grey, cv2.CV_64F).var()), 2),
        brightness=round(float(grey.mean()), 2),
        contrast=round(float(grey.std()), 2),
        embedding=_embed(chip),
        phash=phash(grey),
        phash_mirror=phash(np.ascontiguousarray(grey[:, ::-1])),
        landmarks=marks,
    )


def analyze_bgr(img: np.ndarray, settings: AnalysisSettings) -> FaceAnalysis:
    _ensure(settings)
    timings: dict[str, float] = {}
    height, width = img.shape[:2]
    t = time.perf_counter()
    detected = detect.detect(
        img,
        settings.max_side,
        settings.detector,
        _STATE["detector"],
        need_eyes=_STATE.get("sp") is None,
    )
    timings["detect"] = time.perf_counter() - t
    faces = tuple(f for f, _ in detected)
    if not faces:
        return FaceAnalysis("no_face", "no face detected", width, height, timings=timings)
    t = time.perf_counter()
    values = tuple(
        _measure(img, faces[k], detected[k][1], k, settings)
        for k in _embedded_indexes(faces, settings)
    )
    timings["embed"] = time.perf_counter() - t
    main = values[0]
    return FaceAnalysis(
        "ok",
        None,
        width,
        height,
        faces,
        main.blur,
        main.brightness,
        main.contrast,
        main.embedding,
        main.phash,
        timings,
        values,
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
    sp = _STATE.get("sp")
    detected = detect.detect(
        img, settings.max_side, settings.detector, _STATE["detector"], sp is None
    )
    timings["detect"] = time.perf_counter() - t
    t = time.perf_counter()
    out: list[tuple[Face, bytes | None]] = []
    for face, eyes in detected:
        if min(face.w, face.h) < min_side:
            out.append((face, None))
            continue
        if sp is not None:
            chip, _ = detect.dlib_chip(img, face, settings.chip_size, sp)
        else:
            chip = detect.eye_chip(img, face, eyes, settings.chip_size, settings.align)
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


def crop_name(prefix: str, index: int) -> str:
    """The crop file of face ``index`` of an image: <prefix>.jpg for the main face."""
    return f"{prefix}.jpg" if index == 0 else f"{prefix}_f{index}.jpg"


def crop_box(face: Face, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The face box grown by `margin` of its size on each side, clamped to the image."""
    mx, my = int(face.w * margin), int(face.h * margin)
    return (
        max(0, face.x - mx),
        max(0, face.y - my),
        min(width, face.x + face.w + mx),
        min(height, face.y + face.h + my),
    )


def _write_crop_bgr(img: np.ndarray, face: Face, margin: float, dest_path: str) -> tuple[int, int]:
    import cv2

    h, w = img.shape[:2]
    x0, y0, x1, y1 = crop_box(face, margin, w, h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {face} lies outside the {w}x{h} image")
    ext = Path(dest_path).suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, img[y0:y1, x0:x1], params)
    if not ok:
        raise ValueError(f"cannot encode crop as {ext}")
    Path(dest_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest_path, buf.tobytes())
    return x1 - x0, y1 - y0


def write_crop(
    src_path: str,
    face: Face,
    margin: float,
    dest_path: str,
    settings: AnalysisSettings | None = None,
) -> tuple[int, int]:
    """Write the face crop (margin, clamped) atomically: temp file in the same folder + rename."""
    return _write_crop_bgr(decode_image(src_path, settings), face, margin, dest_path)


__all__ = [
    "AnalysisSettings",
    "Face",
    "FaceAnalysis",
    "FaceValues",
    "init_worker",
    "analyze_image",
    "analyze_bgr",
    "embed_every_face",
    "decode_image",
    "write_crop",
    "crop_box",
    "crop_name",
    "ModelWeightsMissing",
]
