"""Per-image JSON sidecars: the seed's format (generate_missing_metadata.md) plus what
facequeue knows, validated against schemas/sidecar.schema.json and written atomically.

- ``describe_image(path, settings)`` runs in the analysis pool: the single place where an
  image's attributes are computed (decode once, ``analyze.analyze_bgr``, skin tone, hair
  colour, colours, age/sex). It returns a JSON-able dict; failures are values
  (``status: "unreadable"``), never exceptions.
- ``build_sidecar(...)`` turns that dict plus database rows into the sidecar (parent side).
- ``write_sidecar(path, sidecar)`` validates and writes ``<image stem>.json`` atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from facequeue.errors import FacequeueError
from facequeue.files import atomic_write_text
from facequeue.vision import attributes

SCHEMA_VERSION = 1
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
RETROACTIVE_SOURCE = "unknown (generated retroactively)"
FACE_ID_RE = re.compile(r"face_(\d{8})_(\d{6})_(\d{3})_([0-9A-Za-z]+)")

# Coarse levels of the seed's queryable attributes (docs/metadata.md explains them).
BRIGHT_MIN = 150.0  # whole-image mean grey >= this: "bright", else "dark"
QUALITY_BLUR_LOW = 15.0  # Laplacian variance of the 150 px aligned grey chip (analysis.blur_min)
QUALITY_BLUR_HIGH = 60.0
QUALITY_FACE_LOW = 70  # px, shorter side of the face box (analysis.min_face_px)
QUALITY_FACE_HIGH = 150
QUALITY_CONTRAST_HIGH = 30.0
DEMOGRAPHY_MARGIN = 0.2


class SidecarInvalid(FacequeueError):
    """A sidecar does not validate against schemas/sidecar.schema.json."""


# ============================================================================ pool side


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


def describe_image(path: str, settings: Any) -> dict[str, Any]:
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


# ============================================================================ parent side


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """The sidecar of an image: same folder and base name, `.json`."""
    return Path(image_path).with_suffix(".json")


def _utc_iso(ts: float | None = None) -> str:
    dt = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return dt.isoformat(timespec="microseconds")


def face_id_and_date(path: Path, fallback_ts: float | None = None) -> tuple[str, str]:
    """The seed's face id and download date: from a `face_YYYYMMDD_HHMMSS_mmm_HASH` name,
    else from `fallback_ts` (epoch seconds), else from the file's modification time (UTC)."""
    m = FACE_ID_RE.search(path.name)
    if m:
        d, t, ms, _ = m.groups()
        return f"{d}_{t}_{ms}", f"{d} {t[:2]}:{t[2:4]}:{t[4:6]}"
    ts = fallback_ts if fallback_ts is not None else path.stat().st_mtime
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y%m%d_%H%M%S_") + f"{dt.microsecond // 1000:03d}", dt.strftime(
        "%Y%m%d %H:%M:%S"
    )


def _parse_ts(value: Any) -> float | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def brightness_level(brightness: float | None) -> str | None:
    if brightness is None:
        return None
    return "bright" if brightness >= BRIGHT_MIN else "dark"


def quality_level(described: dict[str, Any] | None) -> str:
    """'high' | 'medium' | 'low' from the main face's size, sharpness (blur of the aligned
    chip) and contrast: low without a face, below the blur floor or under 70 px."""
    if not described or not described.get("faces"):
        return "low"
    _, _, w, h, _ = described["faces"][0]
    side = min(w, h)
    blur = described.get("blur") or 0.0
    contrast = described.get("face_contrast") or 0.0
    if blur < QUALITY_BLUR_LOW or side < QUALITY_FACE_LOW:
        return "low"
    if (
        blur >= QUALITY_BLUR_HIGH
        and side >= QUALITY_FACE_HIGH
        and contrast >= QUALITY_CONTRAST_HIGH
    ):
        return "high"
    return "medium"


def _names(settings: Any) -> tuple[str | None, str | None]:
    a = getattr(settings, "analysis", settings)  # a Config or AnalysisSettings
    return getattr(a, "detector", None), getattr(a, "model", None)


_NO_DEMOGRAPHICS = {
    "available": False,
    "reason": "image not analysed",
    "age": None,
    "sex": None,
    "sex_confidence": None,
}


def build_sidecar(
    crop_path: str | os.PathLike,
    *,
    analysis_of_crop: dict | None,
    person: dict | None,
    image_row: dict | None,
    settings: Any,
    previous: dict | None = None,
    generator: str | None = None,
    file_path: str | None = None,
) -> dict:
    """The sidecar dict for one image (not written; see ``write_sidecar``).

    Args:
        crop_path: the image file the sidecar describes (an accepted crop, or any image).
        analysis_of_crop: ``describe_image(crop_path, ...)``'s result, or None (then the
            sidecar has the file facts only and every face field is null).
        person: a ``people`` row dict (``name``, ``country``, ``occupation``), or None.
        image_row: an ``images`` row dict (``url`` -> ``source_url``, ``page_url``,
            ``license``, ``author``, ``provider``, ``sha256`` of the original download,
            ``blur``, ``distance`` to the reference set, ``is_reference``, ``created_at`` ->
            ``download_timestamp``), or None for a retroactive sidecar (``metadata`` command).
            For the ``folder`` provider ``url`` is the file path.
        settings: ``AnalysisSettings`` or the ``Config`` (for the detector and model names).
        previous: an existing sidecar being regenerated (``--force``): its provenance
            (source_url, download time, person, source) is kept when image_row is None.
        generator: the ``metadata_generated.generator`` value (default by retroactivity).
        file_path: the seed's ``file_path`` (default: crop_path as given).
    """
    path = Path(crop_path)
    d = analysis_of_crop or {}
    facts = d.get("file") or _file_facts(path)
    retroactive = image_row is None
    prev = previous if (retroactive and isinstance(previous, dict)) else {}
    row = image_row or {}
    now = _utc_iso()

    created_ts = _parse_ts(row.get("created_at"))
    face_id, download_date = face_id_and_date(path, created_ts)
    if (
        retroactive
        and re.fullmatch(r"\d{8}_\d{6}_\d{3}", str(prev.get("face_id", "")))
        and re.fullmatch(r"\d{8} \d\d:\d\d:\d\d", str(prev.get("download_date", "")))
    ):
        face_id, download_date = prev["face_id"], prev["download_date"]  # kept on --force
    if created_ts is not None:
        download_ts = _utc_iso(created_ts)
    else:
        download_ts = (
            prev.get("download_timestamp") if _parse_ts(prev.get("download_timestamp")) else now
        )
    source_url = row.get("url") or prev.get("source_url") or RETROACTIVE_SOURCE

    faces = d.get("faces") or []
    skin, hair = d.get("skin"), d.get("hair")
    demo = d.get("demographics") or dict(_NO_DEMOGRAPHICS)
    age = demo.get("age")
    age_grp, age_str, sex = attributes.age_group(age), attributes.age_bucket(age), demo.get("sex")
    skin_tone = skin["category"] if skin else None
    detector, model = _names(settings)
    has_face = bool(faces)

    if person:
        person_block = {
            "name": person.get("name"),
            "country": person.get("country"),
            "occupation": person.get("occupation"),
        }
    else:
        person_block = prev.get("person") if isinstance(prev.get("person"), dict) else None
    if row:
        source_block = {k: row.get(k) for k in ("provider", "page_url", "license", "author")}
        source_block["sha256"] = row.get("sha256")
    else:
        source_block = prev.get("source") if isinstance(prev.get("source"), dict) else None
    prev_analysis = prev.get("analysis") if isinstance(prev.get("analysis"), dict) else {}
    distance = row.get("distance") if row else prev_analysis.get("distance_to_references")

    sidecar = {
        "filename": path.name,
        "file_path": file_path if file_path is not None else str(crop_path),
        "face_id": face_id,
        "md5_hash": facts["md5"],
        "download_timestamp": download_ts,
        "download_date": download_date,
        "source_url": source_url,
        "file_size_kb": round(facts["bytes"] / 1024.0, 2),
        "image_properties": {
            "width": d.get("width"),
            "height": d.get("height"),
            "format": facts.get("format"),
            "mode": facts.get("mode"),
        },
        "face_features": {
            "brightness": d.get("brightness"),
            "contrast": d.get("contrast"),
            "saturation": d.get("saturation"),
            "faces_detected": d.get("faces_detected", len(faces)),
            "face_regions": [f[:4] for f in faces],
            "skin_tone": skin_tone,
            "hair_color": hair["label"] if hair else None,
            "age_group": age_grp,
            "estimated_age": age_str,
            "estimated_sex": sex,
            "dominant_colors": d.get("dominant_colors") or [],
        },
        "queryable_attributes": {
            "brightness_level": brightness_level(d.get("brightness")),
            "image_quality": quality_level(d),
            "has_face": has_face,
            "face_count": d.get("faces_detected", len(faces)),
            "sex": sex,
            "age_group": age_grp,
            "skin_tone": skin_tone,
        },
        "metadata_generated": {
            "generated_at": now,
            "generator": generator
            or ("facequeue metadata" if retroactive else "facequeue pipeline"),
            "retroactive": retroactive,
        },
        # ---- facequeue additions
        "schema_version": SCHEMA_VERSION,
        "sha256": facts["sha256"],
        "person": person_block,
        "source": source_block,
        "analysis": {
            "status": d.get("status", "not_analysed"),
            "detail": d.get("detail"),
            "detector": d.get("detector", detector),
            "model": d.get("model", model),
            "blur": d.get("blur") if d.get("blur") is not None else row.get("blur"),
            "face_brightness": d.get("face_brightness"),
            "face_contrast": d.get("face_contrast"),
            "phash": d.get("phash"),
            "face_confidences": [f[4] for f in faces],
            "distance_to_references": distance,
            "is_reference": bool(row.get("is_reference")) if row else None,
        },
        "skin": skin,
        "hair": hair,
        "demographics": {
            k: demo.get(k) for k in ("available", "reason", "age", "sex", "sex_confidence")
        },
    }
    return sidecar


# ============================================================================ schema, writing


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The sidecar JSON Schema (package data facequeue/schemas/sidecar.schema.json)."""
    text = resources.files("facequeue").joinpath("schemas/sidecar.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validation_errors(sidecar: dict) -> list[str]:
    """One line per schema violation ('' path means the top level)."""
    errs = sorted(_validator().iter_errors(sidecar), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errs]


def validate_sidecar(sidecar: dict) -> None:
    """Raise SidecarInvalid naming the first violations."""
    errors = validation_errors(sidecar)
    if errors:
        raise SidecarInvalid("sidecar does not match the schema: " + "; ".join(errors[:3]))


def write_sidecar(crop_path: str | os.PathLike, sidecar: dict) -> Path:
    """Validate ``sidecar`` and write it atomically next to the image; returns its path."""
    validate_sidecar(sidecar)
    dest = sidecar_path(crop_path)
    atomic_write_text(dest, json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n")
    return dest


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """A sidecar's dict, or None when missing or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ============================================================================ scanning


def scan_images(directory: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files (JPG/JPEG/PNG/WebP, any case) in a folder, sorted; hidden files skipped."""
    root = Path(directory)
    it: Iterable[Path] = root.rglob("*") if recursive else root.iterdir()
    return sorted(
        p
        for p in it
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


__all__ = [
    "describe_image",
    "build_sidecar",
    "write_sidecar",
    "validate_sidecar",
    "validation_errors",
    "load_schema",
    "sidecar_path",
    "read_sidecar",
    "scan_images",
    "face_id_and_date",
    "quality_level",
    "brightness_level",
    "SidecarInvalid",
    "SCHEMA_VERSION",
]
