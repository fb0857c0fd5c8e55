"""Per-image attributes for the JSON sidecars: skin tone (ITA), hair colour, colour statistics,
and age/sex through DeepFace when its weights are on disk.

Pure functions on BGR uint8 arrays and full-resolution face boxes; they run in the analysis
worker processes (called from ``metadata.describe_image``). Every function returns plain
JSON-able values. Methods and thresholds are documented in docs/metadata.md.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- skin tone (ITA)
# Individual Typology Angle (Chardon et al. 1991; categories as in Del Bino & Bernerd 2013):
#   ITA = arctan((L* - 50) / b*) * 180 / pi, in CIELAB (D65).
# Bounds (degrees): very_light > 55 >= light > 41 >= intermediate > 28 >= tan > 10
#                   >= brown > -30 >= dark.
ITA_CATEGORIES: tuple[tuple[float, str], ...] = (
    (55.0, "very_light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
)
SKIN_TONES = ("very_light", "light", "intermediate", "tan", "brown", "dark")
_B_EPS = 1e-3


def ita_degrees(L: float, b: float) -> float:
    """ITA in degrees for CIELAB L* (0-100) and b*. b* <= 0 (never real skin) is clamped to a
    tiny positive value, so the angle tends to +-90 degrees instead of flipping sign."""
    b = max(float(b), _B_EPS)
    return math.degrees(math.atan((float(L) - 50.0) / b))


def ita_category(ita: float) -> str:
    """The published ITA category for an angle in degrees."""
    for bound, name in ITA_CATEGORIES:
        if ita > bound:
            return name
    return "dark"


def bgr_to_lab(pixels: np.ndarray) -> np.ndarray:
    """BGR uint8 (any shape ending in 3) -> float CIELAB (L* 0-100, a*, b*), sRGB/D65."""
    import cv2

    arr = np.asarray(pixels, dtype=np.uint8).reshape(-1, 1, 3)
    lab = cv2.cvtColor(arr.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    return lab.reshape(-1, 3)


def _box_region(img: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray | None:
    h, w = img.shape[:2]
    x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
    x1, y1 = min(w, int(round(x1))), min(h, int(round(y1)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return img[y0:y1, x0:x1]


def _skin_mask(region: np.ndarray) -> np.ndarray:
    """Chai & Ngan YCrCb skin rule (Cr 133-173, Cb 77-127), as a flat boolean mask."""
    import cv2

    ycrcb = cv2.cvtColor(region, cv2.COLOR_BGR2YCrCb).reshape(-1, 3)
    cr, cb = ycrcb[:, 1], ycrcb[:, 2]
    return (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)


def skin_from_pixels(region: np.ndarray, min_skin_fraction: float = 0.25) -> dict[str, Any]:
    """ITA of a region that is mostly skin. Skin pixels by the YCrCb rule (all pixels if it
    keeps fewer than `min_skin_fraction`), then the 10-90th percentile band of L* (drops
    specular highlights, eyes, brows, nostrils), then the mean L*, a*, b* and its ITA."""
    pixels = region.reshape(-1, 3)
    mask = _skin_mask(region)
    method = "ycrcb_mask"
    if mask.mean() < min_skin_fraction:
        mask = np.ones(len(pixels), dtype=bool)
        method = "all_pixels"
    lab = bgr_to_lab(pixels[mask])
    lo, hi = np.percentile(lab[:, 0], [10, 90])
    band = lab[(lab[:, 0] >= lo) & (lab[:, 0] <= hi)]
    if len(band) == 0:
        band = lab
    L, a, b = (float(v) for v in band.mean(axis=0))
    ita = ita_degrees(L, b)
    return {
        "category": ita_category(ita),
        "ita": round(ita, 2),
        "lab": [round(L, 2), round(a, 2), round(b, 2)],
        "pixels": int(len(band)),
        "method": method,
    }


def skin_tone(img: np.ndarray, face: Any) -> dict[str, Any] | None:
    """Skin tone of a face: the inner box (15-85% width, 10-90% height: cheeks, forehead,
    nose) through ``skin_from_pixels``. None when the region is too small."""
    region = _box_region(
        img,
        face.x + 0.15 * face.w,
        face.y + 0.10 * face.h,
        face.x + 0.85 * face.w,
        face.y + 0.90 * face.h,
    )
    if region is None or region.shape[0] * region.shape[1] < 16:
        return None
    return skin_from_pixels(region)


# ----------------------------------------------------------------------------- hair colour
HAIR_COLOURS = ("black", "dark_brown", "brown", "light_brown", "blonde", "red", "gray", "white")


def hair_label(L: float, a: float, b: float) -> str:
    """A hair colour name for a CIELAB colour (thresholds in docs/metadata.md)."""
    chroma = math.hypot(a, b)
    hue = math.degrees(math.atan2(b, a))
    if L < 22:
        return "black"
    if chroma < 9:
        if L >= 72:
            return "white"
        return "gray" if L >= 40 else "black"
    if a > 14 and hue < 55 and L < 70:
        return "red"
    if L >= 60 and b >= 14:
        return "blonde"
    if L >= 45:
        return "light_brown"
    if L >= 32:
        return "brown"
    return "dark_brown"


def hair_colour(img: np.ndarray, face: Any, skin_lab: list[float] | None) -> dict[str, Any] | None:
    """Hair colour from the band above the face box (60% to 15% of the face height above
    its top, 10-90% of its width), skipping pixels within Delta-E 15 of the measured skin
    colour (forehead). The median colour of what is left is named by ``hair_label``.
    None (with no guess) when the band leaves the image or too little non-skin remains."""
    region = _box_region(
        img,
        face.x + 0.10 * face.w,
        face.y - 0.60 * face.h,
        face.x + 0.90 * face.w,
        face.y - 0.15 * face.h,
    )
    if region is None:
        return None
    lab = bgr_to_lab(region.reshape(-1, 3))
    if skin_lab is not None:
        keep = np.linalg.norm(lab - np.asarray(skin_lab, dtype=np.float32), axis=1) > 15.0
        if keep.mean() < 0.2:
            return None  # mostly skin: bald, or the box sits low on the forehead
        lab = lab[keep]
    L, a, b = (float(v) for v in np.median(lab, axis=0))
    return {
        "label": hair_label(L, a, b),
        "lab": [round(L, 2), round(a, 2), round(b, 2)],
        "pixels": int(len(lab)),
    }


# ----------------------------------------------------------------------------- colour statistics
def saturation(img: np.ndarray) -> float:
    """Mean HSV saturation (0-255) of the image."""
    import cv2

    return round(float(cv2.cvtColor(img, cv2.COLOR_BGR2HSV)[:, :, 1].mean()), 2)


def dominant_colours(img: np.ndarray, k: int = 5, sample_side: int = 64) -> list[dict[str, Any]]:
    """The k dominant colours by cv2.kmeans on a copy resized to sample_side px (fixed seed,
    deterministic), largest share first: [{"bgr": [b, g, r], "hex": "#rrggbb", "fraction"}]."""
    import cv2

    small = cv2.resize(img, (sample_side, sample_side), interpolation=cv2.INTER_AREA)
    data = small.reshape(-1, 3).astype(np.float32)
    k = max(1, min(k, len(np.unique(data, axis=0))))
    cv2.setRNGSeed(12345)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    labels0 = np.zeros((len(data), 1), np.int32)  # ignored without KMEANS_USE_INITIAL_LABELS
    _, labels, centers = cv2.kmeans(data, k, labels0, criteria, 3, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k)
    out = []
    for idx in np.argsort(-counts):
        b, g, r = (int(round(v)) for v in np.clip(centers[idx], 0, 255))
        out.append(
            {
                "bgr": [b, g, r],
                "hex": f"#{r:02x}{g:02x}{b:02x}",
                "fraction": round(float(counts[idx]) / len(data), 4),
            }
        )
    return out


# ----------------------------------------------------------------------------- age and sex
AGE_BUCKETS = (
    (13, "0-12"),
    (20, "13-19"),
    (30, "20-29"),
    (40, "30-39"),
    (50, "40-49"),
    (60, "50-59"),
)
AGE_GROUPS = ("child", "teen", "young_adult", "adult", "senior")

# DeepFace's weight file per engine (it picks the engine from DEEPFACE_BACKEND_ENGINE).
DEMOGRAPHY_FILES = {
    "onnx": ("age_model_weights.onnx", "gender_model_weights.onnx"),
    "tf": ("age_model_weights.h5", "gender_model_weights.h5"),
    "tensorflow": ("age_model_weights.h5", "gender_model_weights.h5"),
    "pytorch": ("age_model_weights.pth", "gender_model_weights.pth"),
}

_DEMO_STATE: dict[tuple[str, str], tuple[bool, str | None]] = {}


def age_bucket(age: float | None) -> str | None:
    """The seed's `estimated_age` string ('20-29', ..., '60+')."""
    if age is None:
        return None
    for upper, label in AGE_BUCKETS:
        if age < upper:
            return label
    return "60+"


def age_group(age: float | None) -> str | None:
    """child (<13), teen (13-19), young_adult (20-34), adult (35-59), senior (60+)."""
    if age is None:
        return None
    if age < 13:
        return "child"
    if age < 20:
        return "teen"
    if age < 35:
        return "young_adult"
    if age < 60:
        return "adult"
    return "senior"


def demographics_available(deepface_home: str | os.PathLike) -> tuple[bool, str | None]:
    """Whether DeepFace's age and gender weights exist for the engine in use (checked on disk
    before any model is built, so nothing is ever downloaded). Cached per process."""
    key = str(deepface_home)
    cached = _DEMO_STATE.get(("avail", key))
    if cached is not None:
        return cached
    engine = os.environ.get("DEEPFACE_BACKEND_ENGINE", "onnx").lower()
    files = DEMOGRAPHY_FILES.get(engine, DEMOGRAPHY_FILES["onnx"])
    wdir = Path(deepface_home) / ".deepface" / "weights"
    missing = [f for f in files if not (wdir / f).is_file()]
    result: tuple[bool, str | None]
    if missing:
        result = (
            False,
            f"DeepFace {engine} weights not found: {', '.join(str(wdir / f) for f in missing)} "
            f"(see docs/metadata.md, 'Age and sex')",
        )
    else:
        result = (True, None)
    _DEMO_STATE[("avail", key)] = result
    return result


def demographics(face_bgr: np.ndarray | None, deepface_home: str | os.PathLike) -> dict[str, Any]:
    """Age and sex of one face crop (BGR, a margin around the box) by DeepFace.analyze with
    detector 'skip'. {"available": false, "reason": ...} when the weights are missing or the
    model fails; values are never guessed."""
    ok, reason = demographics_available(deepface_home)
    if not ok:
        return {
            "available": False,
            "reason": reason,
            "age": None,
            "sex": None,
            "sex_confidence": None,
        }
    if face_bgr is None:
        return {
            "available": False,
            "reason": "no face to analyse",
            "age": None,
            "sex": None,
            "sex_confidence": None,
        }
    try:
        from deepface import DeepFace

        res = DeepFace.analyze(
            img_path=face_bgr,
            actions=("age", "gender"),
            detector_backend="skip",
            enforce_detection=False,
            silent=True,
        )
        obj = res[0] if isinstance(res, list) else res
        sex_label = obj.get("dominant_gender")
        sex = {"Man": "male", "Woman": "female"}.get(sex_label)
        conf = obj.get("gender", {}).get(sex_label) if sex_label else None
        return {
            "available": True,
            "reason": None,
            "age": int(obj["age"]),
            "sex": sex,
            "sex_confidence": None if conf is None else round(float(conf) / 100.0, 4),
            "engine": os.environ.get("DEEPFACE_BACKEND_ENGINE", "onnx"),
        }
    except Exception as exc:  # missing weights raced away, model error: say so, never guess
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _DEMO_STATE[("avail", str(deepface_home))] = (False, f"DeepFace.analyze failed: {msg}")
        return {
            "available": False,
            "reason": f"DeepFace.analyze failed: {msg}",
            "age": None,
            "sex": None,
            "sex_confidence": None,
        }
