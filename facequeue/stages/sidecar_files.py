"""Sidecar files on disk: where an image's sidecar lives, the JSON Schema check, atomic
writes, tolerant reads, and finding the images of a folder. (What goes into a sidecar is
stages/metadata.py.)"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from facequeue.errors import FacequeueError
from facequeue.files import atomic_write_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


class SidecarInvalid(FacequeueError):
    """A sidecar does not validate against schemas/sidecar.schema.json."""


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """The sidecar of an image: same folder and base name, `.json`."""
    return Path(image_path).with_suffix(".json")


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
