"""Face analysis with the real models (dlib detector + DeepFace Dlib model) on the corpus."""

from __future__ import annotations

import os
import shutil
import time

import cv2
import numpy as np
import pytest

from facequeue.errors import ModelWeightsMissing
from facequeue.stages.curate import CurationParams, gate
from facequeue.vision import engine as faces
from facequeue.vision.analyze import (
    AnalysisSettings,
    Face,
    analyze_bgr,
    analyze_image,
    decode_image,
    init_worker,
    write_crop,
)
from facequeue.vision.pool import AnalysisPool

pytestmark = pytest.mark.model

PARAMS = CurationParams.for_model("Dlib")


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> AnalysisSettings:
    s = AnalysisSettings(deepface_home=str(tmp_path_factory.mktemp("deepface")))
    init_worker(s)
    return s


@pytest.fixture(scope="module")
def analyzed(settings, testdata_dir):
    cache: dict[str, object] = {}

    def get(rel: str):
        if rel not in cache:
            cache[rel] = analyze_image(str(testdata_dir / rel), settings)
        return cache[rel]

    return get


@pytest.mark.parametrize(
    "rel",
    [
        "noface/skimage_coffee.png",
        "noface/dlib_dogs.jpg",
        "noface/skimage_chelsea.png",
        "noface/skimage_gravel.png",
    ],
)
def test_no_face_photos_yield_no_face(analyzed, rel):
    a = analyzed(rel)
    assert a.status == "no_face" and a.faces == () and a.embedding is None
    assert gate(a, PARAMS) == "no_face"


@pytest.mark.parametrize(
    "rel",
    [
        "multi/fr_two_people.jpg",
        "multi/deepface_couple.jpg",
        "multi/dlib_2008_001322.jpg",
        "multi/lfw_Laura_Bush_0011.jpg",
        "multi/deepface_selfie-many-people.jpg",
        "multi/openface_longoria-cooper.jpg",
    ],
)
def test_group_photos_yield_multi_face(analyzed, rel):
    a = analyzed(rel)
    assert a.status == "ok" and len(a.faces) > 1
    assert gate(a, PARAMS) == "multi_face"


def test_single_face_photo_measures(analyzed):
    a = analyzed("people/deepface_person_01/1.jpg")
    assert a.status == "ok" and a.width == 1382 and a.height == 1868
    f = a.faces[0]
    assert 0 <= f.x < a.width and f.x + f.w <= a.width and f.w > 300  # full-resolution box
    assert gate(a, PARAMS) is None
    vec = np.frombuffer(a.embedding, np.float32)
    assert vec.shape == (128,) and np.isfinite(vec).all()
    assert len(a.phash) == 16 and a.blur > PARAMS.blur_min
    assert 0 < a.brightness < 255 and a.contrast > 0
    assert {"decode", "detect", "embed"} <= set(a.timings)


def test_tiny_background_face_does_not_disqualify():
    main = Face(100, 100, 200, 200, 1.0)
    from facequeue.vision.analyze import FaceAnalysis

    emb = np.zeros(128, np.float32).tobytes()
    base = dict(
        status="ok",
        detail=None,
        width=800,
        height=600,
        blur=100.0,
        brightness=120.0,
        contrast=40.0,
        embedding=emb,
        phash="0" * 16,
    )
    assert gate(FaceAnalysis(faces=(main, Face(500, 50, 60, 60, 1.0)), **base), PARAMS) is None
    assert (
        gate(FaceAnalysis(faces=(main, Face(500, 50, 150, 150, 1.0)), **base), PARAMS)
        == "multi_face"
    )
    # a weak extra detection (dlib score < 0.15) is ignored
    assert gate(FaceAnalysis(faces=(main, Face(500, 50, 190, 190, 0.1)), **base), PARAMS) is None


def test_resolution_does_not_change_blur_much(settings, testdata_dir):
    img = decode_image(str(testdata_dir / "people/deepface_person_03/1.jpg"))
    big = analyze_bgr(img, settings)
    small = analyze_bgr(
        cv2.resize(img, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA), settings
    )
    assert gate(big, PARAMS) is None and gate(small, PARAMS) is None


@pytest.mark.parametrize(
    "rel",
    ["people/Colin_Powell/1.jpg", "people/deepface_person_01/1.jpg", "people/Barack_Obama/1.jpg"],
)
def test_blurred_variants_are_rejected(settings, testdata_dir, rel):
    img = decode_image(str(testdata_dir / rel))
    sharp = analyze_bgr(img, settings)
    assert gate(sharp, PARAMS) is None
    sigma = 4.0 * max(img.shape[:2]) / 250.0  # ~4 px on a 250 px LFW photo
    blurred = analyze_bgr(cv2.GaussianBlur(img, (0, 0), sigma), settings)
    assert gate(blurred, PARAMS) in ("blurry", "no_face")


@pytest.mark.parametrize("rel", ["people/Colin_Powell/1.jpg", "people/deepface_person_01/1.jpg"])
def test_tiny_variants_are_rejected(settings, testdata_dir, tmp_path, rel):
    img = decode_image(str(testdata_dir / rel))
    scale = 120.0 / max(img.shape[:2])
    tiny = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    path = tmp_path / "tiny.jpg"
    cv2.imwrite(str(path), tiny)
    assert gate(analyze_image(str(path), settings), PARAMS) in ("too_small", "no_face")


def test_non_ascii_paths(settings, testdata_dir, tmp_path):
    dest = tmp_path / "Ђорђе Балашевић" / "šđčćž 東京.jpg"
    dest.parent.mkdir()
    shutil.copy(testdata_dir / "people/Kofi_Annan/1.jpg", dest)
    a = analyze_image(str(dest), settings)
    assert a.status == "ok" and gate(a, PARAMS) is None
    crop = tmp_path / "crops" / "Ђорђе" / "лице.jpg"
    w, h = write_crop(str(dest), a.faces[0], 0.2, str(crop))
    assert crop.is_file() and decode_image(str(crop)).shape[:2] == (h, w)


def test_webp_with_jpg_name_and_rgba_png(analyzed):
    assert analyzed("people/deepface_person_03/3.jpg").status == "ok"
    assert analyzed("people/Lin-Manuel_Miranda/1.png").status == "ok"


def test_corrupt_and_truncated_files_are_unreadable(settings, testdata_dir, tmp_path):
    data = (testdata_dir / "people/Tony_Blair/1.jpg").read_bytes()
    cases = {
        "truncated.jpg": data[: len(data) // 3],
        "garbage.jpg": os.urandom(5000),
        "empty.jpg": b"",
        "text.png": b"<html>not an image</html>",
        "header_only.jpg": data[:200],
    }
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        a = analyze_image(str(p), settings)
        assert a.status == "unreadable", name
        assert a.detail and gate(a, PARAMS) == "unreadable"
    missing = analyze_image(str(tmp_path / "nope.jpg"), settings)
    assert missing.status == "unreadable"


def test_write_crop_margin_clamped_and_atomic(testdata_dir, tmp_path):
    src = str(testdata_dir / "people/Ariel_Sharon/1.jpg")  # 250x250
    dest = tmp_path / "out" / "crop.jpg"
    w, h = write_crop(src, Face(10, 20, 100, 100, 1.0), 0.2, str(dest))
    assert (w, h) == (10 + 100 + 20, 20 + 100 + 20)  # left clamped at 0, top clamped at 0
    w, h = write_crop(src, Face(200, 200, 100, 100, 1.0), 0.2, str(dest))
    assert (w, h) == (250 - 180, 250 - 180)  # right/bottom clamped
    assert [p.name for p in dest.parent.iterdir()] == ["crop.jpg"]  # no temp file left


def test_setup_weights_is_idempotent(tmp_path):
    first = faces.setup_weights(tmp_path)
    second = faces.setup_weights(tmp_path)
    assert first == second and all(p.is_symlink() and p.is_file() for p in first)
    assert faces.check_weights("Dlib", "dlib", tmp_path) == []
    assert faces.check_weights("Dlib", "opencv", tmp_path) == []


def test_missing_weights_fail_at_once_with_one_clear_line(tmp_path):
    missing = faces.check_weights("ArcFace", "yunet", tmp_path)
    assert len(missing) == 2 and "arcface_weights.onnx" in missing[0]
    assert "allow_weight_download" in missing[0]
    t = time.perf_counter()
    with pytest.raises(ModelWeightsMissing) as exc:
        init_worker(AnalysisSettings(model="ArcFace", deepface_home=str(tmp_path)))
    assert time.perf_counter() - t < 5
    msg = str(exc.value)
    assert "\n" not in msg and "ArcFace" in msg and str(tmp_path) in msg


def test_download_guard_covers_unlisted_files(tmp_path, settings):
    from deepface.commons import weight_utils

    faces.configure_environment(tmp_path)
    try:
        with pytest.raises(ModelWeightsMissing, match="some_new_model.onnx"):
            weight_utils.download_weights_if_necessary(
                "some_new_model.onnx", "https://example.invalid/x"
            )
    finally:
        faces.configure_environment(settings.deepface_home)


async def test_pool_analyzes_crops_and_leaves_no_worker(settings, testdata_dir, tmp_path):
    pool = AnalysisPool(settings, workers=1)
    try:
        a = await pool.analyze(str(testdata_dir / "people/Vladimir_Putin/1.jpg"))
        assert a.status == "ok" and a.embedding is not None
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"nope")
        assert (await pool.analyze(str(bad))).status == "unreadable"
        w, h = await pool.crop(
            str(testdata_dir / "people/Vladimir_Putin/1.jpg"),
            a.faces[0],
            0.2,
            str(tmp_path / "c.jpg"),
        )
        assert w > a.faces[0].w and (tmp_path / "c.jpg").is_file()
        pids = pool.pids()
        assert len(pids) == 1
    finally:
        pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
