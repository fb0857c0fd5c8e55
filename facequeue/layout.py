"""Where a person's files live under data_dir. One place decides, every module asks here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from anyascii import anyascii

from facequeue.config import Config


def ascii_slug(text: str, max_len: int = 60) -> str:
    """Folder-safe ASCII for short labels such as a country ('Côte d'Ivoire' -> 'Cote_dIvoire')."""
    flat = anyascii(text or "").replace("'", "")
    flat = re.sub(r"[^A-Za-z0-9]+", "_", flat).strip("_")
    return flat[:max_len].strip("_") or "unknown"


class Named(Protocol):
    """Anything with a person's slug and country (a Person, a Progress row...)."""

    @property
    def slug(self) -> str: ...

    @property
    def country(self) -> str: ...


def person_folder(person: Named) -> str:
    """The person's own folder name: people.folder, unique (the store assigns it at insert,
    so "Israël" and "Israel" never share one). `<slug>__<country>` only for a record that
    does not carry the column."""
    folder = getattr(person, "folder", None)
    if folder:
        return str(folder)
    return f"{person.slug}__{ascii_slug(person.country)}"


def candidates_dir(cfg: Config, person: Named) -> Path:
    """Face crops of every analyzed image (kept for re-curation and the review report)."""
    return cfg.data_dir / "candidates" / person_folder(person)


def faces_dir(cfg: Config, person: Named) -> Path:
    """Accepted face crops and their JSON sidecars."""
    return cfg.faces_dir / person_folder(person)


def relative(cfg: Config, path: Path) -> str:
    return str(Path(path).resolve().relative_to(cfg.data_dir.resolve()))


def absolute(cfg: Config, rel: str) -> Path:
    return cfg.data_dir / rel


def accepted_name(slug: str, created_at: str | None, image_id: int) -> str:
    """Stable, unique crop name in the seed's style: Name_YYYYMMDD_HHMMSS_<image id>.jpg."""
    stamp = (created_at or "")[:19].replace("-", "").replace(":", "").replace("T", "_")
    return f"{slug}_{stamp or 'undated'}_{image_id}.jpg"
