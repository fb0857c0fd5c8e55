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

from facequeue.config import AnalysisConfig, Config, CurationConfig
from facequeue.vision.analyze import FaceAnalysis
from facequeue.vision.distance import (
    METRICS,
    default_metric,
    default_threshold,
    distance_matrix,
)


@dataclass(frozen=True)
class Candidate:
    image_id: int
    rank: int
    analysis: FaceAnalysis
    anchor: bool = False


# Defaults live in the config model only; these read them from there.
_A, _C = AnalysisConfig(), CurationConfig()


@dataclass(frozen=True)
class CurationParams:
    model: str = _A.model
    metric: str = _C.metric or default_metric(_A.model)
    threshold: float = _C.threshold or default_threshold(_A.model, metric)
    min_references: int = _C.min_references
    max_references: int = _C.max_references
    max_per_person: int = _C.max_per_person
    phash_distance: int = _C.phash_distance
    duplicate_distance: float = _C.duplicate_distance
    min_face_px: int = _A.min_face_px
    extra_face_fraction: float = _A.extra_face_fraction
    extra_face_min_confidence: float = _A.extra_face_min_confidence
    blur_min: float = _A.blur_min
    ambiguity_ratio: float = _C.ambiguity_ratio
    reference_factor: float = 1.0  # references agree this much tighter than verification
    spread_factor: float = _C.spread_factor
    spread_floor: float = _C.spread_floor

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
    def from_config(cls, cfg: Config) -> CurationParams:
        a, c = cfg.analysis, cfg.curation
        return cls.for_model(
            a.model,
            c.metric or None,
            c.threshold,
            min_references=c.min_references,
            max_references=max(c.max_references, c.min_references),
            max_per_person=c.max_per_person,
            phash_distance=c.phash_distance,
            duplicate_distance=c.duplicate_distance,
            min_face_px=a.min_face_px,
            extra_face_fraction=a.extra_face_fraction,
            extra_face_min_confidence=a.extra_face_min_confidence,
            blur_min=a.blur_min,
            ambiguity_ratio=c.ambiguity_ratio,
            spread_factor=c.spread_factor,
            spread_floor=c.spread_floor,
        )


@dataclass(frozen=True)
class Decision:
    image_id: int
    state: str  # 'accepted' | 'rejected'
    reason: str | None
    is_reference: bool
    distance: float | None  # median distance to the references
    quality: float | None


@dataclass(frozen=True)
class CurationResult:
    outcome: str  # 'curated' | 'no_consensus'
    reason: str | None
    decisions: tuple[Decision, ...]
    reference_ids: tuple[int, ...]

    def accepted_ids(self) -> list[int]:
        return [d.image_id for d in self.decisions if d.state == "accepted"]


# --------------------------------------------------------------------------- helpers


def gate(a: FaceAnalysis, p: CurationParams) -> str | None:
    """The quality-gate rejection reason of one analysis, or None when usable."""
    if a.status == "unreadable":
        return "unreadable"
    if a.status != "ok" or not a.faces:
        return "no_face"
    main = a.faces[0]
    extra = [
        f
        for f in a.faces[1:]
        if f.w >= p.extra_face_fraction * main.w and f.confidence >= p.extra_face_min_confidence
    ]
    if extra:
        return "multi_face"
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


def _hamming(h1: str, h2: str) -> int:
    return bin(int(h1, 16) ^ int(h2, 16)).count("1")


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
# Two index spaces: `i` indexes `candidates`; `k` indexes `unique` (the distinct usable
# faces) and so the rows of the distance matrix `d`. unique[k] maps k back to i.


class _NoConsensus(Exception):
    """Reference selection failed; the message is the person's state reason."""


def _gate_all(
    candidates: Sequence[Candidate], p: CurationParams
) -> tuple[list[int], dict[int, str], dict[int, float]]:
    """Step 1: (usable i's, rejection reasons, quality of the usable)."""
    reasons: dict[int, str] = {}
    qual: dict[int, float] = {}
    usable: list[int] = []
    for i, c in enumerate(candidates):
        r = gate(c.analysis, p)
        if r is None:
            usable.append(i)
            qual[i] = quality(c.analysis, p)
        else:
            reasons[i] = r
    return usable, reasons, qual


def _vectors(candidates: Sequence[Candidate], usable: list[int]) -> dict[int, np.ndarray]:
    vecs: dict[int, np.ndarray] = {}
    for i in usable:
        v = candidates[i].analysis.vector()
        assert v is not None  # gate() rejects an image without an embedding
        vecs[i] = v
    dims = {len(v) for v in vecs.values()}
    if len(dims) > 1:
        raise ValueError(
            f"embeddings of different sizes {sorted(dims)}: analyses from different models"
        )
    return vecs


def _copy_of(
    i: int,
    unique: list[int],
    candidates: Sequence[Candidate],
    vecs: dict[int, np.ndarray],
    p: CurationParams,
) -> int | None:
    """Position in `unique` of an image that `i` is a copy of, if any. A pHash match must
    also look like the same person (aligned faces share structure)."""
    if not unique:
        return None
    a = candidates[i].analysis
    dd = distance_matrix(vecs[i][None], np.array([vecs[k] for k in unique]), p.metric)[0]
    for pos, (k, dist) in enumerate(zip(unique, dd, strict=True)):
        if dist <= p.duplicate_distance:
            return pos
        ph = candidates[k].analysis.phash
        if dist <= 0.5 * p.threshold and a.phash and ph:
            if _hamming(a.phash, ph) <= p.phash_distance:
                return pos
    return None


def _dedup(
    candidates: Sequence[Candidate],
    usable: list[int],
    vecs: dict[int, np.ndarray],
    qual: dict[int, float],
    reasons: dict[int, str],
    p: CurationParams,
) -> list[int]:
    """Step 2: the distinct usable images (i's); copies get reason 'duplicate'.
    Best copy first (an anchor always wins), then by quality, then rank."""
    usable.sort(key=lambda i: (not candidates[i].anchor, -qual[i], candidates[i].rank))
    unique: list[int] = []
    for i in usable:
        match = _copy_of(i, unique, candidates, vecs, p)
        if match is None:
            unique.append(i)
            continue
        k = unique[match]
        # Of two copies, the clearly larger one wins unless it is clearly worse.
        bigger = candidates[i].analysis.faces[0].w >= 1.25 * candidates[k].analysis.faces[0].w
        if bigger and qual[i] >= qual[k] - 0.1 and not candidates[k].anchor:
            unique[match] = i
            reasons[k] = "duplicate"
        else:
            reasons[i] = "duplicate"
    return unique


def _anchored_group(d: np.ndarray, tr: float, anchors: list[int], p: CurationParams) -> list[int]:
    """Step 3 with anchors: the group must contain every usable anchor, grown from them."""
    group = list(anchors)
    if any(d[a, b] > tr for a in anchors for b in anchors):
        raise _NoConsensus("the anchor photos do not agree with each other")
    for j in np.argsort(d[anchors].mean(0), kind="stable"):
        j = int(j)
        if j not in group and all(d[j, m] <= tr for m in group):
            group.append(j)
    if len(group) < p.min_references:
        raise _NoConsensus(
            f"the anchor agrees with only {len(group) - 1} other face(s), "
            f"need {p.min_references - 1}"
        )
    return group


def _consensus_group(d: np.ndarray, tr: float, p: CurationParams) -> list[int]:
    """Step 3 without anchors: the largest mutually close group, unless a rival group
    (disjoint, far from this one, nearly as large) makes the person ambiguous."""
    n = len(d)
    everyone = np.ones(n, bool)
    group = _best_group(d, tr, everyone, range(n))
    if len(group) < p.min_references:
        raise _NoConsensus(
            f"largest group of mutually matching faces has {len(group)}, need {p.min_references}"
        )
    outside = everyone.copy()
    outside[group] = False
    far = outside & (np.median(d[:, group], axis=1) > p.threshold)
    rival = _best_group(d, tr, far, [k for k in range(n) if far[k]])
    if len(rival) >= p.min_references and len(rival) >= p.ambiguity_ratio * len(group):
        raise _NoConsensus(
            f"ambiguous: two different faces recur ({len(group)} and {len(rival)} photos)"
        )
    return group


def _drop_outliers(
    d: np.ndarray, group: list[int], anchors: list[int], p: CurationParams
) -> list[int]:
    """A look-alike can be within the threshold of everyone: a member must be as close to
    the others as the group typically is."""
    if len(group) <= p.min_references:
        return group
    gg = d[np.ix_(group, group)]
    loo = np.array([np.median(np.delete(gg[k], k)) for k in range(len(group))])
    limit = max(p.spread_floor * p.threshold, p.spread_factor * float(np.median(loo)))
    kept = [g for g, v in zip(group, loo, strict=True) if v <= limit or g in anchors]
    return kept if len(kept) >= p.min_references else group


def _references(
    d: np.ndarray, group: list[int], anchors: list[int], p: CurationParams
) -> list[int]:
    """The group's most central members (medoid first); anchors always included."""
    centrality = d[np.ix_(group, group)].mean(1)
    ranked = [group[k] for k in np.argsort(centrality, kind="stable")]
    refs = [k for k in ranked if k in anchors]
    return refs + [k for k in ranked if k not in anchors][: max(0, p.max_references - len(refs))]


def _acceptance_threshold(d: np.ndarray, refs: list[int], p: CurationParams) -> float:
    """Per-person calibration: a candidate must be about as close to the references as they
    are to each other (spread_factor x their mean leave-one-out median), never farther than
    the model threshold and never stricter than spread_floor x the threshold."""
    if len(refs) <= 1:
        return p.threshold
    rr = d[np.ix_(refs, refs)]
    loo = [float(np.median(np.delete(rr[k], k))) for k in range(len(refs))]
    return min(
        p.threshold, max(p.spread_floor * p.threshold, p.spread_factor * float(np.mean(loo)))
    )


def _result(
    candidates: Sequence[Candidate],
    reasons: dict[int, str],
    qual: dict[int, float],
    outcome: str,
    why: str | None,
    refs: list[int],
    dist: dict[int, float],
) -> CurationResult:
    """One decision per candidate (refs and dist keyed by i)."""
    ref_set = set(refs)
    decisions = tuple(
        Decision(
            image_id=c.image_id,
            state="rejected" if reasons.get(i) else "accepted",
            reason=reasons.get(i),
            is_reference=i in ref_set and not reasons.get(i),
            distance=dist.get(i),
            quality=qual.get(i),
        )
        for i, c in enumerate(candidates)
    )
    return CurationResult(outcome, why, decisions, tuple(candidates[i].image_id for i in refs))


def _choose_group(
    candidates: Sequence[Candidate], unique: list[int], d: np.ndarray, p: CurationParams
) -> tuple[list[int], list[int]]:
    """Step 3: (group, anchors) as k's; _NoConsensus when there is none."""
    if len(unique) < p.min_references:
        raise _NoConsensus(
            f"only {len(unique)} usable distinct faces, need {p.min_references} "
            "to agree on references"
        )
    tr = p.threshold * p.reference_factor  # references agree more tightly than verification
    anchors = [k for k, i in enumerate(unique) if candidates[i].anchor]
    group = _anchored_group(d, tr, anchors, p) if anchors else _consensus_group(d, tr, p)
    return _drop_outliers(d, group, anchors, p), anchors


def curate(candidates: Sequence[Candidate], params: CurationParams) -> CurationResult:
    """Steps 1-5 of the module docstring over one person's analyzed images."""
    p = params
    usable, reasons, qual = _gate_all(candidates, p)
    vecs = _vectors(candidates, usable)
    unique = _dedup(candidates, usable, vecs, qual, reasons, p)
    mat = np.array([vecs[i] for i in unique])
    d = distance_matrix(mat, mat, p.metric) if unique else np.zeros((0, 0))
    try:
        group, anchors = _choose_group(candidates, unique, d, p)
    except _NoConsensus as exc:
        for i in unique:
            reasons[i] = "no_consensus"
        return _result(candidates, reasons, qual, "no_consensus", str(exc), [], {})
    refs = _references(d, group, anchors, p)

    # Step 4: verification by the median distance to the references.
    med = np.median(d[:, refs], axis=1)
    accept_t = _acceptance_threshold(d, refs, p)
    dist: dict[int, float] = {}
    accepted: list[int] = []
    for k, i in enumerate(unique):
        dist[i] = round(float(med[k]), 4)
        if k in refs or med[k] <= accept_t:
            accepted.append(i)
        else:
            reasons[i] = "not_same_person"
    for i in usable:  # the duplicates' distance too, for review
        if i not in dist:
            dist[i] = round(
                float(np.median(distance_matrix(vecs[i][None], mat[refs], p.metric))), 4
            )

    # Step 5: the cap, references first, then by quality.
    ref_idx = {unique[k] for k in refs}
    accepted.sort(key=lambda i: (i not in ref_idx, -qual[i], candidates[i].rank))
    for i in accepted[p.max_per_person :]:
        reasons[i] = "over_cap"
    return _result(candidates, reasons, qual, "curated", None, [unique[k] for k in refs], dist)
