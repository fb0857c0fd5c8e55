"""Reference selection by consensus and the per-person acceptance distance (pure).

Works on the distance matrix ``d`` of one person's usable, distinct single-face photos.
``choose_references`` returns the references (indexes into ``d``) and the acceptance
distance, or the reason there is no consensus. docs/faces.md has the measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class CurationParams(Protocol):
    """The parts of curate.CurationParams used here (no import back into curate)."""

    @property
    def threshold(self) -> float: ...
    @property
    def reference_factor(self) -> float: ...
    @property
    def min_references(self) -> int: ...
    @property
    def max_references(self) -> int: ...
    @property
    def ambiguity_ratio(self) -> float: ...
    @property
    def spread_factor(self) -> float: ...
    @property
    def spread_floor(self) -> float: ...


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


def best_group(d: np.ndarray, t: float, allowed: np.ndarray, seeds: Sequence[int]) -> list[int]:
    """The largest group of mutually close faces grown greedily from each seed (tightest
    of equal size)."""
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


def _anchor_group(
    d: np.ndarray, anchors: list[int], tr: float, p: CurationParams
) -> list[int] | str:
    """The group must contain every usable anchor: grow it from the anchors."""
    if any(d[a, b] > tr for a in anchors for b in anchors):
        return "the anchor photos do not agree with each other"
    group = list(anchors)
    for j in np.argsort(d[anchors].mean(0), kind="stable"):
        j = int(j)
        if j not in group and all(d[j, m] <= tr for m in group):
            group.append(j)
    if len(group) < p.min_references:
        return (
            f"the anchor agrees with only {len(group) - 1} other face(s), "
            f"need {p.min_references - 1}"
        )
    return group


def _consensus_group(d: np.ndarray, tr: float, p: CurationParams) -> list[int] | str:
    n = len(d)
    everyone = np.ones(n, bool)
    group = best_group(d, tr, everyone, range(n))
    if len(group) < p.min_references:
        return f"largest group of mutually matching faces has {len(group)}, need {p.min_references}"
    # A rival group: disjoint, far from this one, and nearly as large -> ambiguous.
    outside = everyone.copy()
    outside[group] = False
    far = outside & (np.median(d[:, group], axis=1) > p.threshold)
    rival = best_group(d, tr, far, [k for k in range(n) if far[k]])
    if len(rival) >= p.min_references and len(rival) >= p.ambiguity_ratio * len(group):
        return f"ambiguous: two different faces recur ({len(group)} and {len(rival)} photos)"
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


def accept_threshold(d: np.ndarray, refs: list[int], p: CurationParams) -> float:
    """Per-person calibration: a candidate must be about as close to the references as
    they are to each other (spread_factor x their mean leave-one-out median), never
    farther than the model threshold and never stricter than spread_floor x threshold."""
    if len(refs) < 2:
        return p.threshold
    rr = d[np.ix_(refs, refs)]
    loo = [float(np.median(np.delete(rr[k], k))) for k in range(len(refs))]
    return min(
        p.threshold, max(p.spread_floor * p.threshold, p.spread_factor * float(np.mean(loo)))
    )


def choose_references(
    d: np.ndarray, anchors: list[int], p: CurationParams
) -> tuple[list[int], float] | str:
    """(references, acceptance distance), or why there is no consensus."""
    tr = p.threshold * p.reference_factor
    group = _anchor_group(d, anchors, tr, p) if anchors else _consensus_group(d, tr, p)
    if isinstance(group, str):
        return group
    group = _drop_outliers(d, group, anchors, p)
    # References: the group's most central members (medoid first); anchors always included.
    centrality = d[np.ix_(group, group)].mean(1)
    ranked = [group[k] for k in np.argsort(centrality, kind="stable")]
    refs = [k for k in ranked if k in anchors]
    refs += [k for k in ranked if k not in anchors][: max(0, p.max_references - len(refs))]
    return refs, accept_threshold(d, refs, p)
