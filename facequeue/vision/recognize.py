"""Recognition from stored embeddings: a vectorised index over the gallery, and the faces of a
query photo embedded the same way analysis embeds a candidate (one aligned chip per face).

The gallery is never re-embedded: `GalleryIndex` holds every stored gallery embedding in one
float32 matrix (rows grouped by person), so one query is one matrix-vector product plus a
per-identity minimum (`np.minimum.reduceat`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from facequeue.config import Config
from facequeue.vision.distance import (
    check_metric,
    default_metric,
    default_threshold,
    distance_matrix,
    distances,
    prepare,
)

if TYPE_CHECKING:  # the face engine loads on first use
    from facequeue.vision.analyze import AnalysisSettings

# -------------------------------------------------------------------------- thresholds


def threshold_from_config(cfg: Config) -> tuple[str, float]:
    """(metric, threshold) for recognition: the metric curation uses, and gallery.threshold
    if set, else the model's default for that metric."""
    model = cfg.analysis.model
    metric = cfg.curation.metric or default_metric(model)
    threshold = cfg.gallery.threshold
    if threshold is None:
        from facequeue.vision import engine as faces

        faces.configure_environment(faces.default_home(cfg))
        threshold = default_threshold(model, metric)
    return metric, float(threshold)


def confidence(distance: float, model: str, metric: str, threshold: float) -> float:
    """0-100: DeepFace's calibrated distance->confidence where it has one for the model/metric,
    else a linear fall-off that crosses 50 at the threshold."""
    verified = distance <= threshold
    try:
        from deepface.modules.verification import find_confidence

        return float(find_confidence(float(distance), model, verified, metric))
    except Exception:  # noqa: BLE001 - deepface missing or no calibration: fall back
        value = 100.0 * (1.0 - distance / (2.0 * threshold)) if threshold > 0 else 0.0
        return round(min(100.0, max(0.0, value)), 2)


# -------------------------------------------------------------------------- distances


def as_matrix(blobs: Iterable[bytes]) -> np.ndarray:
    return np.stack([np.frombuffer(b, dtype=np.float32) for b in blobs]).astype(np.float32)


def pairwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances (len(a), len(b)) between row vectors, in float32 (as the gallery stores)."""
    return distance_matrix(a, b, metric, np.float32)


# -------------------------------------------------------------------------- index


@dataclass(frozen=True)
class Identity:
    person_id: int
    name: str
    country: str
    folder: str = ""


@dataclass(frozen=True)
class Match:
    person_id: int
    name: str
    country: str
    distance: float
    confidence: float
    image_path: str  # the closest gallery image (relative to data_dir)


class GalleryIndex:
    """All gallery embeddings in memory, rows grouped by identity, prepared for one metric."""

    def __init__(
        self,
        person_ids: Sequence[int],
        matrix: np.ndarray,
        paths: Sequence[str],
        identities: dict[int, Identity],
        metric: str = "euclidean",
        model: str = "Dlib",
        threshold: float = 0.6,
    ) -> None:
        check_metric(metric)
        pids = np.asarray(person_ids, dtype=np.int64)
        order = np.argsort(pids, kind="stable")
        self.person_ids = pids[order]
        m = (
            np.asarray(matrix, dtype=np.float32).reshape(len(pids), -1)[order]
            if len(pids)
            else np.zeros((0, 0), np.float32)
        )
        self.paths = [paths[i] for i in order]
        self.metric, self.model, self.threshold = metric, model, float(threshold)
        self.identities = identities
        self.matrix = np.ascontiguousarray(prepare(m, metric, np.float32) if len(m) else m)
        self.sq_norms = (self.matrix * self.matrix).sum(1) if len(m) else np.zeros(0, np.float32)
        # block boundaries: identity k owns rows starts[k]:starts[k+1]
        if len(self.person_ids):
            change = np.flatnonzero(np.diff(self.person_ids)) + 1
            self.starts = np.concatenate(([0], change)).astype(np.int64)
        else:
            self.starts = np.zeros(0, np.int64)
        self.block_ids = self.person_ids[self.starts] if len(self.starts) else np.zeros(0, np.int64)
        self._block_of = {int(p): k for k, p in enumerate(self.block_ids)}

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Any],
        identities: dict[int, Identity],
        metric: str,
        model: str,
        threshold: float,
    ) -> GalleryIndex:
        """rows: (person_id, path, embedding blob). Rows of another dimension than the
        majority (e.g. left over from another model) are skipped."""
        rows = list(rows)
        if not rows:
            return cls([], np.zeros((0, 0), np.float32), [], identities, metric, model, threshold)
        sizes = [len(r[2]) for r in rows]
        size = max(set(sizes), key=sizes.count)
        rows = [r for r in rows if len(r[2]) == size]
        return cls(
            [r[0] for r in rows],
            as_matrix(r[2] for r in rows),
            [r[1] for r in rows],
            identities,
            metric,
            model,
            threshold,
        )

    def __len__(self) -> int:
        return len(self.person_ids)

    @property
    def dim(self) -> int:
        return self.matrix.shape[1] if self.matrix.ndim == 2 else 0

    @property
    def people(self) -> int:
        return len(self.block_ids)

    def rows_of(self, person_id: int) -> slice:
        k = self._block_of.get(int(person_id))
        if k is None:
            return slice(0, 0)
        end = self.starts[k + 1] if k + 1 < len(self.starts) else len(self.person_ids)
        return slice(int(self.starts[k]), int(end))

    # -- distances -----------------------------------------------------------------------
    def distances(self, queries: np.ndarray) -> np.ndarray:
        """(len(queries), len(index)) distances to every stored embedding."""
        q = prepare(queries, self.metric, np.float32)
        return distances(q, self.matrix, self.metric, self.sq_norms)

    def per_identity_min(self, dist: np.ndarray) -> np.ndarray:
        """(queries, identities): each query's smallest distance to each identity, in the
        order of `block_ids`."""
        return np.minimum.reduceat(dist, self.starts, axis=1)

    def search(self, query: np.ndarray, top: int = 5) -> list[Match]:
        """The `top` nearest identities to one embedding, nearest first."""
        if not len(self):
            return []
        dist = self.distances(query)[0]
        mins = np.minimum.reduceat(dist, self.starts)
        k = min(top, len(mins))
        best = np.argpartition(mins, k - 1)[:k] if k < len(mins) else np.arange(len(mins))
        best = best[np.argsort(mins[best], kind="stable")]
        out = []
        for b in best:
            rows = slice(
                int(self.starts[b]),
                int(self.starts[b + 1]) if b + 1 < len(self.starts) else len(self),
            )
            row = rows.start + int(np.argmin(dist[rows]))
            pid = int(self.block_ids[b])
            ident = self.identities.get(pid, Identity(pid, f"person {pid}", ""))
            d = float(mins[b])
            out.append(
                Match(
                    pid,
                    ident.name,
                    ident.country,
                    round(d, 4),
                    round(confidence(d, self.model, self.metric, self.threshold), 2),
                    self.paths[row],
                )
            )
        return out


def brute_force_search(
    embeddings: Sequence[tuple[int, np.ndarray]], query: np.ndarray, metric: str, top: int = 5
) -> list[tuple[int, float]]:
    """The baseline: a python loop over every stored embedding (for benchmarks and tests)."""
    best: dict[int, float] = {}
    qn = float(np.linalg.norm(query))
    for pid, emb in embeddings:
        if metric == "cosine":
            d = 1.0 - float(np.dot(query, emb)) / (qn * float(np.linalg.norm(emb)) or 1e-12)
        elif metric == "euclidean_l2":
            d = float(np.linalg.norm(query / qn - emb / np.linalg.norm(emb)))
        else:
            d = float(np.linalg.norm(query - emb))
        if d < best.get(pid, math.inf):
            best[pid] = d
    return sorted(best.items(), key=lambda kv: kv[1])[:top]


# -------------------------------------------------------------------------- query photo


@dataclass(frozen=True)
class QueryFace:
    x: int
    y: int
    w: int
    h: int
    confidence: float
    embedding: bytes | None  # None when the face was too small to embed
    note: str | None = None


@dataclass(frozen=True)
class QueryPhoto:
    status: str  # 'ok' | 'no_face' | 'unreadable'
    detail: str | None
    width: int
    height: int
    faces: tuple[QueryFace, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


MIN_EMBED_PX = 20


def embed_faces(path: str, settings: AnalysisSettings) -> QueryPhoto:
    """Decode once, detect once, embed every face (largest first) with the same alignment as
    analysis uses for the main face. Module-level and pure: runs in a pool worker or in-process.
    """
    import time

    from facequeue.vision import analyze

    t0 = time.perf_counter()
    try:
        img = analyze.decode_image(path, settings)
    except ValueError as exc:
        return QueryPhoto("unreadable", str(exc), 0, 0)
    h, w = img.shape[:2]
    timings = {"decode": time.perf_counter() - t0}
    faces, more = analyze.embed_every_face(img, settings, MIN_EMBED_PX)
    timings.update(more)
    out = [
        QueryFace(
            face.x,
            face.y,
            face.w,
            face.h,
            face.confidence,
            embedding,
            None if embedding else f"too small to recognise ({face.w}x{face.h} px)",
        )
        for face, embedding in faces
    ]
    if not out:
        return QueryPhoto("no_face", "no face detected", w, h, (), timings)
    return QueryPhoto("ok", None, w, h, tuple(out), timings)


@dataclass(frozen=True)
class Recognition:
    box: tuple[int, int, int, int]
    label: str  # the best identity's name, or "unknown"
    person_id: int | None
    distance: float | None
    confidence: float | None
    matches: tuple[Match, ...]
    note: str | None = None

    def as_dict(self) -> dict:
        return {
            "box": {"x": self.box[0], "y": self.box[1], "w": self.box[2], "h": self.box[3]},
            "name": self.label,
            "person_id": self.person_id,
            "distance": self.distance,
            "confidence": self.confidence,
            "note": self.note,
            "matches": [m.__dict__ for m in self.matches],
        }


def name_faces(index: GalleryIndex, photo: QueryPhoto, top: int = 3) -> list[Recognition]:
    """Name each face of a photo against the index: best identity when within the threshold."""
    out = []
    for f in photo.faces:
        box = (f.x, f.y, f.w, f.h)
        if f.embedding is None:
            out.append(Recognition(box, "unknown", None, None, None, (), f.note))
            continue
        matches = tuple(index.search(np.frombuffer(f.embedding, np.float32), top))
        if matches and matches[0].distance <= index.threshold:
            m = matches[0]
            out.append(Recognition(box, m.name, m.person_id, m.distance, m.confidence, matches))
        else:
            d = matches[0].distance if matches else None
            c = matches[0].confidence if matches else None
            why = "empty gallery" if not matches else f"nearest above threshold {index.threshold:g}"
            out.append(Recognition(box, "unknown", None, d, c, matches, why))
    return out
