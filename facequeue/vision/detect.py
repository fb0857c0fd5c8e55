"""Face detection and alignment on decoded BGR arrays (analysis worker side).

``detect`` runs the configured DeepFace detector once on a copy scaled to at most
``max_side`` and maps boxes (and eyes) back; ``dlib_chip`` / ``eye_chip`` cut the aligned
face the recognition model embeds. See docs/faces.md for the measured choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CHIP_PADDING = 0.25  # dlib.get_face_chip default
HOG_WINDOW = 80  # dlib's frontal HOG detector finds faces down to ~80 px without upsampling
MIN_DETECT_SIDE = 24  # a copy narrower than this cannot hold a face worth detecting


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    w: int
    h: int
    confidence: float


def detect(
    img: np.ndarray, max_side: int, detector_name: str, detector: Any, need_eyes: bool
) -> list[tuple[Any, Any]]:
    """[(Face, eyes | None)] largest first, boxes in ``img``'s coordinates."""
    import cv2

    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    if min(sw, sh) < MIN_DETECT_SIDE:  # e.g. a 100x210000 strip: nothing to find
        return []
    small = img if scale >= 1.0 else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    if detector_name == "dlib":
        regions = dlib_regions(small, detector, need_eyes)
    else:
        regions = detector.detect_faces(small)
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
    return out


def dlib_regions(small: np.ndarray, detector: Any, need_eyes: bool) -> list[Any]:
    """DeepFace's dlib detector (same HOG model and scores), cheaper on large photos.

    DeepFace always upsamples once (4x the pixels). Without upsampling, HOG finds faces
    of >= ~80 px; when that pass already finds a face of >= 2 x 80 px, every face that
    could matter (>= extra_face_fraction 0.5 of it) is >= 80 px and was found too, so the
    upsampled pass is only run when no face or only a small one was found.
    """
    from deepface.models.Detector import FacialAreaRegion

    model = detector.model
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


def dlib_chip(
    img: np.ndarray, face: Any, size: int, sp: Any
) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """dlib's 5-landmark aligned chip (BGR) and the landmarks (full resolution).

    Computed on a region around the face, scaled so the face is at most 2 chips wide: the
    150 px chip loses nothing, and a large face never costs a full-size region copy.
    """
    import cv2
    import dlib

    h, w = img.shape[:2]
    m = max(face.w, face.h)
    x0, y0 = max(0, face.x - m), max(0, face.y - m)
    x1, y1 = min(w, face.x + face.w + m), min(h, face.y + face.h + m)
    f = min(1.0, 2 * size / m)
    region = img[y0:y1, x0:x1]
    if f < 1.0:
        dsize = (max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f)))
        region = cv2.resize(region, dsize, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(region, cv2.COLOR_BGR2RGB)
    fx, fy = (face.x - x0) * f, (face.y - y0) * f
    rect = dlib.rectangle(round(fx), round(fy), round(fx + face.w * f), round(fy + face.h * f))
    shape = sp(rgb, rect)
    chip = dlib.get_face_chip(rgb, shape, size=size, padding=CHIP_PADDING)
    marks = tuple(
        (round(shape.part(k).x / f) + x0, round(shape.part(k).y / f) + y0)
        for k in range(shape.num_parts)
    )
    return np.ascontiguousarray(chip[:, :, ::-1]), marks


def eye_chip(img: np.ndarray, face: Any, eyes: Any, size: int, align: bool) -> np.ndarray:
    """Generic chip: the face box (rotated so the eyes are level when align), resized square."""
    import cv2

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
