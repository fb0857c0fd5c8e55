"""Reviewer decisions on top of curation (stages/review.py): a pure function.

Curation itself is tested on real embeddings in test_curate.py and end to end (review then
`recurate`) in test_serve.py; here the override rules, with a recording curation."""

from __future__ import annotations

from facequeue.stages.curate import Candidate, CurationParams, CurationResult, Decision
from facequeue.stages.review import REVIEWER, curate_reviewed
from facequeue.vision.analyze import FaceAnalysis


def cand(i: int) -> Candidate:
    return Candidate(i, i, FaceAnalysis(status="ok", detail=None, width=100, height=100))


def test_reviewer_rejects_are_left_out_and_accepts_win():
    seen: list[int] = []

    def curation(cands, params) -> CurationResult:
        seen.extend(c.image_id for c in cands)
        # curation rejects 3, accepts the rest, with 1 as reference
        return CurationResult(
            "curated",
            None,
            tuple(
                Decision(
                    c.image_id,
                    "rejected" if c.image_id == 3 else "accepted",
                    "not_same_person" if c.image_id == 3 else None,
                    c.image_id == 1,
                    0.3,
                    0.5,
                )
                for c in cands
            ),
            (1,),
        )

    res = curate_reviewed(
        [cand(i) for i in (1, 2, 3, 4)],
        CurationParams(),
        {2: "reject", 3: "accept"},
        curation,
    )
    assert seen == [1, 3, 4]  # a rejected image never reaches reference selection
    states = {d.image_id: (d.state, d.reason) for d in res.decisions}
    assert states == {
        1: ("accepted", None),
        2: ("rejected", REVIEWER),
        3: ("accepted", None),
        4: ("accepted", None),
    }
    assert len(res.decisions) == 4 and res.reference_ids == (1,)
    accepted3 = next(d for d in res.decisions if d.image_id == 3)
    assert accepted3.distance == 0.3 and not accepted3.is_reference  # curation's numbers kept


def test_no_reviews_is_plain_curation():
    calls = []

    def curation(cands, params):
        calls.append(len(cands))
        return CurationResult("no_consensus", "why", (), ())

    res = curate_reviewed([cand(1)], CurationParams(), {}, curation)
    assert calls == [1] and res.outcome == "no_consensus" and res.decisions == ()
