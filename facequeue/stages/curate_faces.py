"""Which face of a photo with several people is the person (pure; used by curate).

A photo with more than one significant face never serves as a reference. Once the
references are chosen from single-face photos, it contributes the one face that matches
them — when exactly one usable face is within the acceptance distance and every other
face that was embedded is clearly someone else (median distance to the references beyond
the model's threshold, a margin above acceptance). Otherwise it stays rejected:
``multi_face`` when no face matches, ``ambiguous_faces`` when more than one could be the
person, or another face is too close to call, or a significant face was not embedded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facequeue.vision.analyze import FaceAnalysis, FaceValues


class CurationParams(Protocol):
    """The parts of curate.CurationParams used here (no import back into curate)."""

    @property
    def threshold(self) -> float: ...
    @property
    def extra_face_fraction(self) -> float: ...
    @property
    def extra_face_min_confidence(self) -> float: ...
    @property
    def duplicate_distance(self) -> float: ...
    @property
    def phash_distance(self) -> int: ...


DistFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FacePick:
    index: int | None  # the chosen face (index into analysis.faces), None when rejected
    reason: str | None  # None when a face was chosen
    distance: float | None  # median distance of the chosen (or closest) face to the references


def significant(a: FaceAnalysis, fraction: float, min_confidence: float) -> list[int]:
    """Faces that count against a single-face photo: the main one and those at least
    ``fraction`` of its width with a detector score of at least ``min_confidence``."""
    main = a.faces[0]
    return [0] + [
        k
        for k, f in enumerate(a.faces[1:], start=1)
        if f.w >= fraction * main.w and f.confidence >= min_confidence
    ]


def pick_face(
    a: FaceAnalysis,
    medians: dict[int, float],
    usable: Callable[[int], bool],
    accept_t: float,
    threshold: float,
    counting: list[int],
) -> FacePick:
    """``medians``: face index -> median distance to the references (embedded faces only);
    ``usable(k)``: face k passes the size/sharpness gates; ``counting``: significant faces."""
    if not medians:
        return FacePick(None, "multi_face", None)
    closest = min(medians, key=lambda k: medians[k])
    matches = [k for k, m in medians.items() if m <= accept_t and usable(k)]
    if not matches:
        return FacePick(None, "multi_face", round(medians[closest], 4))
    if len(matches) > 1:
        return FacePick(None, "ambiguous_faces", round(medians[closest], 4))
    chosen = matches[0]
    others_far = all(m > threshold for k, m in medians.items() if k != chosen)
    all_seen = all(k in medians for k in counting)
    if not (others_far and all_seen):
        return FacePick(None, "ambiguous_faces", round(medians[chosen], 4))
    return FacePick(chosen, None, round(medians[chosen], 4))


def _hamming(h1: str, h2: str) -> int:
    return bin(int(h1, 16) ^ int(h2, 16)).count("1")


def is_copy(
    v: FaceValues, w: FaceValues, dist: float, duplicate_distance: float, half_t: float, bits: int
) -> bool:
    """Two faces are one photo's copies: nearly the same embedding, or the same (or the
    mirrored) aligned chip by perceptual hash while also looking like the same person."""
    if dist <= duplicate_distance:
        return True
    if dist > half_t or not v.phash or not w.phash:
        return False
    if _hamming(v.phash, w.phash) <= bits:
        return True
    return bool(w.phash_mirror) and _hamming(v.phash, w.phash_mirror) <= bits


def medians_to(refs: np.ndarray, a: FaceAnalysis, dist_fn: Callable) -> dict[int, float]:
    """Median distance of every embedded face of ``a`` to the reference vectors."""
    out: dict[int, float] = {}
    for v in a.embedded:
        vec = v.vector()
        if vec.shape[0] != refs.shape[1]:
            continue
        out[v.index] = float(np.median(dist_fn(vec[None], refs)[0]))
    return out


def pick_groups(
    photos: list[FaceAnalysis],
    ref_mat: np.ndarray,
    accept_t: float,
    kept: list[FaceValues],
    dist_fn: DistFn,
    usable: Callable[[FaceAnalysis, int], bool],
    p: CurationParams,
) -> list[FacePick]:
    """The face each photo with several people contributes (or why none). A copy of a face
    already kept (``kept``, then the faces picked here), mirrored copies included, is a
    ``duplicate``."""
    kept = list(kept)
    out: list[FacePick] = []
    for a in photos:
        pick = pick_face(
            a,
            medians_to(ref_mat, a, dist_fn),
            lambda k, a=a: usable(a, k),  # type: ignore[misc]
            accept_t,
            p.threshold,
            significant(a, p.extra_face_fraction, p.extra_face_min_confidence),
        )
        v = a.values_of(pick.index) if pick.index is not None else None
        if v is not None:
            copy = any(
                is_copy(
                    v,
                    w,
                    float(dist_fn(v.vector()[None], w.vector()[None])[0, 0]),
                    p.duplicate_distance,
                    0.5 * p.threshold,
                    p.phash_distance,
                )
                for w in kept
            )
            if copy:
                pick = FacePick(None, "duplicate", pick.distance)
            else:
                kept.append(v)
        out.append(pick)
    return out
