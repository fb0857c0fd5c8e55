"""Migrations and queue semantics on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from facequeue.errors import LeaseLost, StoreError
from facequeue.store import MIGRATIONS_DIR, NewImage, NewPerson, SqliteStore, migration_files


def person(i: int, country: str = "Serbia") -> NewPerson:
    return NewPerson(name=f"Person {i}", slug=f"Person_{i}", country=country, source="manual")


@pytest.fixture
async def store(tmp_path):
    s = await SqliteStore.open(tmp_path / "fq.db")
    yield s
    await s.close()


async def test_migrations_from_empty_and_rerun_is_noop(tmp_path):
    s = await SqliteStore.open(tmp_path / "a.db")
    applied = await s.applied_migrations()
    assert [v for v, _, _ in applied] == [v for v, _, _ in migration_files()]
    assert await s.migrate() == []  # re-run: nothing to do
    await s.close()
    s = await SqliteStore.open(tmp_path / "a.db")  # reopen: still nothing applied twice
    assert len(await s.applied_migrations()) == len(migration_files())
    await s.close()
    con = sqlite3.connect(tmp_path / "a.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='view'")}
    assert {"queue_summary", "person_progress", "image_outcomes"} <= names


async def test_failed_migration_rolls_back_and_stays_pending(tmp_path):
    mig = tmp_path / "migrations"
    mig.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        (mig / path.name).write_text(path.read_text())
    (mig / "9999_broken.sql").write_text("CREATE TABLE ok_table (a INTEGER);\nNOT SQL AT ALL;\n")
    with pytest.raises(StoreError, match="9999_broken"):
        await SqliteStore.open(tmp_path / "b.db", migrations_dir=mig)
    con = sqlite3.connect(tmp_path / "b.db")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "ok_table" not in tables and "people" in tables
    assert 9999 not in {r[0] for r in con.execute("SELECT version FROM schema_migrations")}


async def test_add_people_dedups_by_slug_and_country(store):
    r1 = await store.add_people([person(1), person(2)])
    r2 = await store.add_people([person(1), person(1, "Croatia")])
    assert len(r1.added) == 2 and len(r2.added) == 1 and len(r2.skipped) == 1
    assert await store.queue_summary() == {"queued": 3}


async def test_claim_lease_heartbeat_expiry_and_reclaim(store):
    await store.add_people([person(1)])
    a = await store.claim("A", lease_s=0.3)
    assert a and a.state == "running" and a.lease_owner == "A"
    assert await store.claim("B", lease_s=0.3) is None  # leased: nobody else gets it
    assert await store.renew_leases("A", 0.3, [a.id]) == [a.id]
    await asyncio.sleep(0.5)
    b = await store.claim("B", lease_s=30)  # expired lease is reclaimed by a claim
    assert b and b.id == a.id and b.lease_owner == "B"
    with pytest.raises(LeaseLost):
        await store.advance_stage(a.id, "A", "download")  # A lost it
    await store.advance_stage(b.id, "B", "download")
    assert (await store.get_person(b.id)).stage == "download"
    await store.release(b.id, "B")
    c = await store.claim("C", lease_s=0.2)
    assert c.stage == "download"  # resumes after the stage recorded as done
    await asyncio.sleep(0.4)
    assert [r.id for r in await store.reclaim_expired()] == [c.id]
    assert (await store.get_person(c.id)).state == "queued"


async def test_retry_with_backoff_then_failed_then_retry_command(store):
    await store.add_people([person(1)])
    for attempt in range(1, 4):
        p = await store.claim("A", 30)
        assert p is not None, f"attempt {attempt} not claimable"
        state, attempts = await store.fail_attempt(
            p.id, "A", "boom", max_attempts=3, delay_s=0.0 if attempt < 2 else 0.3
        )
        assert attempts == attempt
        if attempt == 2:
            assert await store.claim("A", 30) is None  # backing off
            await asyncio.sleep(0.4)
    assert state == "failed"
    row = await store.get_person(p.id)
    assert row.state == "failed" and row.last_error == "boom" and row.attempts == 3
    assert await store.claim("A", 30) is None
    assert await store.retry_failed() == [p.id]
    again = await store.claim("A", 30)
    assert again.attempts == 0 and again.last_error is None


async def test_two_connections_never_claim_the_same_person(tmp_path):
    db = tmp_path / "two.db"
    s1, s2 = await SqliteStore.open(db), await SqliteStore.open(db)
    await s1.add_people([person(i) for i in range(40)])

    async def grab(s, owner):
        got = []
        while (p := await s.claim(owner, 60)) is not None:
            got.append(p.id)
        return got

    g1, g2 = await asyncio.gather(grab(s1, "one"), grab(s2, "two"))
    assert sorted(g1 + g2) == sorted(set(g1 + g2)) and len(g1 + g2) == 40
    await s1.close()
    await s2.close()


async def test_rejected_image_needs_a_reason(store):
    await store.add_people([person(1)])
    p = await store.claim("A", 30)
    await store.insert_images([NewImage(person_id=p.id, provider="t", rank=1, url="http://x/1")])
    img = (await store.images_of(p.id))[0]
    with pytest.raises(sqlite3.IntegrityError):
        await store.reject_image(img.id, reason=None, detail=None)


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_no_transaction_open(tmp_path):
    """Cancelled while its BEGIN IMMEDIATE waits in SQLite's busy handler (another process
    holds the write lock), the BEGIN still completes on aiosqlite's thread; the store must
    roll it back, or every later write fails with 'cannot start a transaction within a
    transaction' (a full disk made the downloader cancel writes just like this)."""
    s = await SqliteStore.open(tmp_path / "fq.db")
    try:
        other = sqlite3.connect(tmp_path / "fq.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        write = asyncio.create_task(s.add_people([person(1)]))
        await asyncio.sleep(0.3)  # the store's BEGIN now waits in the busy handler
        write.cancel()
        other.execute("COMMIT")  # the waiting BEGIN goes through on the store's thread
        with pytest.raises(asyncio.CancelledError):
            await write
        added = await s.add_people([person(2)])
        assert len(added.added) == 1
        assert await s.queue_summary() == {"queued": 1}
        other.close()
    finally:
        await s.close()
