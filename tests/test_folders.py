"""Issue 12 item 6: no two people share a file or folder ("Israël" and "Israel" fold to one
ASCII name), and an existing data dir upgrades in place by a migration. Real CLI processes,
real local servers, real analysis; real SQLite for the migration."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from servers import fake_services
from test_end_to_end import cli, photos

from facequeue.store import MIGRATIONS_DIR, NewPerson, SqliteStore

pytestmark = [pytest.mark.slow, pytest.mark.model]


async def test_two_people_whose_country_folds_alike_never_share_a_folder(tmp_path, testdata_dir):
    async with fake_services(testdata_dir) as svc:
        urls = [svc.images.face_url(p) for p in photos(testdata_dir, "Colin Powell")]
        svc.mediawiki.results["Ariel Sharon politician"] = urls
        cfg = tmp_path / "facequeue.toml"
        cfg.write_text(f"""
data_dir = "data"
[queue]
poll_s = 0.2
[wikimedia]
api_url = "{svc.wikimedia_url}"
[download]
allow_private_addresses = true
[analysis]
deepface_home = "{tmp_path / "deepface"}"
[gallery]
min_images = 3
""")
        for country in ("Israël", "Israel"):
            code, _, err = await cli(
                cfg, "add-person", "Ariel Sharon", "-c", country, "-o", "politician"
            )
            assert code == 0, err
        code, _, err = await cli(cfg, "run", "--once")
        assert code == 0, err[-3000:]

    data = tmp_path / "data"
    db = sqlite3.connect(data / "facequeue.db")
    people = db.execute("SELECT id, state, folder FROM people ORDER BY id").fetchall()
    assert [p[1] for p in people] == ["promoted", "promoted"], people
    assert people[0][2] != people[1][2]
    galleries = db.execute("SELECT folder FROM gallery_people ORDER BY person_id").fetchall()
    assert len({g[0] for g in galleries}) == 2

    def files_of(pid: int) -> list[str]:
        rows = db.execute(
            "SELECT crop_path FROM images WHERE person_id = ? AND crop_path IS NOT NULL "
            "UNION ALL SELECT path FROM gallery_images WHERE person_id = ?",
            (pid, pid),
        ).fetchall()
        return [r[0] for r in rows]

    first, second = people[0][0], people[1][0]
    assert files_of(first) and files_of(second)
    assert not set(files_of(first)) & set(files_of(second))
    for pid in (first, second):  # curating the second deleted none of the first's crops
        assert all((data / f).is_file() for f in files_of(pid)), pid

    code, _, err = await cli(cfg, "forget", str(second), "--yes")
    assert code == 0, err
    assert all((data / f).is_file() for f in files_of(first))  # the other one is intact
    assert (data / galleries[0][0]).is_dir()


async def test_existing_data_dir_upgrades_in_place(tmp_path):
    old = tmp_path / "old_migrations"
    old.mkdir()
    for name in ("0001_initial.sql", "0002_gallery.sql"):
        shutil.copy(MIGRATIONS_DIR / name, old / name)
    db = tmp_path / "facequeue.db"
    store = await SqliteStore.open(db, migrations_dir=old)
    await store.close()
    con = sqlite3.connect(db)
    con.executescript("""
        INSERT INTO people (id, name, slug, country, source, state, stage)
        VALUES (1, 'Ariel Sharon', 'Ariel_Sharon', 'Israël', 'manual', 'promoted', 'done'),
               (2, 'Ariel Sharon', 'Ariel_Sharon', 'Israel', 'manual', 'promoted', 'done'),
               (3, 'Golda Meir', 'Golda_Meir', 'Israel', 'manual', 'promoted', 'done'),
               (4, 'Moshe Dayan', 'Moshe_Dayan', 'Israel', 'manual', 'queued', 'search');
        INSERT INTO images (person_id, provider, rank, url, state, face_path, crop_path)
        VALUES (1, 't', 1, 'u1', 'accepted', 'candidates/Ariel_Sharon__Israel/1.jpg',
                'faces/Ariel_Sharon__Israel/Ariel_Sharon_x_1.jpg'),
               (2, 't', 1, 'u2', 'accepted', 'candidates/Ariel_Sharon__Israel/2.jpg',
                'faces/Ariel_Sharon__Israel/Ariel_Sharon_x_2.jpg'),
               (3, 't', 1, 'u3', 'accepted', 'candidates/Golda_Meir__Israel/3.jpg',
                'faces/Golda_Meir__Israel/Golda_Meir_x_3.jpg');
        INSERT INTO gallery_people (person_id, folder, images, model, metric, threshold)
        VALUES (2, 'gallery/Ariel_Sharon__Israel', 1, 'Dlib', 'euclidean', 0.6),
               (3, 'gallery/Golda_Meir__Israel', 1, 'Dlib', 'euclidean', 0.6);
    """)
    con.commit()
    con.close()

    store = await SqliteStore.open(db)  # the daemon/`migrate` applies the new migrations
    await store.close()
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, folder, state, stage FROM people ORDER BY id").fetchall()
    assert rows == [
        (1, "Ariel_Sharon__Israel", "queued", "curate"),  # shared a folder: curated again
        (2, "Ariel_Sharon__Israel__2", "queued", "curate"),
        (3, "Golda_Meir__Israel", "promoted", "done"),  # untouched
        (4, "Moshe_Dayan__p4", "queued", "search"),
    ]
    # The second one's gallery rows pointed into the shared folder: promotion writes them anew.
    assert con.execute("SELECT person_id FROM gallery_people ORDER BY 1").fetchall() == [(3,)]
    con.close()
    # New people never take a folder someone has.
    store = await SqliteStore.open(db)
    try:
        added = await store.add_people([NewPerson("Golda Meïr", "Golda_Meir", "Israël")])
        person = await store.get_person(added.added[0])
        assert person.folder == f"Golda_Meir__Israel__{person.id}"
        again = await store.add_people([NewPerson("X Y", "X_Y", "Serbia")])
        assert (await store.get_person(again.added[0])).folder == "X_Y__Serbia"
    finally:
        await store.close()
