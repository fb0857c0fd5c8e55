"""Pool side of the per-image sidecars: what a sidecar needs to know about an image.

- ``describe_image(path, settings)``: everything about any image in one pass (decode once,
  ``analyze.analyze_bgr``, skin tone, hair colour, colours, age/sex) for the ``metadata``
  command's retroactive sidecars.
- ``describe_crop(path, box, facts, settings)``: an accepted crop whose face is already
  known from the stored analysis: no second detection or embedding.
Results are JSON-able dicts; failures are values (``status: "unreadable"``).
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facequeue.vision import attributes

if TYPE_CHECKING:
    from facequeue.vision.analyze import AnalysisSettings

DEMOGRAPHY_MARGIN = 0.2


def _file_facts(path: Path) -> dict[str, Any]:
    """Size and hashes of the file, format and mode from its header (PIL, lazy)."""
    from PIL import Image

    data = path.read_bytes()
    facts: dict[str, Any] = {
        "bytes": len(data),
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": None,
        "mode": None,
    }
    try:
        with Image.open(io.BytesIO(data)) as im:
            facts["format"], facts["mode"] = im.format, im.mode
    except Exception:  # unreadable: reported by decode_image below
        pass
    return facts


def describe_image(path: str, settings: AnalysisSettings) -> dict[str, Any]:
    """Everything the sidecar needs about one image, computed in one pass (pool function).

    Decodes once (``analyze.decode_image``), runs ``analyze.analyze_bgr`` (one detection,
    aligned chip, blur, phash, embedding) and computes, on the main (largest) face: skin
    tone by ITA, hair colour, and age/sex when DeepFace's weights are on disk; on the whole
    image: brightness, contrast, saturation and dominant colours.

    Returns a JSON-able dict with ``status`` 'ok' | 'no_face' | 'unreadable' and ``detail``.
    """
    import cv2

    from facequeue.vision import analyze

    t0 = time.perf_counter()
    p = Path(path)
    out: dict[str, Any] = {
        "path": str(path),
        "status": "unreadable",
        "detail": None,
        "detector": settings.detector,
        "model": settings.model,
    }
    try:
        out["file"] = _file_facts(p)
    except OSError as exc:
        out["detail"] = f"cannot read file: {exc.strerror or exc}"
        return out
    try:
        img = analyze.decode_image(str(p))
    except ValueError as exc:
        out["detail"] = str(exc)
        return out
    timings: dict[str, float] = {"decode": time.perf_counter() - t0}
    fa = analyze.analyze_bgr(img, settings)
    timings.update(fa.timings)
    t = time.perf_counter()
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    out.update(
        status=fa.status,
        detail=fa.detail,
        width=int(img.shape[1]),
        height=int(img.shape[0]),
        faces=[[f.x, f.y, f.w, f.h, f.confidence] for f in fa.faces],
        blur=fa.blur,
        face_brightness=fa.brightness,
        face_contrast=fa.contrast,
        phash=fa.phash,
        brightness=round(float(grey.mean()), 2),
        contrast=round(float(grey.std()), 2),
        saturation=attributes.saturation(img),
        dominant_colors=attributes.dominant_colours(img),
        skin=None,
        hair=None,
    )
    main = fa.faces[0] if fa.faces else None
    face_crop = None
    if main is not None:
        out["skin"] = attributes.skin_tone(img, main)
        out["hair"] = attributes.hair_colour(img, main, out["skin"]["lab"] if out["skin"] else None)
        x0, y0, x1, y1 = analyze.crop_box(main, DEMOGRAPHY_MARGIN, img.shape[1], img.shape[0])
        face_crop = img[y0:y1, x0:x1]
    timings["attributes"] = time.perf_counter() - t
    t = time.perf_counter()
    home = settings.deepface_home or str(Path("data") / "deepface")
    out["demographics"] = (
        attributes.demographics(face_crop, home)
        if main is not None
        else {
            "available": False,
            "reason": "no face detected",
            "age": None,
            "sex": None,
            "sex_confidence": None,
        }
    )
    timings["demographics"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    out["timings"] = {k: round(v, 4) for k, v in timings.items()}
    return out


def stored_facts(fa: Any) -> dict[str, Any]:
    """What a sidecar takes from the stored analysis of the kept face (parent side)."""
    return {
        "faces_detected": len(fa.faces),
        "blur": fa.blur,
        "face_brightness": fa.brightness,
        "face_contrast": fa.contrast,
        "phash": fa.phash,
    }


def describe_crop(
    path: str, box: tuple[int, int, int, int, float], facts: dict[str, Any], settings: Any
) -> dict[str, Any]:
    """``describe_image`` for an accepted crop whose face is known (pool function).

    No detection and no embedding: the face box in the crop and the face measurements come
    from the stored analysis (``facts``, ``stored_facts``); only what the sidecar alone
    needs is computed here, once: colours, skin tone, hair colour, age/sex if available.
    """
    from facequeue.vision import analyze

    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "path": str(path),
        "status": "unreadable",
        "detail": None,
        "detector": settings.detector,
        "model": settings.model,
    }
    try:
        out["file"] = _file_facts(Path(path))
        img = analyze.decode_image(str(path), settings)
    except (OSError, ValueError) as exc:
        out["detail"] = str(exc)
        return out
    face = analyze.Face(*box)
    out.update(_colours(img), status="ok", faces=[list(box)], **facts)
    out["skin"] = attributes.skin_tone(img, face)
    out["hair"] = attributes.hair_colour(img, face, out["skin"]["lab"] if out["skin"] else None)
    home = settings.deepface_home or str(Path("data") / "deepface")
    out["demographics"] = attributes.demographics(img, home)
    out["timings"] = {"total": round(time.perf_counter() - t0, 4)}
    return out


def _colours(img: Any) -> dict[str, Any]:
    import cv2

    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return {
        "width": int(img.shape[1]),
        "height": int(img.shape[0]),
        "brightness": round(float(grey.mean()), 2),
        "contrast": round(float(grey.std()), 2),
        "saturation": attributes.saturation(img),
        "dominant_colors": attributes.dominant_colours(img),
    }
