"""Curation: a pure function over one person's analyzed images -> one decision per image.

No database, no network, no files. Steps (docs/faces.md has the measurements):

1. Quality gates per image, in this order: a failed analysis (unreadable, analysis_error,
   analysis_crashed, analysis_timeout), no_face, multi_face (an extra face counts only
   when it is at least ``extra_face_fraction`` of the main face's width and its detector
   score is at least ``extra_face_min_confidence``), too_small, blurry.
2. Near-duplicates among the usable images (pHash Hamming distance of the aligned face
   chip, or near-identical embeddings): the best-quality copy stays, the others are
   ``duplicate``. Done *before* reference selection so copies cannot fake a consensus.
3. References by consensus: the largest group of mutually close faces (every pair within
   the threshold), grown greedily from each face by nearest neighbours. Fewer than
   ``min_references`` -> ``no_consensus``; a disjoint rival group nearly as large ->
   ``no_consensus`` (ambiguous). An anchor (a known portrait) must be in the group.
4. Verification: a candidate is accepted when its *median* distance to the references is
   within the model's threshold (DeepFace's per-model default unless configured).
4b. Photos with several people (never references) contribute the one face that matches
   the references when every other face is clearly someone else, else ``multi_face`` /
   ``ambiguous_faces`` (``curate_faces.py``); a copy of a kept face is ``duplicate``.
5. Cap: at most ``max_per_person`` accepted, references first, then by quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facequeue.config import AnalysisConfig, Config, CurationConfig
from facequeue.stages import curate_faces, references
from facequeue.vision.analyze import FaceAnalysis, FaceValues
from facequeue.vision.distance import (
    METRICS,
    default_metric,
    default_threshold,
    distance_matrix,
)

# Analysis outcomes that are a rejection reason as they are (analysis failed for this image).
FAILED_ANALYSIS = ("unreadable", "analysis_error", "analysis_crashed", "analysis_timeout")


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


def _gate_all(
    candidates: Sequence[Candidate], p: CurationParams
) -> tuple[list[int], list[int], dict[int, str], dict[int, float]]:
    """(usable single-face photos, photos with several embedded faces, reasons, quality)."""
    usable: list[int] = []
    groups: list[int] = []
    reasons: dict[int, str] = {}
    qual: dict[int, float] = {}
    for i, c in enumerate(candidates):
        r = gate(c.analysis, p)
        if r is None:
            usable.append(i)
            qual[i] = quality(c.analysis, p)
        else:
            reasons[i] = r
            if r == "multi_face" and len(c.analysis.embedded) > 1:
                groups.append(i)
    return usable, groups, reasons, qual


def _dedup(
    candidates: Sequence[Candidate],
    usable: list[int],
    vecs: dict[int, np.ndarray],
    qual: dict[int, float],
    reasons: dict[int, str],
    p: CurationParams,
) -> list[int]:
    """Near-duplicates: best copy first (an anchor always wins), then quality, then rank.
    Returns the distinct photos; the copies get the reason ``duplicate``."""
    usable.sort(key=lambda i: (not candidates[i].anchor, -qual[i], candidates[i].rank))
    unique: list[int] = []
    for i in usable:
        a = candidates[i].analysis
        match = None
        if unique:
            dd = distance_matrix(vecs[i][None], np.array([vecs[k] for k in unique]), p.metric)[0]
            match = next(
                (
                    pos
                    for pos, (k, dist) in enumerate(zip(unique, dd, strict=True))
                    if _copies(a, candidates[k].analysis, float(dist), p)
                ),
                None,
            )
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
    return unique


@dataclass
class _State:
    """What curation has decided so far about one person's candidates."""

    candidates: Sequence[Candidate]
    reasons: dict[int, str]
    qual: dict[int, float]
    chosen: dict[int, int] = field(default_factory=dict)  # candidate -> face kept, if not 0
    dist: dict[int, float] = field(default_factory=dict)

    def finish(self, outcome: str, why: str | None, refs: list[int]) -> CurationResult:
        ref_set = set(refs)
        decisions = []
        for i, c in enumerate(self.candidates):
            r = self.reasons.get(i)
            decisions.append(
                Decision(
                    image_id=c.image_id,
                    state="rejected" if r else "accepted",
                    reason=r,
                    is_reference=i in ref_set and not r,
                    distance=self.dist.get(i),
                    quality=self.qual.get(i),
                    face_index=None if r else self.chosen.get(i, 0),
                )
            )
        return CurationResult(
            outcome, why, tuple(decisions), tuple(self.candidates[i].image_id for i in refs)
        )


def _accept_groups(
    st: _State,
    groups: list[int],
    ref_mat: np.ndarray,
    accept_t: float,
    accepted: list[int],
    p: CurationParams,
) -> list[int]:
    """Photos with several people: the one face that is the person, if it is clear."""
    picks = curate_faces.pick_groups(
        [st.candidates[i].analysis for i in groups],
        ref_mat,
        accept_t,
        [_main_values(st.candidates[i].analysis) for i in accepted],
        lambda x, y: distance_matrix(x, y, p.metric),
        lambda a, k: face_gate(a.with_face(k), p) is None,
        p,
    )
    out = []
    for i, pick in zip(groups, picks, strict=True):
        if pick.distance is not None:
            st.dist[i] = pick.distance
        if pick.index is None:
            st.reasons[i] = pick.reason or "multi_face"
            continue
        del st.reasons[i]
        st.chosen[i] = pick.index
        st.qual[i] = quality(st.candidates[i].analysis.with_face(pick.index), p)
        out.append(i)
    return out


def curate(candidates: Sequence[Candidate], params: CurationParams) -> CurationResult:
    p = params
    usable, groups, reasons, qual = _gate_all(candidates, p)
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
    unique = _dedup(candidates, usable, vecs, qual, reasons, p)
    st = _State(candidates, reasons, qual)

    def no_consensus(why: str) -> CurationResult:
        for i in unique:
            reasons[i] = "no_consensus"
        return st.finish("no_consensus", why, [])

    if len(unique) < p.min_references:
        return no_consensus(
            f"only {len(unique)} usable distinct faces, need {p.min_references} "
            "to agree on references"
        )
    mat = np.array([vecs[i] for i in unique])
    d = distance_matrix(mat, mat, p.metric)
    chosen_refs = references.choose_references(
        d, [k for k, i in enumerate(unique) if candidates[i].anchor], p
    )
    if isinstance(chosen_refs, str):
        return no_consensus(chosen_refs)
    refs, accept_t = chosen_refs
    med = np.median(d[:, refs], axis=1)
    accepted: list[int] = []
    for k, i in enumerate(unique):
        st.dist[i] = round(float(med[k]), 4)
        if k in refs or med[k] <= accept_t:
            accepted.append(i)
        else:
            reasons[i] = "not_same_person"
    accepted += _accept_groups(st, groups, mat[refs], accept_t, accepted, p)
    for i in usable:  # the duplicates' distance too, for review
        if i not in st.dist:
            st.dist[i] = round(
                float(np.median(distance_matrix(vecs[i][None], mat[refs], p.metric))), 4
            )
    ref_idx = {unique[k] for k in refs}
    accepted.sort(key=lambda i: (i not in ref_idx, -qual[i], candidates[i].rank))
    for i in accepted[p.max_per_person :]:
        reasons[i] = "over_cap"
    return st.finish("curated", None, [unique[k] for k in refs])
