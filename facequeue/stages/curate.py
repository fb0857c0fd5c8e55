"""Curation: a pure function over one person's analyzed images -> one decision per image.

No database, no network, no files. Steps (docs/faces.md has the measurements):

1. Quality gates per image, in this order: unreadable, no_face, multi_face (an extra face
   counts only when it is at least ``extra_face_fraction`` of the main face's width and
   its detector score is at least ``extra_face_min_confidence``), too_small, blurry.
2. Near-duplicates among the usable images (pHash Hamming distance of the aligned face
   chip, or near-identical embeddings): the best-quality copy stays, the others are
   ``duplicate``. Done *before* reference selection so copies cannot fake a consensus.
3. References by consensus: the largest group of mutually close faces (every pair within
   the threshold), grown greedily from each face by nearest neighbours. Fewer than
   ``min_references`` -> ``no_consensus``; a disjoint rival group nearly as large ->
   ``no_consensus`` (ambiguous). An anchor (a known portrait) must be in the group.
4. Verification: a candidate is accepted when its *median* distance to the references is
   within the model's threshold (DeepFace's per-model default unless configured).
5. Cap: at most ``max_per_person`` accepted, references first, then by quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facequeue.stages import curate_faces
from facequeue.vision.analyze import FaceAnalysis, FaceValues

# Analysis outcomes that are a rejection reason as they are (analysis failed for this image).
FAILED_ANALYSIS = ("unreadable", "analysis_error", "analysis_crashed", "analysis_timeout")

# DeepFace 0.0.103 deepface/config/threshold.py (copied: importing deepface here would load
# the whole engine into a module that must stay pure and light).
THRESHOLDS: dict[str, dict[str, float]] = {
    "VGG-Face": {"cosine": 0.68, "euclidean": 1.17, "euclidean_l2": 1.17},
    "Facenet": {"cosine": 0.40, "euclidean": 10, "euclidean_l2": 0.80},
    "Facenet512": {"cosine": 0.30, "euclidean": 23.56, "euclidean_l2": 1.04},
    "ArcFace": {"cosine": 0.68, "euclidean": 4.15, "euclidean_l2": 1.13},
    "Dlib": {"cosine": 0.07, "euclidean": 0.6, "euclidean_l2": 0.4},
    "SFace": {"cosine": 0.593, "euclidean": 10.734, "euclidean_l2": 1.055},
    "OpenFace": {"cosine": 0.10, "euclidean": 0.55, "euclidean_l2": 0.55},
    "DeepFace": {"cosine": 0.23, "euclidean": 64, "euclidean_l2": 0.64},
    "DeepID": {"cosine": 0.015, "euclidean": 45, "euclidean_l2": 0.17},
    "GhostFaceNet": {"cosine": 0.65, "euclidean": 35.71, "euclidean_l2": 1.10},
    "Buffalo_L": {"cosine": 0.55, "euclidean": 0.6, "euclidean_l2": 1.1},
}
METRICS = ("cosine", "euclidean", "euclidean_l2")


def default_metric(model: str) -> str:
    """dlib's descriptor is trained for plain euclidean distance (0.6); the others for cosine."""
    return "euclidean" if model == "Dlib" else "cosine"


def default_threshold(model: str, metric: str) -> float:
    try:
        return float(THRESHOLDS[model][metric])
    except KeyError:
        try:  # a model newer than our copy: ask DeepFace itself
            from deepface.config.threshold import thresholds

            return float(thresholds[model][metric])
        except Exception:
            raise ValueError(
                f"no default threshold for model {model!r} with metric {metric!r}; "
                "set curation.threshold"
            ) from None


@dataclass(frozen=True)
class Candidate:
    image_id: int
    rank: int
    analysis: FaceAnalysis
    anchor: bool = False


@dataclass(frozen=True)
class CurationParams:
    model: str = "Dlib"
    metric: str = "euclidean"
    threshold: float = 0.6
    min_references: int = 3
    max_references: int = 7
    max_per_person: int = 40
    phash_distance: int = 6
    duplicate_distance: float = 0.08
    min_face_px: int = 70
    extra_face_fraction: float = 0.5
    extra_face_min_confidence: float = 0.15
    blur_min: float = 8.0
    ambiguity_ratio: float = 0.8
    reference_factor: float = 1.0
    spread_factor: float = 1.3
    spread_floor: float = 0.75

    @classmethod
    def for_model(
        cls, model: str, metric: str | None = None, threshold: float | None = None, **kw: Any
    ) -> CurationParams:
        metric = metric or default_metric(model)
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        thr = threshold if threshold is not None else default_threshold(model, metric)
        return cls(model=model, metric=metric, threshold=float(thr), **kw)

    @classmethod
    def from_config(cls, cfg: Any) -> CurationParams:
        a, c = cfg.analysis, cfg.curation
        return cls.for_model(
            a.model,
            getattr(c, "metric", "") or None,
            c.threshold,
            min_references=c.min_references,
            max_references=max(c.max_references, c.min_references),
            max_per_person=c.max_per_person,
            phash_distance=c.phash_distance,
            duplicate_distance=c.duplicate_distance,
            min_face_px=a.min_face_px,
            extra_face_fraction=a.extra_face_fraction,
            extra_face_min_confidence=getattr(a, "extra_face_min_confidence", 0.15),
            blur_min=a.blur_min,
            ambiguity_ratio=getattr(c, "ambiguity_ratio", 0.8),
            reference_factor=getattr(c, "reference_factor", 1.0),
            spread_factor=getattr(c, "spread_factor", 1.3),
            spread_floor=getattr(c, "spread_floor", 0.75),
        )


@dataclass(frozen=True)
class Decision:
    image_id: int
    state: str  # 'accepted' | 'rejected'
    reason: str | None
    is_reference: bool
    distance: float | None  # median distance to the references
    quality: float | None
    face_index: int | None = None  # the face kept (index into analysis.faces); None if rejected


@dataclass(frozen=True)
class CurationResult:
    outcome: str  # 'curated' | 'no_consensus'
    reason: str | None
    decisions: tuple[Decision, ...]
    reference_ids: tuple[int, ...]

    def accepted_ids(self) -> list[int]:
        return [d.image_id for d in self.decisions if d.state == "accepted"]


# --------------------------------------------------------------------------- helpers


def distance_matrix(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if metric in ("cosine", "euclidean_l2"):
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    if metric == "cosine":
        return np.clip(1.0 - a @ b.T, 0.0, 2.0)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def gate(a: FaceAnalysis, p: CurationParams) -> str | None:
    """The quality-gate rejection reason of one analysis, or None when usable."""
    if a.status in FAILED_ANALYSIS:
        return a.status
    if a.status != "ok" or not a.faces:
        return "no_face"
    if len(curate_faces.significant(a, p.extra_face_fraction, p.extra_face_min_confidence)) > 1:
        return "multi_face"
    return face_gate(a, p)


def face_gate(a: FaceAnalysis, p: CurationParams) -> str | None:
    """Size, sharpness and embedding of the main face (faces[0]) of an analysis."""
    main = a.faces[0]
    if min(main.w, main.h) < p.min_face_px:
        return "too_small"
    if a.blur is None or a.blur < p.blur_min:
        return "blurry"
    if a.embedding is None:
        return "no_embedding"
    return None


def quality(a: FaceAnalysis, p: CurationParams) -> float:
    """0..1: face size, sharpness, exposure and detector confidence (no identity term)."""
    f = a.faces[0]
    size = min(1.0, math.log2(max(f.w, 1) / p.min_face_px + 1) / math.log2(5))  # ~280 px -> 1
    sharp = min(1.0, math.log1p(max(a.blur or 0.0, 0.0)) / math.log1p(300.0))
    expo = 1.0 - min(
        1.0, abs((a.brightness if a.brightness is not None else 128.0) - 128.0) / 128.0
    )
    contrast = min(1.0, (a.contrast or 0.0) / 50.0)
    conf = max(0.0, min(1.0, f.confidence))
    return round(0.4 * size + 0.3 * sharp + 0.1 * expo + 0.1 * contrast + 0.1 * conf, 4)


def _main_values(a: FaceAnalysis) -> FaceValues:
    v = a.values_of(0)
    if v is not None:
        return v
    return FaceValues(0, a.blur or 0.0, 0.0, 0.0, a.embedding or b"", a.phash or "", "")


def _copies(a: FaceAnalysis, b: FaceAnalysis, dist: float, p: CurationParams) -> bool:
    va, vb = _main_values(a), _main_values(b)
    return curate_faces.is_copy(
        va, vb, dist, p.duplicate_distance, 0.5 * p.threshold, p.phash_distance
    ) or curate_faces.is_copy(
        vb, va, dist, p.duplicate_distance, 0.5 * p.threshold, p.phash_distance
    )


def _greedy_group(seed: int, d: np.ndarray, t: float, allowed: np.ndarray) -> list[int]:
    members = [seed]
    for j in np.argsort(d[seed], kind="stable"):
        j = int(j)
        if j == seed or not allowed[j]:
            continue
        if d[seed, j] > t:
            break
        if all(d[j, m] <= t for m in members):
            members.append(j)
    return members


def _best_group(d: np.ndarray, t: float, allowed: np.ndarray, seeds: Sequence[int]) -> list[int]:
    best: list[int] = []
    best_key = (0, 0.0)
    for s in seeds:
        if not allowed[s]:
            continue
        g = _greedy_group(s, d, t, allowed)
        spread = float(d[np.ix_(g, g)].mean()) if len(g) > 1 else 0.0
        key = (len(g), -spread)
        if key > best_key:
            best, best_key = g, key
    return best


# --------------------------------------------------------------------------- curate


def curate(candidates: Sequence[Candidate], params: CurationParams) -> CurationResult:
    p = params
    reasons: dict[int, str] = {}
    qual: dict[int, float] = {}
    usable: list[int] = []  # indexes into candidates
    groups: list[int] = []  # photos with several faces: one of them may be the person
    chosen: dict[int, int] = {}  # candidate -> the face kept when it is not faces[0]
    for i, c in enumerate(candidates):
        r = gate(c.analysis, p)
        if r is None:
            usable.append(i)
            qual[i] = quality(c.analysis, p)
        else:
            reasons[i] = r
            if r == "multi_face" and len(c.analysis.embedded) > 1:
                groups.append(i)

    # Near-duplicates: best copy first (an anchor always wins), then by quality, then rank.
    usable.sort(key=lambda i: (not candidates[i].anchor, -qual[i], candidates[i].rank))
    vecs = {i: candidates[i].analysis.vector() for i in usable}
    dims = {len(v) for v in vecs.values()}
    if len(dims) > 1:
        raise ValueError(
            f"embeddings of different sizes {sorted(dims)}: analyses from different models"
        )
    # A pHash match must also look like the same person (aligned faces share structure).
    unique: list[int] = []
    for i in usable:
        a = candidates[i].analysis
        match = None
        if unique:
            dd = distance_matrix(vecs[i][None], np.array([vecs[k] for k in unique]), p.metric)[0]
            for pos, (k, dist) in enumerate(zip(unique, dd, strict=True)):
                if _copies(a, candidates[k].analysis, float(dist), p):
                    match = pos
                    break
        if match is None:
            unique.append(i)
            continue
        k = unique[match]
        # Of two copies, the clearly larger one wins unless it is clearly worse.
        bigger = a.faces[0].w >= 1.25 * candidates[k].analysis.faces[0].w
        if bigger and qual[i] >= qual[k] - 0.1 and not candidates[k].anchor:
            unique[match] = i
            reasons[k] = "duplicate"
        else:
            reasons[i] = "duplicate"

    def finish(
        outcome: str, why: str | None, refs: list[int], dist: dict[int, float]
    ) -> CurationResult:
        ref_set = set(refs)
        decisions = []
        for i, c in enumerate(candidates):
            r = reasons.get(i)
            decisions.append(
                Decision(
                    image_id=c.image_id,
                    state="rejected" if r else "accepted",
                    reason=r,
                    is_reference=i in ref_set and not r,
                    distance=dist.get(i),
                    quality=qual.get(i),
                    face_index=None if r else chosen.get(i, 0),
                )
            )
        return CurationResult(
            outcome, why, tuple(decisions), tuple(candidates[i].image_id for i in refs)
        )

    def no_consensus(why: str, dist: dict[int, float] | None = None) -> CurationResult:
        for i in unique:
            reasons[i] = "no_consensus"
        return finish("no_consensus", why, [], dist or {})

    if len(unique) < p.min_references:
        return no_consensus(
            f"only {len(unique)} usable distinct faces, need {p.min_references} "
            "to agree on references"
        )

    mat = np.array([vecs[i] for i in unique])
    d = distance_matrix(mat, mat, p.metric)
    n = len(unique)
    everyone = np.ones(n, bool)
    tr = p.threshold * p.reference_factor  # references agree more tightly than verification
    anchors = [k for k, i in enumerate(unique) if candidates[i].anchor]
    if anchors:
        # The group must contain every usable anchor: grow it from the anchors.
        group = list(anchors)
        if any(d[a, b] > tr for a in anchors for b in anchors):
            return no_consensus("the anchor photos do not agree with each other")
        order = np.argsort(d[anchors].mean(0), kind="stable")
        for j in order:
            j = int(j)
            if j not in group and all(d[j, m] <= tr for m in group):
                group.append(j)
        if len(group) < p.min_references:
            return no_consensus(
                f"the anchor agrees with only {len(group) - 1} other face(s), "
                f"need {p.min_references - 1}"
            )
    else:
        group = _best_group(d, tr, everyone, range(n))
        if len(group) < p.min_references:
            return no_consensus(
                f"largest group of mutually matching faces has {len(group)}, "
                f"need {p.min_references}"
            )
        # A rival group: disjoint, far from this one, and nearly as large -> ambiguous.
        outside = everyone.copy()
        outside[group] = False
        far = outside & (np.median(d[:, group], axis=1) > p.threshold)
        rival = _best_group(d, tr, far, [k for k in range(n) if far[k]])
        if len(rival) >= p.min_references and len(rival) >= p.ambiguity_ratio * len(group):
            return no_consensus(
                f"ambiguous: two different faces recur ({len(group)} and {len(rival)} photos)"
            )

    # Outliers of the group (a look-alike can be within the threshold of everyone) are not
    # references: a member must be as close to the others as the group typically is.
    if len(group) > p.min_references:
        gg = d[np.ix_(group, group)]
        loo = np.array([np.median(np.delete(gg[k], k)) for k in range(len(group))])
        limit = max(p.spread_floor * p.threshold, p.spread_factor * float(np.median(loo)))
        kept = [g for g, v in zip(group, loo, strict=True) if v <= limit or g in anchors]
        if len(kept) >= p.min_references:
            group = kept
    # References: the group's most central members (medoid first); anchors always included.
    centrality = d[np.ix_(group, group)].mean(1)
    ranked = [group[k] for k in np.argsort(centrality, kind="stable")]
    refs = [k for k in ranked if k in anchors]
    refs += [k for k in ranked if k not in anchors][: max(0, p.max_references - len(refs))]
    ref_d = d[:, refs]
    med = np.median(ref_d, axis=1)
    # Per-person calibration: a candidate must be about as close to the references as they
    # are to each other (spread_factor x their mean leave-one-out median), never farther
    # than the model threshold and never stricter than spread_floor x the threshold.
    if len(refs) > 1:
        rr = d[np.ix_(refs, refs)]
        loo = [float(np.median(np.delete(rr[k], k))) for k in range(len(refs))]
        accept_t = min(
            p.threshold, max(p.spread_floor * p.threshold, p.spread_factor * float(np.mean(loo)))
        )
    else:
        accept_t = p.threshold

    dist: dict[int, float] = {}
    accepted: list[int] = []
    for k, i in enumerate(unique):
        dist[i] = round(float(med[k]), 4)
        if k in refs or med[k] <= accept_t:
            accepted.append(i)
        else:
            reasons[i] = "not_same_person"
    # Photos with several people: the one face that is the person, if it is clear.
    kept = [candidates[i].analysis for i in accepted]
    for i, pick in _pick_groups(candidates, groups, mat[refs], accept_t, kept, p).items():
        dist[i] = pick.distance  # type: ignore[assignment]
        if pick.index is None:
            reasons[i] = pick.reason or "multi_face"
            continue
        del reasons[i]
        chosen[i] = pick.index
        qual[i] = quality(candidates[i].analysis.with_face(pick.index), p)
        accepted.append(i)
    # The duplicates' distance too, for review.
    for i in usable:
        if i not in dist and vecs[i] is not None:
            dist[i] = round(
                float(np.median(distance_matrix(vecs[i][None], mat[refs], p.metric))), 4
            )

    ref_idx = {unique[k] for k in refs}
    accepted.sort(key=lambda i: (i not in ref_idx, -qual[i], candidates[i].rank))
    for i in accepted[p.max_per_person :]:
        reasons[i] = "over_cap"
    return finish("curated", None, [unique[k] for k in refs], dist)


def _pick_groups(
    candidates: Sequence[Candidate],
    groups: list[int],
    ref_mat: np.ndarray,
    accept_t: float,
    kept: list[FaceAnalysis],
    p: CurationParams,
) -> dict[int, curate_faces.FacePick]:
    """The face each group photo contributes (or why none); a copy of a kept face is a
    ``duplicate``, mirrored copies included."""
    out: dict[int, curate_faces.FacePick] = {}
    kept_faces = [_main_values(a) for a in kept]

    def dist_fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return distance_matrix(x, y, p.metric)

    for i in groups:
        a = candidates[i].analysis
        meds = curate_faces.medians_to(ref_mat, a, dist_fn)
        counting = curate_faces.significant(a, p.extra_face_fraction, p.extra_face_min_confidence)
        pick = curate_faces.pick_face(
            a,
            meds,
            lambda k, a=a: face_gate(a.with_face(k), p) is None,  # type: ignore[misc]
            accept_t,
            p.threshold,
            counting,
        )
        v = a.values_of(pick.index) if pick.index is not None else None
        if v is not None:
            if any(
                curate_faces.is_copy(
                    v,
                    w,
                    float(dist_fn(v.vector()[None], w.vector()[None])[0, 0]),
                    p.duplicate_distance,
                    0.5 * p.threshold,
                    p.phash_distance,
                )
                for w in kept_faces
            ):
                pick = curate_faces.FacePick(None, "duplicate", pick.distance)
            else:
                kept_faces.append(v)
        out[i] = pick
    return out
