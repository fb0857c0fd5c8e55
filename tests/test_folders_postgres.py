"""Migration 0004 (every person a folder of its own) on PostgreSQL: an existing database
upgrades in place exactly as test_folders.py shows for SQLite (real server)."""

from __future__ import annotations

import shutil

import psycopg

from facequeue.store import NewPerson
from facequeue.store.postgres import PG_MIGRATIONS_DIR, PgStore

OLD_ROWS = """
    INSERT INTO people (id, name, slug, country, source, state, stage)
    VALUES (1, 'Ariel Sharon', 'Ariel_Sharon', 'Israël', 'manual', 'promoted', 'done'),
           (2, 'Ariel Sharon', 'Ariel_Sharon', 'Israel', 'manual', 'promoted', 'done'),
           (3, 'Golda Meir', 'Golda_Meir', 'Israel', 'manual', 'promoted', 'done'),
           (4, 'Moshe Dayan', 'Moshe_Dayan', 'Israel', 'manual', 'queued', 'search');
    SELECT setval(pg_get_serial_sequence('people', 'id'), 4);
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
"""


async def test_existing_postgres_database_upgrades_in_place(tmp_path, pg_url):
    old = tmp_path / "old_migrations"
    old.mkdir()
    for name in ("0001_initial.sql", "0002_gallery.sql"):
        shutil.copy(PG_MIGRATIONS_DIR / name, old / name)
    store = await PgStore.open(pg_url, migrate=False)
    await store.migrate(old)
    await store.close()
    with psycopg.connect(pg_url) as con:
        con.execute(OLD_ROWS.encode())

    store = await PgStore.open(pg_url)  # the daemon/`migrate` applies the new migrations
    await store.close()
    with psycopg.connect(pg_url) as con:
        rows = con.execute("SELECT id, folder, state, stage FROM people ORDER BY id").fetchall()
        assert rows == [
            (1, "Ariel_Sharon__Israel", "queued", "curate"),  # shared a folder: curated again
            (2, "Ariel_Sharon__Israel__2", "queued", "curate"),
            (3, "Golda_Meir__Israel", "promoted", "done"),  # untouched
            (4, "Moshe_Dayan__p4", "queued", "search"),
        ]
        galleries = con.execute("SELECT person_id FROM gallery_people ORDER BY 1").fetchall()
        assert galleries == [(3,)]
    store = await PgStore.open(pg_url)  # new people never take a folder someone has
    try:
        added = await store.add_people([NewPerson("Golda Meïr", "Golda_Meir", "Israël")])
        person = await store.get_person(added.added[0])
        assert person.folder == f"Golda_Meir__Israel__{person.id}"
        again = await store.add_people([NewPerson("X Y", "X_Y", "Serbia")])
        assert (await store.get_person(again.added[0])).folder == "X_Y__Serbia"
    finally:
        await store.close()
