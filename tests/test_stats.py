"""`facequeue stats DIR|--db`: counts from sidecars, --json, --plot (real SQLite for --db)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from facequeue.cli import main
from facequeue.stages import metadata
from facequeue.store import Curated, NewImage, NewPerson, SqliteStore
from facequeue.vision.analyze import AnalysisSettings

PEOPLE = {  # folder -> list of (sex, age_group, skin_tone, quality)
    "ana": [("female", "adult", "light", "high")] * 3 + [("female", None, "tan", "medium")],
    "bob": [("male", "senior", "brown", "low")] * 2,
    "cem": [(None, None, None, "low")],
}


def make_sidecar(img: Path, attrs, person: dict | None = None) -> None:
    cv2.imwrite(str(img), np.full((32, 32, 3), 90, np.uint8))
    sex, age, skin, quality = attrs
    doc = metadata.build_sidecar(
        img, analysis_of_crop=None, person=person, image_row=None, settings=AnalysisSettings()
    )
    doc["queryable_attributes"].update(
        sex=sex, age_group=age, skin_tone=skin, image_quality=quality
    )
    metadata.write_sidecar(img, doc)


def build_folder(root: Path) -> None:
    for folder, items in PEOPLE.items():
        (root / folder).mkdir(parents=True)
        for i, attrs in enumerate(items):
            person = (
                {"name": folder.title(), "country": "Chile", "occupation": None}
                if folder == "ana"
                else None
            )
            make_sidecar(root / folder / f"{i}.jpg", attrs, person)
    (root / "notes.json").write_text("[1, 2]")  # not a sidecar: skipped


def test_stats_of_a_folder_json_table_and_plot(tmp_path):
    root = tmp_path / "faces"
    build_folder(root)
    runner = CliRunner()
    res = runner.invoke(
        main,
        ["stats", str(root), "--json", "--plot", str(tmp_path / "c.png")],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats["images"] == 7 and stats["people"] == 3
    assert stats["person"] == {"Ana": 4, "bob": 2, "cem": 1}  # sidecar name, else folder
    assert stats["country"] == {"Chile": 4, "unknown": 3}
    assert stats["sex"] == {"female": 4, "male": 2, "unknown": 1}
    assert stats["age_group"]["adult"] == 3 and stats["age_group"]["unknown"] == 2
    assert stats["skin_tone"] == {"light": 3, "brown": 2, "tan": 1, "unknown": 1}
    assert stats["image_quality"] == {"low": 3, "high": 3, "medium": 1}
    hist = {h["images"]: h["people"] for h in stats["images_per_person"]}
    assert hist["1"] == 1 and hist["2-4"] == 2 and hist["40+"] == 0
    assert any("not sidecars" in n for n in stats["notes"])
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = runner.invoke(main, ["stats", str(root)], catch_exceptions=False)
    assert table.exit_code == 0
    for word in ("Skin tone (ITA)", "Quality level", "Images per person", "Chile"):
        assert word in table.output


def test_stats_needs_dir_or_db(tmp_path):
    res = CliRunner().invoke(main, ["stats"])
    assert res.exit_code != 0


def test_stats_from_the_database(tmp_path):
    cfg = tmp_path / "facequeue.toml"
    cfg.write_text('data_dir = "data"\n', encoding="utf-8")
    asyncio.run(fill_db(tmp_path / "data"))
    res = CliRunner().invoke(
        main, ["--config", str(cfg), "stats", "--db", "--json"], catch_exceptions=False
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats["images"] == 2 and stats["people"] == 1
    assert stats["person"] == {"Ana Tijoux": 2, "Бора Ђорђевић": 0}
    assert stats["images_per_person"][:2] == [
        {"images": "0", "people": 1},
        {"images": "1", "people": 0},
    ]
    assert stats["country"] == {"Chile": 2}
    assert stats["sex"] == {"female": 1, "unknown": 1}
    assert stats["people_without_images"] == 1
    assert any("no readable sidecar" in n for n in stats["notes"])


async def fill_db(data: Path) -> None:
    """Two people; Ana has 2 accepted crops (one with a sidecar) and 1 rejected image."""
    store = await SqliteStore.open(data / "facequeue.db")
    try:
        added = await store.add_people(
            [
                NewPerson("Ana Tijoux", "ana-tijoux", "Chile", "musician"),
                NewPerson("Бора Ђорђевић", "bora-djordjevic", "Serbia"),
            ]
        )
        ana, bora = added.added
        await store.insert_images(
            [
                NewImage(person_id=ana, provider="folder", rank=i, url=f"/p/{i}.jpg")
                for i in range(3)
            ]
        )
        rows = await store.images_of(ana)
        updates = []
        for i, row in enumerate(rows):
            crop = f"faces/ana/{i}.jpg"
            accepted = i < 2
            if accepted:
                (data / "faces/ana").mkdir(parents=True, exist_ok=True)
                if i == 0:  # the second accepted crop has no sidecar
                    make_sidecar(data / crop, ("female", "adult", "intermediate", "high"))
            updates.append(
                Curated(
                    id=row.id,
                    state="accepted" if accepted else "rejected",
                    reason=None if accepted else "no_face",
                    detail=None,
                    is_reference=0,
                    distance=0.2,
                    quality=1.0,
                    crop_path=crop if accepted else None,
                    face_index=0 if accepted else None,
                    embedding=None,
                )
            )
        await store.record_curation(updates)
    finally:
        await store.close()
