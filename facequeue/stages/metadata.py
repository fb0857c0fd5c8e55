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

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The pool side (describe_image, describe_crop, stored_facts) is in stages/describe.py;
# re-exported here for the callers of metadata.
from facequeue.stages.describe import (  # noqa: F401
    _file_facts,
    describe_crop,
    describe_image,
    stored_facts,
)
from facequeue.stages.sidecar_files import (
    IMAGE_EXTENSIONS,
    SidecarInvalid,
    load_schema,
    read_sidecar,
    scan_images,
    sidecar_path,
    validate_sidecar,
    validation_errors,
    write_sidecar,
)
from facequeue.vision import attributes

if TYPE_CHECKING:  # numpy/OpenCV load on first use
    from facequeue.config import Config
    from facequeue.vision.analyze import AnalysisSettings

SCHEMA_VERSION = 1
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


# ============================================================================ parent side


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


def _names(settings: AnalysisSettings | Config) -> tuple[str | None, str | None]:
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
    settings: AnalysisSettings | Config,
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
    faces = d.get("faces") or []
    demo = d.get("demographics") or dict(_NO_DEMOGRAPHICS)
    origin = _provenance(path, row, prev, now)
    return {  # the seed's keys in the seed's order, then facequeue's
        "filename": path.name,
        "file_path": file_path if file_path is not None else str(crop_path),
        "face_id": origin["face_id"],
        "md5_hash": facts["md5"],
        "download_timestamp": origin["download_timestamp"],
        "download_date": origin["download_date"],
        "source_url": origin["source_url"],
        "file_size_kb": round(facts["bytes"] / 1024.0, 2),
        "image_properties": {
            "width": d.get("width"),
            "height": d.get("height"),
            "format": facts.get("format"),
            "mode": facts.get("mode"),
        },
        "face_features": _face_features(d, faces, demo),
        "queryable_attributes": _queryable_attributes(d, faces, demo),
        "metadata_generated": {
            "generated_at": now,
            "generator": generator
            or ("facequeue metadata" if retroactive else "facequeue pipeline"),
            "retroactive": retroactive,
        },
        # ---- facequeue additions
        "schema_version": SCHEMA_VERSION,
        "sha256": facts["sha256"],
        "person": _person_block(person, prev),
        "source": _source_block(row, prev),
        "analysis": _analysis_block(d, faces, row, prev, settings),
        "skin": d.get("skin"),
        "hair": d.get("hair"),
        "demographics": {
            k: demo.get(k) for k in ("available", "reason", "age", "sex", "sex_confidence")
        },
    }


def _prev_dict(prev: dict, key: str) -> dict | None:
    value = prev.get(key)
    return value if isinstance(value, dict) else None


def _provenance(path: Path, row: dict, prev: dict, now: str) -> dict[str, Any]:
    """face_id, download_date, download_timestamp and source_url: from the database row,
    else kept from a previous well-formed sidecar (--force), else from the file."""
    created_ts = _parse_ts(row.get("created_at"))
    face_id, download_date = face_id_and_date(path, created_ts)
    if (
        not row
        and re.fullmatch(r"\d{8}_\d{6}_\d{3}", str(prev.get("face_id", "")))
        and re.fullmatch(r"\d{8} \d\d:\d\d:\d\d", str(prev.get("download_date", "")))
    ):
        face_id, download_date = prev["face_id"], prev["download_date"]  # kept on --force
    if created_ts is not None:
        download_ts = _utc_iso(created_ts)
    elif _parse_ts(prev.get("download_timestamp")):
        download_ts = prev["download_timestamp"]
    else:
        download_ts = now
    return {
        "face_id": face_id,
        "download_timestamp": download_ts,
        "download_date": download_date,
        "source_url": row.get("url") or prev.get("source_url") or RETROACTIVE_SOURCE,
    }


def _face_features(d: dict, faces: list, demo: dict) -> dict[str, Any]:
    skin, hair, age = d.get("skin"), d.get("hair"), demo.get("age")
    return {
        "brightness": d.get("brightness"),
        "contrast": d.get("contrast"),
        "saturation": d.get("saturation"),
        "faces_detected": d.get("faces_detected", len(faces)),
        "face_regions": [f[:4] for f in faces],
        "skin_tone": skin["category"] if skin else None,
        "hair_color": hair["label"] if hair else None,
        "age_group": attributes.age_group(age),
        "estimated_age": attributes.age_bucket(age),
        "estimated_sex": demo.get("sex"),
        "dominant_colors": d.get("dominant_colors") or [],
    }


def _queryable_attributes(d: dict, faces: list, demo: dict) -> dict[str, Any]:
    skin = d.get("skin")
    return {
        "brightness_level": brightness_level(d.get("brightness")),
        "image_quality": quality_level(d),
        "has_face": bool(faces),
        "face_count": d.get("faces_detected", len(faces)),
        "sex": demo.get("sex"),
        "age_group": attributes.age_group(demo.get("age")),
        "skin_tone": skin["category"] if skin else None,
    }


def _person_block(person: dict | None, prev: dict) -> dict | None:
    if person:
        return {k: person.get(k) for k in ("name", "country", "occupation")}
    return _prev_dict(prev, "person")


def _source_block(row: dict, prev: dict) -> dict | None:
    if not row:
        return _prev_dict(prev, "source")
    return {k: row.get(k) for k in ("provider", "page_url", "license", "author", "sha256")}


def _analysis_block(
    d: dict, faces: list, row: dict, prev: dict, settings: AnalysisSettings | Config
) -> dict[str, Any]:
    detector, model = _names(settings)
    prev_analysis = _prev_dict(prev, "analysis") or {}
    return {
        "status": d.get("status", "not_analysed"),
        "detail": d.get("detail"),
        "detector": d.get("detector", detector),
        "model": d.get("model", model),
        "blur": d.get("blur") if d.get("blur") is not None else row.get("blur"),
        "face_brightness": d.get("face_brightness"),
        "face_contrast": d.get("face_contrast"),
        "phash": d.get("phash"),
        "face_confidences": [f[4] for f in faces],
        "distance_to_references": (
            row.get("distance") if row else prev_analysis.get("distance_to_references")
        ),
        "is_reference": bool(row.get("is_reference")) if row else None,
    }


__all__ = [
    "IMAGE_EXTENSIONS",
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
