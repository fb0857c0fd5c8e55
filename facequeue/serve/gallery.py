"""The gallery in memory, following the database without a restart.

Every change to gallery rows bumps the version stamp (a trigger appends the person to
`gallery_changes`). `refresh()` reads the stamp at most once per `serve.gallery_poll_s`; when
it moved, only the people changed since are read again, and the index is rebuilt from the
per-person matrices already in memory (no other row is read, nothing is re-embedded).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import structlog

from facequeue.config import Config
from facequeue.store import GalleryRow, Store
from facequeue.vision.recognize import GalleryIndex, Identity, threshold_from_config

log = structlog.get_logger("facequeue.serve.gallery")


@dataclass(frozen=True)
class PersonRows:
    identity: Identity
    paths: tuple[str, ...]
    matrix: np.ndarray  # (images, dim) float32


def _group(rows: list[GalleryRow]) -> dict[int, PersonRows]:
    by: dict[int, list[GalleryRow]] = {}
    for r in rows:
        by.setdefault(r.person_id, []).append(r)
    out = {}
    for pid, rs in by.items():
        first = rs[0]
        mat = np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rs])
        out[pid] = PersonRows(
            Identity(pid, first.name, first.country, first.folder),
            tuple(r.path for r in rs),
            mat,
        )
    return out


class LiveGallery:
    """The current GalleryIndex; `index` is always a complete, immutable snapshot."""

    def __init__(self, cfg: Config, store: Store) -> None:
        self.cfg, self.store = cfg, store
        self.metric, self.threshold = threshold_from_config(cfg)
        self.model = cfg.analysis.model
        self.people: dict[int, PersonRows] = {}
        self.index = GalleryIndex([], np.zeros((0, 0), np.float32), [], {}, self.metric)
        self.version = -1  # nothing loaded yet
        self.loaded_at: float | None = None
        self.reloads = 0
        self._checked = 0.0
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self.version >= 0

    async def refresh(self, force: bool = False) -> bool:
        """Follow the database; True when the index changed. Cheap when nothing did."""
        now = time.monotonic()
        if not force and self.loaded and now - self._checked < self.cfg.serve.gallery_poll_s:
            return False
        async with self._lock:
            if not force and self.loaded and now - self._checked < self.cfg.serve.gallery_poll_s:
                return False  # another caller refreshed while we waited
            self._checked = time.monotonic()
            version = await self.store.gallery_version()
            if version == self.version:
                return False
            changed = await self.store.gallery_changed_since(self.version) if self.loaded else None
            if changed is None:  # first load, or fell behind the change log
                changed = await self.store.gallery_person_ids()
                self.people = {}
            fresh = _group(await self.store.gallery_rows_of(changed))
            people = {p: r for p, r in self.people.items() if p not in set(changed)}
            people.update(fresh)
            self.index = await asyncio.to_thread(self._build, people)
            self.people, self.version = people, version
            self.loaded_at = time.time()
            self.reloads += 1
            log.info(
                "gallery_reloaded",
                version=version,
                changed_people=len(changed),
                identities=self.index.people,
                images=len(self.index),
            )
            return True

    def _build(self, people: dict[int, PersonRows]) -> GalleryIndex:
        # one embedding size: rows of another (e.g. left over from another model) are skipped
        sizes = [p.matrix.shape[1] for p in people.values()]
        dim = max(set(sizes), key=sizes.count) if sizes else 0
        keep = [p for p in people.values() if p.matrix.shape[1] == dim]
        if not keep:
            return GalleryIndex(
                [], np.zeros((0, 0), np.float32), [], {}, self.metric, self.model, self.threshold
            )
        ids = np.concatenate([np.full(len(p.paths), p.identity.person_id) for p in keep])
        return GalleryIndex(
            ids.tolist(),
            np.concatenate([p.matrix for p in keep]),
            [path for p in keep for path in p.paths],
            {p.identity.person_id: p.identity for p in keep},
            self.metric,
            self.model,
            self.threshold,
        )
