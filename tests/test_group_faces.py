"""Faces in photos with other people (issue 14), with real analyses of the corpus.

References come from single-face photos; a photo with several faces then contributes the
one face that matches them when every other face is clearly someone else, else it stays
rejected (multi_face / ambiguous_faces). A mirrored copy of a kept face is a duplicate.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facequeue.stages.curate import Candidate, CurationParams, curate
from facequeue.vision.analyze import AnalysisSettings, analyze_image, init_worker

PARAMS = CurationParams.for_model("Dlib")
OTHERS = ["people/Ariel_Sharon/1.jpg", "people/Hugo_Chavez/2.jpg", "people/Tony_Blair/3.jpg"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> AnalysisSettings:
    s = AnalysisSettings(deepface_home=str(tmp_path_factory.mktemp("deepface")))
    init_worker(s)
    return s


@pytest.fixture(scope="module")
def analyse(settings, testdata_dir):
    cache: dict[str, object] = {}

    def get(rel: str):
        if rel not in cache:
            path = rel if rel.startswith("/") else str(testdata_dir / rel)
            cache[rel] = analyze_image(path, settings)
        return cache[rel]

    return get


def side_by_side(testdata_dir, tmp_path, left: str, right: str, mirror: bool = False) -> str:
    ims = [Image.open(testdata_dir / p).convert("RGB") for p in (left, right)]
    ims = [im.resize((round(im.width * 400 / im.height), 400)) for im in ims]
    if mirror:
        ims = [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in ims]
    out = Image.new("RGB", (ims[0].width + ims[1].width, 400), "white")
    out.paste(ims[0], (0, 0))
    out.paste(ims[1], (ims[0].width, 0))
    path = tmp_path / f"{abs(hash((left, right, mirror)))}.jpg"
    out.save(path, quality=92)
    return str(path)


def run(analyse, rels: list[str]):
    cands = [Candidate(image_id=k, rank=k, analysis=analyse(r)) for k, r in enumerate(rels)]
    res = curate(cands, PARAMS)
    return res, {rels[d.image_id]: d for d in res.decisions}


def person(identity: str, n: int, testdata_dir) -> list[str]:
    folder = testdata_dir / "people" / identity
    return [f"people/{identity}/{p.name}" for p in sorted(folder.iterdir())][:n]


def test_every_usable_face_is_embedded(analyse):
    a = analyse("multi/fr_kit_with_rose.jpg")
    assert a.status == "ok" and len(a.faces) >= 2
    assert len(a.embedded) >= 2 and {v.index for v in a.embedded} <= set(range(len(a.faces)))
    vecs = [v.vector() for v in a.embedded]
    assert all(v.shape == (128,) for v in vecs)
    assert np.linalg.norm(vecs[0] - vecs[1]) > 0.6  # two different people
    assert a.embedding == a.embedded[0].embedding  # the main face's values stay on top
    assert len(a.embedded[0].landmarks) == 5


def test_corpus_group_photos_contribute_the_persons_face(analyse, testdata_dir):
    """LFW group photos of Laura Bush (beside George W. Bush): for each of the two, the
    photo is accepted with that person's face; the faces kept differ."""
    chosen = {}
    for who in ("Laura_Bush", "George_W_Bush"):
        rels = person(who, 6, testdata_dir) + OTHERS + ["multi/lfw_Laura_Bush_0011.jpg"]
        res, d = run(analyse, rels)
        assert res.outcome == "curated"
        g = d["multi/lfw_Laura_Bush_0011.jpg"]
        assert g.state == "accepted" and not g.is_reference, g
        assert g.distance is not None and g.distance <= PARAMS.threshold
        chosen[who] = g.face_index
        assert all(d[o].state == "rejected" for o in OTHERS)
    assert chosen["Laura_Bush"] != chosen["George_W_Bush"]


def test_made_pair_keeps_the_persons_side(analyse, testdata_dir, tmp_path):
    own = person("Colin_Powell", 6, testdata_dir)
    pair = side_by_side(testdata_dir, tmp_path, "people/Kofi_Annan/1.jpg", own[-1])
    strangers = side_by_side(testdata_dir, tmp_path, OTHERS[0], OTHERS[1])
    res, d = run(analyse, own[:-1] + OTHERS + [pair, strangers])
    g = d[pair]
    assert g.state == "accepted", g
    a = analyse(pair)
    face = a.faces[g.face_index]
    assert face.x + face.w / 2 > a.width / 2  # the right-hand face: Colin Powell
    assert d[strangers].state == "rejected" and d[strangers].reason == "multi_face"


def test_two_faces_that_could_be_the_person_are_ambiguous(analyse, testdata_dir, tmp_path):
    own = person("Colin_Powell", 6, testdata_dir)
    twice = side_by_side(testdata_dir, tmp_path, own[-1], own[-2])
    _, d = run(analyse, own[:-2] + OTHERS + [twice])
    assert d[twice].state == "rejected" and d[twice].reason == "ambiguous_faces"


def test_group_photo_is_never_a_reference(analyse, testdata_dir, tmp_path):
    """Without enough single-face photos there is no consensus, whatever the group photos."""
    own = person("Colin_Powell", 6, testdata_dir)
    pairs = [
        side_by_side(testdata_dir, tmp_path, o, p) for o, p in zip(OTHERS, own[:3], strict=True)
    ]
    res, d = run(analyse, own[3:5] + pairs)
    assert res.outcome == "no_consensus"
    assert all(d[p].reason == "multi_face" for p in pairs)


def test_mirror_image_of_a_kept_face_is_a_duplicate(analyse, testdata_dir):
    own = person("deepface_person_01", 8, testdata_dir)
    rels = own + OTHERS + ["variants/deepface_img11_reflection.jpg"]
    _, d = run(analyse, rels)
    mirrored, original = d["variants/deepface_img11_reflection.jpg"], d[own[7]]
    assert {mirrored.reason, original.reason} == {"duplicate", None}


def test_mirrored_group_face_is_a_duplicate(analyse, testdata_dir, tmp_path):
    own = person("Colin_Powell", 6, testdata_dir)
    pair = side_by_side(testdata_dir, tmp_path, own[0], "people/Kofi_Annan/1.jpg", mirror=True)
    _, d = run(analyse, own + OTHERS + [pair])
    assert d[own[0]].state == "accepted"
    assert d[pair].reason == "duplicate"
