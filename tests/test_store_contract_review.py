"""The contract of the review and serve store methods, on SQLite and on PostgreSQL:
reviewer decisions, re-curation claims, the gallery's version stamp, metrics and health.

The PostgreSQL side runs against a real throwaway server (conftest.pg_cluster)."""

from __future__ import annotations

import asyncio
import re

import pytest
from test_store_contract import accepted, image, person

from facequeue.config import load_config
from facequeue.store import Analyzed, GalleryEntry, GalleryFile, connect

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(params=["sqlite", "postgres"])
def cfg(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    (tmp_path / "facequeue.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return load_config(tmp_path / "facequeue.toml", database_url=url)


@pytest.fixture
async def store(cfg):
    s = await connect(cfg)
    yield s
    await s.close()


def analyzed(face_path: str | None) -> Analyzed:
    return Analyzed("ok", None, "[]", 1, 10.0, 0.5, 0.2, b"e" * 16, "ff", "{}", face_path)


def files(pid: int, image_ids: list[int], tag: bytes = b"x") -> list[GalleryFile]:
    return [
        GalleryFile(i, f"gallery/{pid}/{i}.jpg", f"{i:064d}", tag * 8, int(n == 0))
        for n, i in enumerate(image_ids)
    ]


def entry(pid: int, n: int) -> GalleryEntry:
    return GalleryEntry(pid, f"gallery/{pid}", n, "Dlib", "cosine", 0.07)


async def test_review_decisions_recorded_replaced_cleared_and_forgotten(store):
    await store.add_people([person(1)])
    p = await store.claim("A", 30)
    await store.insert_images([image(p.id, n) for n in (1, 2)])
    a, b = (i.id for i in await store.images_of(p.id))
    await store.record_analysis(a, analyzed("faces/a.jpg"))
    assert await store.review_target(10_000_000) is None
    ta, tb = await store.review_target(a), await store.review_target(b)
    assert ta is not None and tb is not None
    assert (ta.image_id, ta.person_id, ta.state, ta.has_face) == (a, p.id, "analyzed", True)
    assert (tb.state, tb.has_face, tb.person_state, tb.person_stage) == (
        "pending",
        False,
        "running",
        "search",
    )

    await store.set_review(ta, "reject", "not him")
    await store.set_review(tb, "reject", None)
    reviews = await store.reviews_of(p.id)
    assert {i: (r.decision, r.note) for i, r in reviews.items()} == {
        a: ("reject", "not him"),
        b: ("reject", None),
    }
    assert all(ISO.match(r.reviewed_at) for r in reviews.values())
    await store.set_review(ta, "accept", "it is him after all")  # a new decision replaces
    assert (await store.reviews_of(p.id))[a].decision == "accept"
    with pytest.raises(ValueError):
        await store.set_review(ta, "maybe", None)
    shown = {i.id: (i.review, i.review_note) for i in await store.report_images(p.id)}
    assert shown == {a: ("accept", "it is him after all"), b: ("reject", None)}

    await store.set_review(tb, "clear", None)
    assert set(await store.reviews_of(p.id)) == {a}
    await store.delete_person(p.id)  # forget: the decisions go with the person
    assert await store.reviews_of(p.id) == {}


async def test_claim_for_recuration_only_of_analysed_people_at_rest(store):
    await store.add_people([person(1), person(2)])
    done = await store.claim("A", 30)
    fresh = await store.claim("A", 30)
    await store.release(fresh.id, "A")  # queued, still at search: nothing to re-curate
    assert await store.claim_for_recuration(done.id, "R", 30) is None  # A's lease holds
    await store.finish(done.id, "A", "promoted", None)
    again = await store.claim_for_recuration(done.id, "R", 30)
    assert again is not None
    assert (again.state, again.stage, again.lease_owner) == ("running", "curate", "R")
    assert await store.claim_for_recuration(done.id, "S", 30) is None  # R holds it now
    assert await store.claim_for_recuration(fresh.id, "R", 30) is None
    assert await store.claim_for_recuration(10_000_000, "R", 30) is None


async def test_gallery_version_stamp_follows_every_gallery_change(store):
    assert await store.gallery_version() == 0
    assert await store.gallery_changed_since(0) == []
    await store.add_people([person(1), person(2)])
    ids = {}
    for owner in ("A", "B"):
        p = await store.claim(owner, 30)
        await store.insert_images([image(p.id, n) for n in (1, 2, 3)])
        imgs = await store.images_of(p.id)
        await store.record_curation([accepted(i.id, f"faces/{p.id}/{i.rank}.jpg") for i in imgs])
        await store.finish(p.id, owner, "promoted", None)
        ids[p.id] = [i.id for i in imgs]
    p1, p2 = ids

    await store.save_gallery(entry(p1, 3), files(p1, ids[p1]))  # promotion
    v1 = await store.gallery_version()
    assert v1 > 0 and await store.gallery_changed_since(0) == [p1]
    assert await store.gallery_person_ids() == [p1]
    rows = await store.gallery_rows_of([p1])
    assert [(r.person_id, r.embedding, r.name, r.country) for r in rows] == [
        (p1, b"x" * 8, "Person 1", "Serbia")
    ] * 3
    assert rows[0].folder == f"gallery/{p1}" and rows[0].path == f"gallery/{p1}/{ids[p1][0]}.jpg"
    refs = await store.gallery_images_of_person(p1)
    assert [(r.image_id, r.is_reference) for r in refs][0] == (ids[p1][0], 1)

    await store.save_gallery(entry(p2, 3), files(p2, ids[p2]))
    v2 = await store.gallery_version()
    assert v2 > v1 and await store.gallery_changed_since(v1) == [p2]
    assert sorted(await store.gallery_person_ids()) == [p1, p2]
    assert {r.person_id for r in await store.gallery_rows_of([p1, p2])} == {p1, p2}
    assert await store.gallery_rows_of([]) == []

    await store.save_gallery(entry(p1, 2), files(p1, ids[p1][:2]))  # recurate: one image less
    v3 = await store.gallery_version()
    assert v3 > v2 and await store.gallery_changed_since(v2) == [p1]
    assert len(await store.gallery_rows_of([p1])) == 2

    await store.remove_from_gallery(p2)
    v4 = await store.gallery_version()
    assert v4 > v3 and await store.gallery_changed_since(v3) == [p2]
    assert await store.gallery_person_ids() == [p1]

    await store.delete_person(p1)  # forget: the cascade deletes the gallery rows, logged too
    assert await store.gallery_version() > v4
    assert await store.gallery_changed_since(v4) == [p1]
    assert await store.gallery_person_ids() == []
    assert await store.gallery_version() == await store.gallery_version()  # reads change nothing


async def test_gallery_changes_are_seen_by_another_connection_at_once(cfg, store):
    """The server and the daemon are different processes: a change committed by one
    connection moves the version another connection reads (no cache, no lag)."""
    other = await connect(cfg)
    try:
        await store.add_people([person(1)])
        p = await store.claim("A", 30)
        await store.insert_images([image(p.id, 1)])
        (img,) = await store.images_of(p.id)
        before = await other.gallery_version()
        await store.save_gallery(entry(p.id, 1), files(p.id, [img.id]))
        after = await other.gallery_version()
        assert after > before and await other.gallery_changed_since(before) == [p.id]
    finally:
        await other.close()


async def test_metrics_and_health_queries(store):
    assert await store.ping() is True
    assert await store.people_by_state() == {}
    assert await store.heartbeat_age_s() is None  # no daemon has ever run
    await store.add_people([person(1), person(2)])
    p = await store.claim("A", 30)
    await store.insert_images([image(p.id, n) for n in (1, 2)])
    b = (await store.images_of(p.id))[1].id
    await store.reject_image(b, "too_small", "50x50")
    assert await store.people_by_state() == {"queued": 1, "running": 1}
    assert sorted(await store.images_by_outcome()) == [
        ("pending", "", 1),
        ("rejected", "too_small", 1),
    ]
    await store.register_daemon("d1", 1, "host-a")
    age = await store.heartbeat_age_s()
    assert age is not None and 0 <= age < 3600
    await store.stop_daemon("d1")
    assert await store.heartbeat_age_s() is None  # stopped daemons do not count


async def test_postgres_gallery_versions_commit_in_order(pg_url):
    """Several daemons write the gallery at once on PostgreSQL. A sequence number drawn by a
    transaction still open must not be overtaken by a later one that commits first, or a
    server reading the newer version would never look back at the older change: the
    trigger's advisory lock makes the later writer wait until the earlier one commits."""
    import psycopg

    from facequeue.store.postgres import PgStore

    store = await PgStore.open(pg_url)
    try:
        await store.add_people([person(1), person(2)])
        pids = []
        for owner in ("A", "B"):
            p = await store.claim(owner, 30)
            await store.insert_images([image(p.id, 1)])
            (img,) = await store.images_of(p.id)
            await store.save_gallery(entry(p.id, 1), files(p.id, [img.id]))
            pids.append(p.id)
        p1, p2 = pids
        v0 = await store.gallery_version()
        async with await psycopg.AsyncConnection.connect(pg_url) as slow:
            await slow.execute("DELETE FROM gallery_images WHERE person_id = %s", (p1,))
            # `slow` holds its change uncommitted; another writer comes along
            fast = asyncio.create_task(store.remove_from_gallery(p2))
            await asyncio.sleep(0.5)
            assert not fast.done(), "a later gallery change committed before an earlier one"
            assert await store.gallery_version() == v0
            await slow.commit()
        await asyncio.wait_for(fast, 60)
        assert sorted(await store.gallery_changed_since(v0)) == [p1, p2]
    finally:
        await store.close()
