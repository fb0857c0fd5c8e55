"""copy-db: SQLite -> PostgreSQL and back, every row and id kept; a non-empty target refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from facequeue.errors import InputError
from facequeue.store import Curated, GalleryEntry, GalleryFile, NewImage, NewPerson
from facequeue.store.copy import TABLES, copy_database, open_target
from facequeue.store.postgres import PgStore
from facequeue.store.sqlite import SqliteStore


async def fill(store) -> None:
    """People in several states, images with embeddings, a gallery identity; ids with gaps."""
    people = [
        NewPerson(name=f"Pérson {i}", slug=f"Person_{i}", country="Serbia", source="csv")
        for i in range(6)
    ]
    added = (await store.add_people(people)).added
    await store.delete_person(added[0])  # a gap in the ids must survive the copy
    p = await store.claim("A", 30)
    await store.insert_images(
        [
            NewImage(
                person_id=p.id,
                provider="wikimedia",
                rank=n,
                url=f"http://img/{n}.jpg",
                page_url=f"http://page/{n}",
                title=f"Титл {n}",
                license="CC BY",
                author="Ана",
                width=800,
                height=600,
            )
            for n in range(5)
        ]
    )
    imgs = await store.images_of(p.id)
    await store.record_curation(
        [
            Curated(
                id=img.id,
                state="accepted" if n < 3 else "rejected",
                reason=None if n < 3 else "not_same_person",
                detail=None,
                is_reference=int(n == 0),
                distance=0.1 * n + 1e-9,
                quality=0.5,
                crop_path=f"faces/x/{n}.jpg" if n < 3 else None,
            )
            for n, img in enumerate(imgs)
        ]
    )
    await store.finish(p.id, "A", "promoted", None)
    await store.save_gallery(
        GalleryEntry(p.id, "gallery/Person_1__Serbia", 3, "Dlib", "cosine", 0.07),
        [
            GalleryFile(
                image_id=img.id,
                rel_path=f"gallery/Person_1__Serbia/{n}.jpg",
                sha256=f"{n:064d}",
                embedding=bytes([n]) * 512,
                is_reference=int(n == 0),
            )
            for n, img in enumerate(imgs[:3])
        ],
    )
    q = await store.claim("B", 30)
    await store.fail_attempt(q.id, "B", "boom", max_attempts=1, delay_s=0)


async def dump(store) -> dict[str, list[tuple]]:
    out = {}
    for table, key in TABLES:
        rows = await store._all(f"SELECT * FROM {table} ORDER BY {key}")
        out[table] = [tuple(r) for r in rows]
    return out


@pytest.mark.parametrize("direction", ["sqlite_to_pg", "pg_to_sqlite"])
async def test_copy_keeps_every_row_and_id(tmp_path, pg_url, direction):
    lite_path = tmp_path / "fq.db"
    if direction == "sqlite_to_pg":
        source, target_url = await SqliteStore.open(lite_path), pg_url
    else:
        source, target_url = await PgStore.open(pg_url), str(lite_path)
    await fill(source)
    target = await open_target(target_url)
    result = await copy_database(source, target)
    assert result.rows["people"] == 5 and result.rows["gallery_images"] == 3
    assert await dump(target) == await dump(source)
    # New rows continue after the copied ids (PostgreSQL identity sequences are moved on).
    new = await target.add_people(
        [NewPerson(name="New One", slug="New_One", country="Serbia", source="manual")]
    )
    assert new.added[0] > max(r[0] for r in (await dump(source))["people"])
    with pytest.raises(InputError, match="not empty .*6 people"):
        await copy_database(source, target)
    await target.close()
    await source.close()


@pytest.mark.slow  # one subprocess per command
def test_copy_db_command_refuses_a_non_empty_target_with_one_line(tmp_path, pg_url):
    cfg = tmp_path / "facequeue.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n')

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "facequeue", "--config", str(cfg), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert cli("add-person", "Ana Ivanović", "--country", "Serbia").returncode == 0
    first = cli("copy-db", pg_url)
    assert first.returncode == 0, first.stderr
    assert "people: 1 rows" in first.stdout
    again = cli("copy-db", pg_url)
    assert again.returncode != 0
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "not empty (1 people)" in lines[0], again.stderr
    bad = cli("copy-db", "mysql://x@y/z")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
