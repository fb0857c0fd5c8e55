"""Gallery promotion, leave-one-out self-test, recognition (real Dlib embeddings of the corpus).

People and accepted images are inserted straight into a tmp database, with crops cut from the
corpus into tmp_path and embeddings computed once per session by analyze.py (in-process)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facequeue import layout
from facequeue.config import Config
from facequeue.stages import gallery
from facequeue.store import NewPerson, Person, SqliteStore
from facequeue.vision.analyze import AnalysisSettings, analyze_image, write_crop
from facequeue.vision.recognize import (
    GalleryIndex,
    Identity,
    brute_force_search,
    embed_faces,
    name_faces,
    pairwise,
)

pytestmark = pytest.mark.model

PEOPLE = [
    "Colin_Powell",
    "George_W_Bush",
    "Laura_Bush",
    "Kofi_Annan",
    "Tony_Blair",
    "Condoleezza_Rice",
    "Barack_Obama",
]


@pytest.fixture(scope="session")
def weights_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deepface")


@pytest.fixture(scope="session")
def settings(weights_home) -> AnalysisSettings:
    return AnalysisSettings(deepface_home=str(weights_home))


@pytest.fixture(scope="session")
def analyzed(testdata_dir, settings) -> dict[str, list[tuple[Path, object]]]:
    """identity -> [(photo, FaceAnalysis)] for a few corpus people (once per session)."""
    out = {}
    for who in PEOPLE:
        photos = sorted((testdata_dir / "people" / who).iterdir())
        out[who] = [(p, analyze_image(str(p), settings)) for p in photos]
        assert all(a.status == "ok" for _, a in out[who]), who
    return out


def make_cfg(tmp_path: Path, weights_home: Path, **gallery_cfg) -> Config:
    return Config(
        data_dir=tmp_path / "data",
        analysis={"deepface_home": str(weights_home)},
        gallery=gallery_cfg or {},
    )


async def add_person(
    cfg: Config,
    store: SqliteStore,
    name: str,
    items,
    country: str = "Côte d'Ivoire",
    slug: str | None = None,
) -> Person:
    """A curated person: one accepted image row per (photo, analysis), with a real crop."""
    slug = slug or name.replace(" ", "_")
    res = await store.add_people([NewPerson(name=name, slug=slug, country=country)])
    person = await store.get_person(res.added[0])
    folder = layout.faces_dir(cfg, person)
    for rank, (photo, fa) in enumerate(items):
        crop = folder / f"{slug}_{rank}.jpg"
        write_crop(str(photo), fa.main_face, 0.2, str(crop))
        await store.conn.execute(
            "INSERT INTO images (person_id, provider, rank, url, state, embedding, crop_path, "
            "is_reference, distance, raw_path) "
            "VALUES (?, 'folder', ?, ?, 'accepted', ?, ?, ?, ?, NULL)",
            (
                person.id,
                rank,
                f"file://{photo}#{rank}",
                fa.embedding,
                layout.relative(cfg, crop),
                int(rank < 3),
                0.1 * rank,
            ),
        )
    return person


def gallery_rows(db: Path, person_id: int) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, image_id, path, sha256 FROM gallery_images "
            "WHERE person_id = ? ORDER BY image_id",
            (person_id,),
        ).fetchall()


def summary(db: Path) -> dict[str, dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["person"]: dict(r) for r in conn.execute("SELECT * FROM gallery_summary")}


async def test_promote_is_idempotent_and_crash_safe(tmp_path, weights_home, analyzed):
    cfg = make_cfg(tmp_path, weights_home)
    store = await SqliteStore.open(cfg.db_path)
    try:
        colin = await add_person(cfg, store, "Colin Powell", analyzed["Colin_Powell"])
        assert await gallery.promote_person(cfg, store, colin) == ("promoted", None)

        folder = cfg.gallery_dir / "Colin_Powell__Cote_dIvoire"
        files = sorted(p.name for p in folder.iterdir())
        rows = gallery_rows(cfg.db_path, colin.id)
        assert len(files) == len(rows) == 6
        assert all(
            f.startswith("Colin_Powell_") and f.endswith(".jpg") and f.isascii() for f in files
        )
        assert {Path(r[2]).name for r in rows} == set(files)
        stats = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}

        # again: same files (not rewritten), same rows
        assert await gallery.promote_person(cfg, store, colin) == ("promoted", None)
        assert gallery_rows(cfg.db_path, colin.id) == rows
        assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()} == stats

        # a crash after the files were written but before the rows: a file without its row,
        # and a leftover temp file. The re-run restores exactly the same state.
        await store.conn.execute("DELETE FROM gallery_images WHERE image_id = ?", (rows[0][1],))
        (folder / ".Colin_Powell_99.jpg.123.tmp").write_bytes(b"partial")
        (folder / "stray.jpg").write_bytes(b"not ours")
        assert await gallery.promote_person(cfg, store, colin) == ("promoted", None)
        assert sorted(p.name for p in folder.iterdir()) == files
        assert [r[1:] for r in gallery_rows(cfg.db_path, colin.id)] == [r[1:] for r in rows]
        # DeepFace can use the gallery folder as db_path: plain image files, one folder per identity
        assert summary(cfg.db_path)["Colin Powell"]["images"] == 6
    finally:
        await store.close()


async def test_insufficient_and_duplicate_bytes(tmp_path, weights_home, analyzed):
    cfg = make_cfg(tmp_path, weights_home)
    store = await SqliteStore.open(cfg.db_path)
    try:
        obama = await add_person(cfg, store, "Barack Obama", analyzed["Barack_Obama"], "USA")
        assert await gallery.promote_person(cfg, store, obama) == (
            "insufficient",
            "4 accepted faces, need more than 5",
        )
        five = await add_person(cfg, store, "Tony Blair", analyzed["Tony_Blair"][:5], "UK")
        assert await gallery.promote_person(cfg, store, five) == (
            "insufficient",
            "5 accepted faces, need more than 5",
        )
        assert not cfg.gallery_dir.exists() or not any(cfg.gallery_dir.iterdir())

        # 6 accepted rows but two crops are the same bytes: one file, so 5 distinct -> insufficient
        items = analyzed["Condoleezza_Rice"][:5] + analyzed["Condoleezza_Rice"][:1]
        condi = await add_person(cfg, store, "Condoleezza Rice", items, "USA")
        crops = sorted((layout.faces_dir(cfg, condi)).iterdir())
        assert len({p.read_bytes() for p in crops}) == 5
        state, reason = await gallery.promote_person(cfg, store, condi)
        assert state == "insufficient" and reason.startswith("5 distinct accepted faces")

        # with the sixth distinct image: promoted, and the duplicate still enters once
        extra = await add_person(
            cfg, store, "Condoleezza Rice", analyzed["Condoleezza_Rice"] + items[-1:], "USA2"
        )
        assert (await gallery.promote_person(cfg, store, extra))[0] == "promoted"
        rows = gallery_rows(cfg.db_path, extra.id)
        assert len(rows) == 6 and len({r[3] for r in rows}) == 6
    finally:
        await store.close()


async def test_self_test_recognition_and_forget(
    tmp_path, weights_home, analyzed, testdata_dir, settings
):
    cfg = make_cfg(tmp_path, weights_home)
    store = await SqliteStore.open(cfg.db_path)
    try:
        people = {}
        for who in ["Colin_Powell", "George_W_Bush", "Laura_Bush", "Kofi_Annan", "Tony_Blair"]:
            people[who] = await add_person(cfg, store, who.replace("_", " "), analyzed[who], "USA")
            assert (await gallery.promote_person(cfg, store, people[who]))[0] == "promoted"
        s = summary(cfg.db_path)
        for who in people:
            row = s[who.replace("_", " ")]
            assert row["self_test_top1"] == 1.0 and row["margin"] > 0 and not row["flagged"], row

        # mislabelled: "Condoleezza Rice" whose gallery holds 2 photos of Colin Powell
        mixed = analyzed["Condoleezza_Rice"][:4] + analyzed["Colin_Powell"][:2]
        condi = await add_person(cfg, store, "Condoleezza Rice", mixed, "USA")
        assert (await gallery.promote_person(cfg, store, condi))[0] == "promoted"
        row = summary(cfg.db_path)["Condoleezza Rice"]
        assert row["flagged"] and row["self_test_top1"] == pytest.approx(4 / 6, abs=1e-3)
        assert "Colin Powell" in row["flag_reason"] and "mislabelled" in row["flag_reason"]

        # duplicated identity: the same person queued twice under another spelling
        dup = await add_person(
            cfg, store, "G. W. Bush", analyzed["George_W_Bush"], "USA", slug="G_W_Bush"
        )
        assert (await gallery.promote_person(cfg, store, dup))[0] == "promoted"
        s = summary(cfg.db_path)
        assert s["G. W. Bush"]["flagged"] and "duplicate" in s["G. W. Bush"]["flag_reason"]
        assert s["George W Bush"]["flagged"], "the identity it duplicates is re-tested and flagged"

        # recognition of a group photo from stored embeddings
        index = await gallery.load_index(cfg, store)
        assert index.people == 7 and len(index) == 6 * 7
        photo = embed_faces(str(testdata_dir / "multi" / "lfw_Laura_Bush_0011.jpg"), settings)
        names = {r.label for r in name_faces(index, photo)}
        assert "Laura Bush" in names and ({"George W Bush", "G. W. Bush"} & names)
        stranger = embed_faces(str(testdata_dir / "people" / "Tom_Cruise" / "1.jpg"), settings)
        [r] = name_faces(index, stranger)
        assert r.label == "unknown" and r.distance > index.threshold and len(r.matches) == 3

        # forget: folder and rows gone; the person it duplicated is re-tested and clean again
        await gallery.forget_person(cfg, store, dup)
        assert not (cfg.gallery_dir / layout.person_folder(dup)).exists()
        assert gallery_rows(cfg.db_path, dup.id) == []
        s = summary(cfg.db_path)
        assert "G. W. Bush" not in s and not s["George W Bush"]["flagged"]
        assert s["George W Bush"]["self_test_top1"] == 1.0
    finally:
        await store.close()


def test_recognize_cli_json(tmp_path, weights_home, analyzed, testdata_dir):
    cfg = make_cfg(tmp_path, weights_home)

    async def setup():
        store = await SqliteStore.open(cfg.db_path)
        try:
            for who in ["Kofi_Annan", "Laura_Bush", "George_W_Bush"]:
                p = await add_person(cfg, store, who.replace("_", " "), analyzed[who], "USA")
                await gallery.promote_person(cfg, store, p)
        finally:
            await store.close()

    asyncio.run(setup())
    toml = tmp_path / "facequeue.toml"
    toml.write_text(f'data_dir = "data"\n[analysis]\ndeepface_home = "{weights_home}"\n')
    from facequeue.cli import main

    photo = testdata_dir / "multi" / "lfw_Kofi_Annan_0010.jpg"
    res = CliRunner().invoke(
        main,
        ["--config", str(toml), "recognize", str(photo), "--json", "--top", "2"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["status"] == "ok" and len(out["faces"]) >= 2
    assert out["faces"][0]["name"] == "Kofi Annan"
    assert 50 < out["faces"][0]["confidence"] <= 100
    assert all(len(f["matches"]) <= 2 for f in out["faces"])
    assert any(f["name"] == "unknown" for f in out["faces"][1:])

    res = CliRunner().invoke(
        main, ["--config", str(toml), "recognize", str(photo)], catch_exceptions=False
    )
    assert res.exit_code == 0 and "Kofi Annan" in res.output

    res = CliRunner().invoke(main, ["--config", str(toml), "gallery"], catch_exceptions=False)
    assert res.exit_code == 0 and "Laura Bush" in res.output


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "euclidean_l2"])
def test_index_agrees_with_brute_force(metric):
    rng = np.random.default_rng(1)
    pids = rng.integers(1, 60, size=500)
    emb = rng.normal(size=(500, 128)).astype(np.float32)
    idents = {int(p): Identity(int(p), f"p{p}", "X") for p in set(pids.tolist())}
    index = GalleryIndex(
        pids, emb, [f"{i}.jpg" for i in range(500)], idents, metric, model="Dlib", threshold=0.6
    )
    pairs = list(zip(pids.tolist(), emb, strict=False))
    for q in rng.normal(size=(5, 128)).astype(np.float32):
        fast = [(m.person_id, m.distance) for m in index.search(q, top=5)]
        slow = brute_force_search(pairs, q, metric, top=5)
        assert [p for p, _ in fast] == [p for p, _ in slow]
        assert np.allclose([d for _, d in fast], [d for _, d in slow], atol=1e-3)
    d = pairwise(emb[:3], emb[:3], metric)
    assert np.allclose(np.diag(d), 0, atol=1e-3)
