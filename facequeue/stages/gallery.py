"""The promote stage: curated people become a recognition gallery, tested on the way in.

- A person with more than `gallery.min_images` usable accepted faces (crop file on disk and an
  embedding) is copied to `<gallery_dir>/<slug>__<country>/<slug>_<image_id>.jpg`: one folder
  per identity, usable directly as DeepFace's `db_path`. Embeddings go to `gallery_images`, so
  recognition never re-embeds the gallery.
- Promotion is a sync, so it is idempotent: files are written atomically (temp + os.replace)
  and skipped when the same bytes are already there; rows are upserted in one transaction;
  files and rows of images no longer accepted are removed (row first, then file). Identical
  crops (same sha256) enter once.
- A leave-one-out self-test runs against the whole gallery: for each image of the person, is
  the nearest other image one of theirs? It stores top-1 accuracy, the margin to the nearest
  other identity, and flags people whose images sit closer to someone else (mislabelled or
  duplicated identities). Identities near the new one are re-tested too.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import shutil
import weakref
from pathlib import Path

import numpy as np
import structlog

from facequeue import layout
from facequeue.config import Config
from facequeue.files import atomic_write_bytes
from facequeue.store import (
    GalleryCandidate,
    GalleryEntry,
    GalleryFile,
    GallerySummary,
    Person,
    SelfTest,
    Store,
)
from facequeue.vision.recognize import GalleryIndex, Identity, threshold_from_config

log = structlog.get_logger("facequeue.stages.gallery")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
MIN_TOP1 = 0.8  # below this share of own nearest neighbours, a person is flagged
DUPLICATE_TOP1 = 0.5  # below this, and near another identity: probably the same person
MAX_RETESTS = 50  # identities re-tested after one promotion, nearest first

_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _promote_lock() -> asyncio.Lock:
    """One promotion at a time per event loop (the self-test reads the whole gallery)."""
    loop = asyncio.get_running_loop()
    if loop not in _locks:
        _locks[loop] = asyncio.Lock()
    return _locks[loop]


# -------------------------------------------------------------------------- names on disk


def gallery_folder(cfg: Config, person: layout.Named) -> Path:
    return cfg.gallery_dir / layout.person_folder(person)


def gallery_file_name(person: layout.Named, image_id: int, suffix: str) -> str:
    suffix = suffix.lower() if suffix.lower() in IMAGE_SUFFIXES else ".jpg"
    return f"{person.slug}_{image_id}{suffix}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _place_files(
    cfg: Config, person: Person, accepted: list[GalleryCandidate]
) -> tuple[list[GalleryFile], list[str]]:
    """Copy the usable accepted crops into the person's gallery folder (blocking; in a thread).

    Returns the planned rows and a note per skipped image."""
    folder = gallery_folder(cfg, person)
    planned: list[GalleryFile] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for img in accepted:
        if not img.crop_path or img.embedding is None:
            skipped.append(f"image {img.id}: no crop or no embedding")
            continue
        src = layout.absolute(cfg, img.crop_path)
        try:
            data = src.read_bytes()
        except OSError:
            skipped.append(f"image {img.id}: crop file missing ({img.crop_path})")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            skipped.append(f"image {img.id}: same bytes as another gallery image")
            continue
        seen.add(digest)
        dest = folder / gallery_file_name(person, img.id, src.suffix)
        if not (dest.is_file() and sha256_file(dest) == digest):
            atomic_write_bytes(dest, data)
        planned.append(
            GalleryFile(
                img.id,
                layout.relative(cfg, dest),
                digest,
                bytes(img.embedding),
                int(img.is_reference or 0),
            )
        )
    return planned, skipped


def _sweep_folder(cfg: Config, folder: Path, keep: set[str]) -> int:
    """Remove image and temp files in an identity folder that no row points at."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if not path.is_file():
            continue
        is_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
        if (is_tmp or path.suffix.lower() in IMAGE_SUFFIXES) and layout.relative(
            cfg, path
        ) not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _remove_folder(folder: Path) -> None:
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


# -------------------------------------------------------------------------- promote


async def promote_person(cfg: Config, store: Store, person: Person) -> tuple[str, str | None]:
    """Promote one curated person, or park them as insufficient. Idempotent.

    Returns ('promoted', None) or ('insufficient', 'N accepted faces, need more than M').
    """
    async with _promote_lock():
        return await _promote(cfg, store, person)


async def _promote(cfg: Config, store: Store, person: Person) -> tuple[str, str | None]:
    pid = person.id
    plog = log.bind(person_id=pid)
    accepted = await store.gallery_candidates(pid)
    minimum = cfg.gallery.min_images
    usable = [
        a
        for a in accepted
        if a.crop_path and a.embedding is not None and layout.absolute(cfg, a.crop_path).is_file()
    ]
    if len(usable) <= minimum:
        await _remove_from_gallery(cfg, store, person)
        reason = f"{len(usable)} accepted faces, need more than {minimum}"
        if len(usable) != len(accepted):
            reason += f" ({len(accepted) - len(usable)} accepted without a crop file or embedding)"
        plog.info(
            "gallery_insufficient", accepted=len(accepted), usable=len(usable), minimum=minimum
        )
        return "insufficient", reason

    planned, skipped = await asyncio.to_thread(_place_files, cfg, person, usable)
    for note in skipped:
        plog.warning("gallery_image_skipped", note=note)
    if len(planned) <= minimum:  # identical crops collapsed below the minimum
        await _remove_from_gallery(cfg, store, person)
        return "insufficient", f"{len(planned)} distinct accepted faces, need more than {minimum}"

    metric, threshold = threshold_from_config(cfg)
    folder = gallery_folder(cfg, person)
    old_folder = await store.gallery_folder(pid)
    entry = GalleryEntry(
        person_id=pid,
        folder=layout.relative(cfg, folder),
        images=len(planned),
        model=cfg.analysis.model,
        metric=metric,
        threshold=threshold,
    )
    await store.save_gallery(entry, planned)
    # rows are committed: files nobody points at can go (a crash here leaves only orphans,
    # which the next promotion sweeps)
    removed = await asyncio.to_thread(_sweep_folder, cfg, folder, {p.rel_path for p in planned})
    if old_folder and old_folder != entry.folder:
        await asyncio.to_thread(_remove_folder, layout.absolute(cfg, old_folder))
    plog.info(
        "gallery_promoted",
        images=len(planned),
        skipped=len(skipped),
        removed_files=removed,
        folder=str(folder),
    )
    await self_test(cfg, store, pid)
    return "promoted", None


async def _remove_from_gallery(cfg: Config, store: Store, person: Person) -> None:
    """Rows first (no row may point at a missing file), then the folder."""
    pid = person.id
    old_folder = await store.gallery_folder(pid)
    retest = await store.gallery_tested_against(pid)
    await store.remove_from_gallery(pid)
    folders = {gallery_folder(cfg, person)}
    if old_folder:
        folders.add(layout.absolute(cfg, old_folder))
    for folder in folders:
        await asyncio.to_thread(_remove_folder, folder)
    if old_folder:
        log.info("gallery_removed", person_id=pid, retest=len(retest))
    if retest:
        await self_test(cfg, store, None, only=retest)


async def forget_person(cfg: Config, store: Store, person: Person) -> None:
    """Remove a person from the gallery: rows and folder. Identities whose nearest other
    identity was this person are re-tested. (Deleting the people row also cascades.)"""
    async with _promote_lock():
        await _remove_from_gallery(cfg, store, person)


# -------------------------------------------------------------------------- index + self-test


async def load_index(cfg: Config, store: Store) -> GalleryIndex:
    """Every gallery embedding, loaded once into one matrix."""
    metric, threshold = threshold_from_config(cfg)
    idents = {
        r.person_id: Identity(r.person_id, r.name, r.country, r.folder)
        for r in await store.gallery_identities()
    }
    rows = [(r.person_id, r.path, r.embedding) for r in await store.gallery_embeddings()]
    return await asyncio.to_thread(
        GalleryIndex.from_rows, rows, idents, metric, cfg.analysis.model, threshold
    )


def _median(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return round(float(np.median(values)), 4) if len(values) else None


def leave_one_out(index: GalleryIndex, person_id: int) -> tuple[SelfTest, np.ndarray]:
    """Leave-one-out test of one identity against the whole index (pure numpy).

    Also returns, per identity of the index, the smallest distance from any of this person's
    images (to find identities whose own test may have changed)."""
    rows = index.rows_of(person_id)
    n = rows.stop - rows.start
    if n == 0:
        raise ValueError(f"person {person_id} has no gallery images")
    dist = index.distances(index.matrix[rows])  # (n, N)
    dist[np.arange(n), np.arange(rows.start, rows.stop)] = np.inf  # leave each image out
    own = dist[:, rows].min(axis=1) if n > 1 else np.full(n, np.inf)
    per_ident = index.per_identity_min(dist)  # (n, identities)
    me = int(np.flatnonzero(index.block_ids == person_id)[0])
    others = per_ident.copy()
    others[:, me] = np.inf
    near_other = others.min(axis=1) if others.shape[1] > 1 else np.full(n, np.inf)
    hits = own < near_other
    top1 = float(hits.mean())
    nearest_other_id = other_d = None
    if others.shape[1] > 1:
        nearest_each = others.argmin(axis=1)  # per query: the nearest other identity
        if (~hits).any():  # the identity most misses went to
            k = int(np.bincount(nearest_each[~hits]).argmax())
        else:  # else the closest on average
            k = int(np.argmin(others.mean(axis=0)))  # (own column is inf)
        nearest_other_id = int(index.block_ids[k])
        other_d = _median(others[:, k])
    own_d = _median(own)
    margin = _median(near_other - own) if others.shape[1] > 1 else None
    flagged, reason = False, None
    if nearest_other_id is not None and top1 < MIN_TOP1:
        name = index.identities.get(nearest_other_id, Identity(nearest_other_id, "?", "")).name
        misses = int((~hits).sum())
        if top1 < DUPLICATE_TOP1 and other_d is not None and other_d <= index.threshold:
            reason = (
                f"possible duplicate identity: {misses}/{n} images are nearer to "
                f"{name} (id {nearest_other_id}, median distance {other_d:.3f})"
            )
        else:
            reason = (
                f"possibly mislabelled images: {misses}/{n} are nearer to another "
                f"identity, most of all {name} (id {nearest_other_id})"
            )
        flagged = True
    elif margin is not None and margin <= 0:
        flagged, reason = True, f"no margin to the nearest other identity (margin {margin:.3f})"
    test = SelfTest(
        person_id,
        n,
        round(top1, 4),
        int((~hits).sum()),
        own_d,
        nearest_other_id,
        other_d,
        margin,
        flagged,
        reason,
    )
    return test, per_ident.min(axis=0)


async def self_test(
    cfg: Config, store: Store, person_id: int | None, only: list[int] | None = None
) -> list[SelfTest]:
    """Test `person_id` (and identities near it), or just the ids in `only`; store results."""
    index = await load_index(cfg, store)
    if not len(index):
        return []
    # an identity's stored result is stale once the new person comes nearer than its
    # current nearest other identity (or when it had nobody to compare with)
    known = {r.person_id: r.nearest_other_distance for r in await gallery_listing(store)}

    def run() -> list[SelfTest]:
        todo = list(only or [])
        results: list[SelfTest] = []
        if person_id is not None and index.rows_of(person_id).stop:
            test, nearest = leave_one_out(index, person_id)
            results.append(test)
            stale = []
            for p, d in zip(index.block_ids.tolist(), nearest.tolist(), strict=True):
                current = known.get(p)
                limit = max(index.threshold * 1.25, math.inf if current is None else current)
                if p != person_id and d <= limit:
                    stale.append((d, p))
            todo += [p for _, p in sorted(stale)[:MAX_RETESTS]]  # the nearest first, bounded
        for pid in dict.fromkeys(todo):
            if index.rows_of(pid).stop:
                results.append(leave_one_out(index, pid)[0])
        return results

    results = await asyncio.to_thread(run)
    await store.save_self_tests(results)
    for t in results:
        if t.flagged:
            log.warning(
                "gallery_self_test_flagged",
                person_id=t.person_id,
                reason=t.flag_reason,
                top1=t.top1,
                margin=t.margin,
            )
        else:
            log.info("gallery_self_test", person_id=t.person_id, top1=t.top1, margin=t.margin)
    return results


async def gallery_listing(store: Store) -> list[GallerySummary]:
    return await store.gallery_summary()
