"""Reviewer decisions on top of curation: a pure function, like curation itself.

A reviewer's decision is sticky: every curation run (the daemon's, `recurate`, the server's
re-curation after a review) goes through `curate_reviewed`, so no later run overrides it.
- A rejected image is left out *before* references are chosen (it can never anchor the
  person), and ends rejected with reason ``reviewer``.
- An accepted image ends accepted whatever curation thought of it (it keeps curation's
  distance and quality, so the report still shows how far it is from the references).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from facequeue.stages.curate import Candidate, CurationParams, CurationResult, Decision, curate

REVIEWER = "reviewer"

CurateFn = Callable[[Sequence[Candidate], CurationParams], CurationResult]


def curate_reviewed(
    candidates: Sequence[Candidate],
    params: CurationParams,
    reviews: Mapping[int, str],
    curate_fn: CurateFn = curate,
) -> CurationResult:
    """`curate_fn(candidates, params)` with `reviews` (image id -> 'reject' | 'accept') applied."""
    rejected = {i for i, d in reviews.items() if d == "reject"}
    result = curate_fn([c for c in candidates if c.image_id not in rejected], params)
    decisions: list[Decision] = []
    for d in result.decisions:
        if reviews.get(d.image_id) == "accept" and d.state != "accepted":
            d = replace(d, state="accepted", reason=None, is_reference=False)
        decisions.append(d)
    for c in candidates:
        if c.image_id in rejected:
            decisions.append(Decision(c.image_id, "rejected", REVIEWER, False, None, None))
    return replace(result, decisions=tuple(decisions))
