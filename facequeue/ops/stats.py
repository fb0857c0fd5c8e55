"""Dataset statistics over JSON sidecars: per person, country, sex, age group, skin tone,
quality level, and the images-per-person histogram. Sources: a folder of sidecars, or the
database's accepted images (``image_outcomes`` view) with their crops' sidecars.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from facequeue.config import Config
from facequeue.errors import NotFoundError
from facequeue.stages.sidecar_files import read_sidecar, sidecar_path
from facequeue.store import AcceptedCrop

UNKNOWN = "unknown"
HISTOGRAM_BINS = ((1, 1), (2, 4), (5, 9), (10, 19), (20, 39), (40, None))
DIMENSIONS = ("person", "country", "sex", "age_group", "skin_tone", "image_quality")


def record_from_sidecar(
    sidecar: dict, person: str | None = None, country: str | None = None
) -> dict:
    """The fields stats count, from one sidecar (explicit person/country win)."""
    q = sidecar.get("queryable_attributes") or {}
    p = sidecar.get("person") or {}
    return {
        "person": person or p.get("name") or UNKNOWN,
        "country": country or p.get("country") or UNKNOWN,
        "sex": q.get("sex") or UNKNOWN,
        "age_group": q.get("age_group") or UNKNOWN,
        "skin_tone": q.get("skin_tone") or UNKNOWN,
        "image_quality": q.get("image_quality") or UNKNOWN,
    }


def _is_sidecar(data: dict | None) -> bool:
    return data is not None and "queryable_attributes" in data and "filename" in data


def records_from_dir(directory: str | Path) -> tuple[list[dict], int]:
    """Records of every sidecar under `directory` (recursive) and the count of unreadable
    JSON files skipped. Without a person in the sidecar, the image's folder (when it is
    below `directory`) names the person, as in the gallery's folder-per-identity layout."""
    root = Path(directory)
    records, bad = [], 0
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith("."):
            continue
        data = read_sidecar(path)
        if data is None or not _is_sidecar(data):
            bad += 1
            continue
        folder = path.parent.name if path.parent != root else None
        has_person = bool((data.get("person") or {}).get("name"))
        records.append(record_from_sidecar(data, person=None if has_person else folder))
    return records, bad


def records_from_rows(rows: Iterable[AcceptedCrop], data_dir: Path) -> tuple[list[dict], int]:
    """Records of accepted images from the database; attributes come from each crop's
    sidecar. Returns (records, images without a sidecar)."""
    records, missing = [], 0
    for row in rows:
        sidecar = None
        if row.crop_path:
            sidecar = read_sidecar(sidecar_path(Path(data_dir) / row.crop_path))
        if sidecar is None or not _is_sidecar(sidecar):
            missing += 1
            sidecar = {}
        records.append(record_from_sidecar(sidecar, person=row.person, country=row.country))
    return records, missing


async def db_records(cfg: Config) -> tuple[list[dict], list[str], int]:
    """Records of every accepted image of the database, the people with none, and how many
    images have no sidecar."""
    from facequeue.store import open_store

    if not cfg.db_path.is_file():
        raise NotFoundError(f"no database at {cfg.db_path} (set data_dir or --config)")
    async with open_store(cfg, migrate=False) as store:
        crops = await store.accepted_crops()
        people = await store.progress(limit=None)
    records, missing = records_from_rows(crops, cfg.data_dir)
    return records, [p.person for p in people if not p.accepted], missing


def histogram(per_person: Counter) -> list[dict]:
    out = []
    bins = (((0, 0),) if any(c == 0 for c in per_person.values()) else ()) + HISTOGRAM_BINS
    for lo, hi in bins:
        label = f"{lo}" if hi == lo else (f"{lo}+" if hi is None else f"{lo}-{hi}")
        n = sum(1 for c in per_person.values() if c >= lo and (hi is None or c <= hi))
        out.append({"images": label, "people": n})
    return out


def aggregate(records: list[dict], people_without_images: Iterable[str] = ()) -> dict[str, Any]:
    """Counts per dimension (most common first) and the images-per-person histogram.
    `people_without_images` (from the database) appear with 0 and in a '0' bin."""
    counts = {dim: Counter(r[dim] for r in records) for dim in DIMENSIONS}
    per_person = counts["person"]
    for name in people_without_images:
        per_person.setdefault(name, 0)
    return {
        "images": len(records),
        "people": len([p for p, c in per_person.items() if c > 0]),
        **{dim: dict(counts[dim].most_common()) for dim in DIMENSIONS},
        "images_per_person": histogram(per_person),
    }


def plot(stats: dict[str, Any], dest: str | Path, title: str = "facequeue dataset") -> Path:
    """A PNG of bar charts (matplotlib, Agg backend): one panel per dimension + histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("country", "images per country"),
        ("sex", "sex"),
        ("age_group", "age group"),
        ("skin_tone", "skin tone (ITA)"),
        ("image_quality", "quality level"),
        ("person", "images per person (top 20)"),
    ]
    fig, axes = plt.subplots(4, 2, figsize=(12, 16))
    flat = axes.ravel()
    for ax, (key, label) in zip(flat, panels, strict=False):
        items = list(stats[key].items())[:20]
        ax.barh([str(k) for k, _ in items][::-1], [v for _, v in items][::-1], color="#4c72b0")
        ax.set_title(label)
        ax.tick_params(axis="y", labelsize=8)
    hist = stats["images_per_person"]
    ax = flat[len(panels)]
    ax.bar([h["images"] for h in hist], [h["people"] for h in hist], color="#55a868")
    ax.set_title("people by number of images")
    ax.set_xlabel("images")
    ax.set_ylabel("people")
    for ax in flat[len(panels) + 1 :]:
        ax.axis("off")
    fig.suptitle(f"{title}: {stats['images']} images, {stats['people']} people")
    fig.tight_layout()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=80)
    plt.close(fig)
    return dest
