"""JSON sidecars and `facequeue metadata`: real DeepFace/dlib analysis on a few corpus images
(copied to tmp_path), schema validation, --force / --dry-run / re-run behaviour, bad files,
and the ITA skin-tone categories on synthetic CIELAB patches."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from facequeue.cli import main
from facequeue.stages import metadata
from facequeue.vision import attributes
from facequeue.vision.analyze import AnalysisSettings, Face

pytestmark = pytest.mark.model

SCHEMA = json.loads(
    (Path(metadata.__file__).parent.parent / "schemas" / "sidecar.schema.json").read_text()
)
GOOD = {  # corpus path -> name in the test folder
    "people/Colin_Powell/1.jpg": "face_20251101_220814_034_3a2c124f.jpg",
    "people/Serena_Williams/2.jpg": "serena.jpg",
    "people/Alex_Lacamoire/3.png": "alex_rgba.png",
    "noface/dlib_dogs.jpg": "dogs.jpg",
    "people/Kofi_Annan/1.jpg": "Кофи_Ánnan.jpg",  # non-ASCII path
}


def validate(doc: dict) -> None:
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())


def write_config(folder: Path) -> Path:
    cfg = folder / "facequeue.toml"
    cfg.write_text('data_dir = "data"\n[analysis]\nworkers = 2\n', encoding="utf-8")
    return cfg


def run(cfg: Path, *args: str):
    return CliRunner().invoke(
        main, ["--config", str(cfg), "metadata", *args], catch_exceptions=False
    )


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, testdata_dir) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("meta")
    images = root / "faces"
    images.mkdir()
    for src, name in GOOD.items():
        shutil.copyfile(testdata_dir / src, images / name)
    data = (testdata_dir / "people/Colin_Powell/2.jpg").read_bytes()
    (images / "corrupt.jpg").write_bytes(data[: len(data) // 3])
    (images / "empty.jpg").write_bytes(b"")
    return root, images


@pytest.fixture(scope="module")
def first_run(workdir):
    root, images = workdir
    cfg = write_config(root)
    result = run(cfg, str(images), "--yes")
    return cfg, images, result


def test_first_run_writes_valid_sidecars_and_reports_bad_files(first_run):
    cfg, images, result = first_run
    out = result.output
    assert result.exit_code == 1, out  # errors -> non-zero exit
    assert re.search(r"Total images found\s+7", out) and re.search(r"Errors\s+2", out)
    assert "corrupt.jpg" in out and "empty file" in out
    assert re.search(r"Metadata generated\s+5", out)
    assert not (images / "corrupt.json").exists() and not (images / "empty.json").exists()
    assert not list(images.glob(".*.tmp"))
    for name in GOOD.values():
        doc = json.loads((images / name).with_suffix(".json").read_text())
        validate(doc)
        assert doc["filename"] == name
        assert doc["source_url"] == metadata.RETROACTIVE_SOURCE
        assert doc["metadata_generated"]["retroactive"] is True
        # no age/gender weights here: nulls and a reason, never a guess
        assert doc["demographics"]["available"] is False and doc["demographics"]["reason"]
        assert (
            doc["face_features"]["estimated_sex"] is None
            and doc["face_features"]["age_group"] is None
        )
        assert doc["analysis"]["detector"] == "dlib" and doc["analysis"]["model"] == "Dlib"


def test_sidecar_content(first_run):
    _, images, _ = first_run
    powell = json.loads(
        (images / GOOD["people/Colin_Powell/1.jpg"]).with_suffix(".json").read_text()
    )
    assert powell["face_id"] == "20251101_220814_034"  # parsed from the seed-style name
    assert powell["download_date"] == "20251101 22:08:14"
    assert powell["queryable_attributes"]["has_face"] is True
    assert powell["face_features"]["faces_detected"] == 1
    assert powell["face_features"]["skin_tone"] in attributes.SKIN_TONES
    assert powell["skin"]["category"] == powell["queryable_attributes"]["skin_tone"]
    assert len(powell["face_features"]["dominant_colors"]) == 5
    assert powell["image_properties"] == {
        "width": 250,
        "height": 250,
        "format": "JPEG",
        "mode": "RGB",
    }
    dogs = json.loads((images / "dogs.json").read_text())
    assert (
        dogs["queryable_attributes"]["has_face"] is False
        and dogs["face_features"]["skin_tone"] is None
    )
    assert dogs["analysis"]["status"] == "no_face"
    alex = json.loads((images / "alex_rgba.json").read_text())
    assert (
        alex["image_properties"]["mode"] == "RGBA" and alex["image_properties"]["format"] == "PNG"
    )
    assert len(alex["face_id"]) == 19  # from the file time


def test_second_run_generates_nothing_and_dry_run_writes_nothing(first_run):
    cfg, images, _ = first_run
    for bad in ("corrupt.jpg", "empty.jpg"):
        (images / bad).unlink()
    before = snapshot(images)
    again = run(cfg, str(images), "--yes")
    assert again.exit_code == 0, again.output
    assert "Need metadata: 0" in again.output
    assert snapshot(images) == before

    (images / "serena.json").unlink()
    before = snapshot(images)
    for args in ([], ["--force"]):
        dry = run(cfg, str(images), "--dry-run", *args)
        assert dry.exit_code == 0, dry.output
        assert "serena.jpg" in dry.output
        assert snapshot(images) == before


def test_force_regenerates_and_keeps_provenance(first_run):
    cfg, images, _ = first_run
    side = images / "dogs.json"
    doc = json.loads(side.read_text())
    doc["source_url"] = "https://example.org/dogs.jpg"
    side.write_text(json.dumps(doc))
    old = {
        p.name: json.loads(p.read_text())["metadata_generated"]["generated_at"]
        for p in images.glob("*.json")
    }
    forced = run(cfg, str(images), "--force", "--yes")
    assert forced.exit_code == 0, forced.output
    assert "Need metadata: 5" in forced.output
    for p in images.glob("*.json"):
        new = json.loads(p.read_text())
        validate(new)
        if p.name in old:
            assert new["metadata_generated"]["generated_at"] != old[p.name]
    assert (images / "serena.json").exists()  # the missing one came back
    assert json.loads(side.read_text())["source_url"] == "https://example.org/dogs.jpg"


def test_confirmation_declined_writes_nothing(tmp_path, testdata_dir):
    images = tmp_path / "f"
    images.mkdir()
    shutil.copyfile(testdata_dir / "people/Colin_Powell/3.jpg", images / "a.jpg")
    cfg = write_config(tmp_path)
    result = CliRunner().invoke(main, ["--config", str(cfg), "metadata", str(images)], input="n\n")
    assert result.exit_code != 0
    assert not (images / "a.json").exists()


# --------------------------------------------------------------------------- build/write API


def test_build_sidecar_for_an_accepted_crop(tmp_path, testdata_dir):
    crop = tmp_path / "putin_20260101_000000_7.jpg"
    shutil.copyfile(testdata_dir / "people/Vladimir_Putin/1.jpg", crop)
    person = {"name": "Владимир Путин", "country": "Russia", "occupation": "politician"}
    row = {
        "url": "https://upload.example.org/putin.jpg",
        "page_url": "https://commons.example.org/File:P.jpg",
        "license": "CC BY 4.0",
        "author": "Kremlin.ru",
        "provider": "wikimedia",
        "sha256": "ab" * 32,
        "blur": 88.5,
        "distance": 0.31,
        "is_reference": 1,
        "created_at": "2026-01-01T10:20:30.123Z",
    }
    doc = metadata.build_sidecar(
        crop, analysis_of_crop=None, person=person, image_row=row, settings=AnalysisSettings()
    )
    validate(doc)
    assert doc["source_url"] == row["url"]
    assert doc["person"] == person
    assert doc["source"]["license"] == "CC BY 4.0" and doc["source"]["sha256"] == "ab" * 32
    assert (
        doc["analysis"]["distance_to_references"] == 0.31
        and doc["analysis"]["is_reference"] is True
    )
    assert doc["download_timestamp"].startswith("2026-01-01T10:20:30.123")
    assert doc["metadata_generated"]["retroactive"] is False
    path = metadata.write_sidecar(crop, doc)
    assert path == crop.with_suffix(".json")
    assert json.loads(path.read_text(encoding="utf-8"))["person"]["name"] == "Владимир Путин"


SEED_SAMPLE = {  # generate_missing_metadata.md's sample output (abridged)
    "filename": "face_20251101_220814_034_3a2c124f.jpg",
    "face_id": "20251101_220814_034",
    "download_timestamp": "2025-11-01T22:16:02.398397",
    "download_date": "20251101 22:08:14",
    "source_url": "unknown (generated retroactively)",
    "file_size_kb": 521.73,
    "queryable_attributes": {"brightness_level": "dark", "skin_tone": "medium"},
    "metadata_generated": {"generator": "generate_missing_metadata.py", "retroactive": True},
}


def test_force_over_a_seed_sidecar_keeps_its_provenance(tmp_path):
    img = tmp_path / "old.jpg"
    cv2.imwrite(str(img), np.full((20, 20, 3), 128, np.uint8))
    doc = metadata.build_sidecar(
        img,
        analysis_of_crop=None,
        person=None,
        image_row=None,
        settings=AnalysisSettings(),
        previous=SEED_SAMPLE,
    )
    validate(doc)
    assert doc["face_id"] == "20251101_220814_034" and doc["download_date"] == "20251101 22:08:14"
    assert doc["download_timestamp"] == "2025-11-01T22:16:02.398397"
    assert doc["queryable_attributes"]["skin_tone"] is None  # recomputed, not carried
    assert doc["person"] is None and doc["source"] is None


def test_invalid_sidecar_is_not_written(tmp_path):
    img = tmp_path / "x.jpg"
    cv2.imwrite(str(img), np.full((20, 20, 3), 128, np.uint8))
    doc = metadata.build_sidecar(
        img, analysis_of_crop=None, person=None, image_row=None, settings=AnalysisSettings()
    )
    doc["queryable_attributes"]["skin_tone"] = "medium"  # not an ITA category
    with pytest.raises(metadata.SidecarInvalid, match="skin_tone"):
        metadata.write_sidecar(img, doc)
    assert not img.with_suffix(".json").exists()


def test_same_base_name_is_an_error_not_an_overwrite(tmp_path):
    from facequeue.cli.metadata import plan

    for name in ("a.jpg", "a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    todo, have, errors = plan(metadata.scan_images(tmp_path), force=False)
    assert [p.name for p in todo] == ["a.jpg", "b.jpg"] and list(errors) == [tmp_path / "a.png"]


# --------------------------------------------------------------------------- attributes


def lab_patch(L: float, a: float, b: float, size: int = 40) -> np.ndarray:
    lab = np.full((size, size, 3), (L, a, b), np.float32)
    bgr = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    return np.clip(np.round(bgr * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "L,a,b,expected",
    [
        (82, 5, 12, "very_light"),  # ITA 69.4
        (70, 8, 20, "light"),  # 45.0
        (62, 10, 18, "intermediate"),  # 33.7
        (55, 12, 20, "tan"),  # 14.0
        (45, 14, 25, "brown"),  # -11.3
        (30, 12, 18, "dark"),  # -48.0
    ],
)
def test_ita_category_of_synthetic_patches(L, a, b, expected):
    want = math.degrees(math.atan((L - 50) / b))
    assert attributes.ita_category(want) == expected
    patch = lab_patch(L, a, b)
    got = attributes.skin_from_pixels(patch)
    assert got["category"] == expected
    assert abs(got["ita"] - want) < 2.0
    # the same through the face-box path: a face filling the image
    img = np.zeros((100, 100, 3), np.uint8)
    img[:] = lab_patch(L, a, b, 100)
    assert attributes.skin_tone(img, Face(0, 0, 100, 100, 1.0))["category"] == expected


def test_ita_bounds():
    cat = attributes.ita_category
    assert [cat(v) for v in (55.01, 55, 41.01, 41, 28.01, 28, 10.01, 10, -29.99, -30, -60)] == [
        "very_light",
        "light",
        "light",
        "intermediate",
        "intermediate",
        "tan",
        "tan",
        "brown",
        "brown",
        "dark",
        "dark",
    ]
    assert attributes.ita_degrees(50, 20) == 0.0
    assert attributes.ita_degrees(100, 0) == pytest.approx(90.0, abs=0.01)  # b* <= 0 clamped


def test_hair_colour_and_dominant_colours():
    img = np.zeros((200, 100, 3), np.uint8)
    img[:, :50] = (0, 0, 255)
    img[:, 50:] = (255, 0, 0)
    colours = attributes.dominant_colours(img, k=3)
    assert {tuple(c["bgr"]) for c in colours[:2]} == {(0, 0, 255), (255, 0, 0)}
    assert sum(c["fraction"] for c in colours) == pytest.approx(1.0, abs=1e-3)
    assert attributes.hair_label(10, 0, 0) == "black"
    assert attributes.hair_label(80, 0, 2) == "white"
    assert attributes.hair_label(70, 2, 30) == "blonde"
    # hair band above a face: dark pixels above a skin-coloured box
    face_img = np.zeros((200, 100, 3), np.uint8)
    face_img[100:] = lab_patch(65, 12, 18, 100)
    face_img[:100] = (20, 20, 20)
    hair = attributes.hair_colour(face_img, Face(10, 110, 80, 80, 1.0), [65, 12, 18])
    assert hair["label"] == "black"
    assert attributes.hair_colour(face_img, Face(10, 0, 80, 80, 1.0), None) is None  # no room above


def test_demographics_without_weights_is_null_with_reason_and_fast(tmp_path):
    t = time.perf_counter()
    got = attributes.demographics(np.zeros((64, 64, 3), np.uint8), tmp_path / "empty_home")
    assert time.perf_counter() - t < 1.0  # no download attempt
    assert got["available"] is False and got["age"] is None and got["sex"] is None
    assert "age_model_weights" in got["reason"]
    assert attributes.age_bucket(65) == "60+" and attributes.age_group(65) == "senior"
    assert attributes.age_bucket(25) == "20-29" and attributes.age_group(25) == "young_adult"
