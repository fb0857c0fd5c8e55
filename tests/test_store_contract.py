"""One contract, two backends: the queue and image semantics on SQLite and on PostgreSQL.

The PostgreSQL side runs against a real throwaway server (conftest.pg_cluster)."""

from __future__ import annotations

import asyncio

import pytest

from facequeue.config import load_config
from facequeue.errors import LeaseLost
from facequeue.store import (
    Analyzed,
    Curated,
    Downloaded,
    GalleryEntry,
    GalleryFile,
    NewImage,
    NewPerson,
    SelfTest,
    connect,
)


def person(i: int, country: str = "Serbia", **kw) -> NewPerson:
    return NewPerson(name=f"Person {i}", slug=f"Person_{i}", country=country, source="manual", **kw)


def accepted(image_id: int, crop: str, distance: float = 0.1) -> Curated:
    return Curated(
        id=image_id,
        state="accepted",
        reason=None,
        detail=None,
        is_reference=True,
        distance=distance,
        quality=0.9,
        crop_path=crop,
    )


def image(pid: int, n: int) -> NewImage:
    return NewImage(person_id=pid, provider="t", rank=n, url=f"http://x/{n}")


@pytest.fixture(params=["sqlite", "postgres"])
def cfg(request, tmp_path):
    """A config for each backend; PostgreSQL gets a fresh database on the session cluster."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    (tmp_path / "facequeue.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return load_config(tmp_path / "facequeue.toml", database_url=url)


@pytest.fixture
async def store(cfg):
    s = await connect(cfg)
    yield s
    await s.close()


async def test_migrations_are_recorded_and_rerun_is_noop(cfg):
    s = await connect(cfg)
    versions = [v for v, _, _ in await s.applied_migrations()]
    assert versions[:2] == [1, 2]
    assert await s.migrate() == []
    await s.close()
    s = await connect(cfg)
    assert [v for v, _, _ in await s.applied_migrations()] == versions
    await s.close()


async def test_add_people_dedups_by_slug_country_and_wikidata(store):
    r1 = await store.add_people([person(1), person(2, wikidata_id="Q1")])
    r2 = await store.add_people([person(1), person(1, "Croatia"), person(3, wikidata_id="Q1")])
    assert len(r1.added) == 2 and len(r2.added) == 1 and len(r2.skipped) == 2
    assert await store.queue_summary() == {"queued": 3}
    found = await store.find_people("person 1")
    assert {p.country for p in found} == {"Serbia", "Croatia"}
    assert [p.id for p in await store.find_people(str(r1.added[0]))] == [r1.added[0]]
    assert await store.slug_holder("Person_2", "Serbia") == (True, "Q1")
    assert await store.slug_holder("Person_1", "Serbia") == (True, None)
    assert await store.slug_holder("Person_2", "Croatia") == (False, None)


async def test_claim_lease_heartbeat_expiry_and_reclaim(store):
    await store.add_people([person(1)])
    a = await store.claim("A", lease_s=0.3)
    assert a and a.state == "running" and a.lease_owner == "A"
    assert await store.claim("B", lease_s=0.3) is None
    assert await store.still_own(a.id, "A") and not await store.still_own(a.id, "B")
    assert await store.renew_leases("A", 0.3, [a.id]) == [a.id]
    await asyncio.sleep(0.5)
    b = await store.claim("B", lease_s=30)  # a dead owner's lease is taken over
    assert b and b.id == a.id and b.lease_owner == "B"
    with pytest.raises(LeaseLost):
        await store.advance_stage(a.id, "A", "download")
    with pytest.raises(LeaseLost):
        await store.finish(a.id, "A", "promoted", None)
    await store.advance_stage(b.id, "B", "download")
    assert (await store.get_person(b.id)).stage == "download"
    await store.release(b.id, "B")
    c = await store.claim("C", lease_s=0.2)
    assert c.stage == "download"
    await asyncio.sleep(0.4)
    assert [r.id for r in await store.reclaim_expired()] == [c.id]
    assert (await store.get_person(c.id)).state == "queued"
    d = await store.claim("D", lease_s=30)
    await store.finish(d.id, "D", "promoted", None)
    rest = await store.people_at_rest()
    assert [(p.state, p.stage) for p in rest] == [("promoted", "done")]


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
            assert await store.claim("A", 30) is None
            assert await store.next_run_after() is not None
            assert await store.claimable_count() == 0
            await asyncio.sleep(0.4)
    assert state == "failed"
    row = await store.get_person(p.id)
    assert row.state == "failed" and row.last_error == "boom" and row.attempts == 3
    assert [f.id for f in await store.recent_failures()] == [p.id]
    assert await store.retry_failed() == [p.id]
    again = await store.claim("A", 30)
    assert again.attempts == 0 and again.last_error is None
    await store.fail_permanently(again.id, "A", "bad input")
    assert (await store.get_person(again.id)).state == "failed"
    assert await store.retry_failed(again.id) == [again.id]
    await store.requeue(again.id, "curate")
    assert (await store.get_person(again.id)).stage == "curate"


async def test_two_connections_never_claim_the_same_person(cfg):
    s1, s2, s3 = await connect(cfg), await connect(cfg), await connect(cfg)
    await s1.add_people([person(i) for i in range(60)])

    async def grab(s, owner):
        got = []
        while (p := await s.claim(owner, 60)) is not None:
            got.append(p.id)
        return got

    got = await asyncio.gather(grab(s1, "one"), grab(s2, "two"), grab(s3, "three"))
    ids = [i for g in got for i in g]
    assert len(ids) == 60 and len(set(ids)) == 60
    for s in (s1, s2, s3):
        await s.close()


async def test_daemons_heartbeat_and_release_owner(store):
    await store.register_daemon("d1", 11, "host-a")
    await store.register_daemon("d2", 12, "host-b")
    await store.beat_daemon("d1", 2)
    await store.stop_daemon("d2")
    live = await store.live_daemons(60)
    assert [(d.id, d.host, d.in_flight) for d in live] == [("d1", "host-a", 2)]
    await store.add_people([person(1), person(2)])
    await store.claim("d1", 60)
    await store.claim("d1", 60)
    await store.release_owner("d1")
    assert await store.queue_summary() == {"queued": 2}


async def test_images_rows_progress_and_outcomes(store):
    await store.add_people([person(1)])
    p = await store.claim("A", 30)
    await store.insert_images([image(p.id, n) for n in (1, 2, 3)])
    await store.insert_images([image(p.id, 1)])  # same URL again: ignored
    imgs = await store.images_of(p.id)
    assert [i.rank for i in imgs] == [1, 2, 3]
    a, b, c = (i.id for i in imgs)
    await store.mark_downloaded(
        a,
        Downloaded(
            sha256="ab" * 32,
            raw_path="raw/ab/x.jpg",
            final_url="http://x/1",
            content_type="image/jpeg",
            bytes=1234,
            width=640,
            height=480,
            format="JPEG",
        ),
    )
    await store.reject_image(b, "too_small", "50x50")
    emb = bytes(range(256)) * 2
    await store.record_analysis(
        a,
        Analyzed(
            analysis_status="ok",
            detail=None,
            faces_json="[]",
            face_count=1,
            blur=12.5,
            brightness=0.5,
            contrast=0.25,
            embedding=emb,
            phash="ff00",
            timings_json="{}",
            face_path="faces/x.jpg",
        ),
    )
    await store.record_curation([accepted(a, "faces/A/1.jpg", distance=0.1234567890123)])
    got = {i.id: i for i in await store.images_of(p.id)}
    assert got[a].embedding == emb and got[a].distance == 0.1234567890123
    assert got[a].is_reference == 1 and got[b].reason == "too_small"
    assert [i.id for i in await store.images_of(p.id, "accepted")] == [a]
    prog = await store.progress_of(p.id)
    assert (prog.images, prog.accepted, prog.rejected, prog.in_progress) == (3, 1, 1, 1)
    reasons = {(r.state, r.reason): r.images for r in await store.image_reasons(p.id)}
    assert reasons == {("accepted", ""): 1, ("pending", ""): 1, ("rejected", "too_small"): 1}
    assert await store.referenced_paths() == {"raw/ab/x.jpg", "faces/x.jpg", "faces/A/1.jpg"}
    assert await store.other_users_of_raw("raw/ab/x.jpg", p.id) == 0
    await store.forget_raw_paths([a])
    assert "raw/ab/x.jpg" not in await store.referenced_paths()
    with pytest.raises(Exception, match="(?i)check"):
        await store.reject_image(c, None, None)  # type: ignore[arg-type]  # a reason is required
    await store.delete_person(p.id)
    assert await store.images_of(p.id) == []


async def test_wait_for_work_returns_when_work_is_added(cfg, store):
    """PostgreSQL wakes an idle daemon by NOTIFY; SQLite sleeps its poll interval (short here)."""
    if not cfg.database_url:
        assert await store.wait_for_work(0.05) is False
        return
    while await store.wait_for_work(0.5):  # start listening; drain the wake-up on connect
        pass
    other = await connect(cfg)
    waiter = asyncio.create_task(store.wait_for_work(600))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await other.add_people([person(1)])
    assert await asyncio.wait_for(waiter, 60) is True  # woken by NOTIFY, not the 600 s poll
    p = await other.claim("A", 30)
    await other.fail_attempt(p.id, "A", "x", max_attempts=1, delay_s=0)
    waiter = asyncio.create_task(store.wait_for_work(600))
    await asyncio.sleep(0.2)
    assert await other.retry_failed() == [p.id]
    assert await asyncio.wait_for(waiter, 60) is True  # a retry wakes idle daemons too
    await other.close()


async def test_gallery_report_and_stats_queries(store):
    await store.add_people([person(1), person(2)])
    assert [p.slug for p in await store.already_queued([person(1), person(3)])] == ["Person_1"]
    ids = []
    for owner in ("A", "B"):
        p = await store.claim(owner, 30)
        await store.insert_images([image(p.id, n) for n in (1, 2, 3)])
        imgs = await store.images_of(p.id)
        await store.record_curation(
            [accepted(i.id, f"faces/{p.slug}/{i.rank}.jpg") for i in imgs[:2]]
            + [
                Curated(imgs[2].id, "rejected", "not_same_person", None, 0, 0.9, None, None),
            ]
        )
        await store.finish(p.id, owner, "promoted", None)
        ids.append((p.id, imgs))
    (p1, imgs1), (p2, imgs2) = ids
    cands = await store.gallery_candidates(p1)
    assert [c.id for c in cands] == [i.id for i in imgs1[:2]]
    for pid, imgs in ids:
        files = [
            GalleryFile(i.id, f"gallery/{pid}/{i.rank}.jpg", f"{i.id:064d}", bytes([i.id]) * 8, 1)
            for i in imgs[:2]
        ]
        await store.save_gallery(
            GalleryEntry(pid, f"gallery/{pid}", 2, "Dlib", "cosine", 0.07), files
        )
    # re-saving with one file less drops that gallery row
    keep = GalleryFile(imgs1[0].id, f"gallery/{p1}/1.jpg", f"{imgs1[0].id:064d}", b"x" * 8, 1)
    await store.save_gallery(GalleryEntry(p1, f"gallery/{p1}", 1, "Dlib", "cosine", 0.07), [keep])
    assert await store.gallery_folder(p1) == f"gallery/{p1}"
    assert sorted(await store.gallery_paths()) == sorted(
        [f"gallery/{p1}/1.jpg"] + [f"gallery/{p2}/{i.rank}.jpg" for i in imgs2[:2]]
    )
    assert {g.person_id for g in await store.gallery_identities()} == {p1, p2}
    embs = await store.gallery_embeddings()
    assert [e.person_id for e in embs] == [p1, p2, p2] and embs[0].embedding == b"x" * 8
    await store.save_self_tests(
        [SelfTest(p1, 1, 1.0, 0, 0.1, p2, 0.5, 0.4, False, None)]
        + [SelfTest(p2, 2, 0.5, 1, 0.2, p1, 0.3, -0.1, True, "too close to Person 1")]
    )
    summary = await store.gallery_summary()
    assert [(g.person_id, g.flagged, g.nearest_other) for g in summary] == [
        (p2, 1, "Person 1"),
        (p1, 0, "Person 2"),
    ]
    assert await store.gallery_tested_against(p2) == [p1]
    report = {r.person_id: r for r in await store.report_people()}
    assert report[p2].flagged == 1 and report[p1].gallery_images == 1
    assert [i.state for i in await store.report_images(p1)] == ["accepted", "accepted", "rejected"]
    totals = await store.image_totals()
    assert (totals.images, totals.accepted, totals.rejected, totals.in_progress) == (6, 4, 2, 0)
    assert [(r.reason, r.images) for r in await store.reject_reasons()] == [("not_same_person", 2)]
    assert len(await store.accepted_crops()) == 4
    assert len(await store.progress(limit=None)) == 2 and len(await store.progress(limit=1)) == 1
    await store.remove_from_gallery(p2)
    assert {g.person_id for g in await store.gallery_identities()} == {p1}
    assert await store.integrity_problems() == []


async def test_daemon_releases_a_lease_it_holds_without_working_on_it(cfg, store):
    """A claim that committed but whose answer a dropped connection lost leaves a lease the
    daemon renews without a task: the heartbeat gives such people back to the queue."""
    from facequeue.runner.daemon import Daemon

    daemon = Daemon(cfg, store, stages_factory=lambda cfg, store, res: {})
    await store.add_people([person(1), person(2)])
    orphan = await store.claim(daemon.owner, 30)
    working = await store.claim(daemon.owner, 30)
    daemon.tasks[working.id] = asyncio.get_running_loop().create_future()  # in flight
    # only the people in flight get their leases renewed
    assert await store.renew_leases(daemon.owner, 30, [working.id]) == [working.id]
    async with daemon.claiming:  # a claim in flight: its person has no task yet, keep all
        renew = asyncio.create_task(daemon._renew())
        await asyncio.sleep(0.3)
        assert (await store.get_person(orphan.id)).state == "running"
    await renew
    assert (await store.get_person(orphan.id)).state == "queued"
    assert (await store.get_person(working.id)).lease_owner == daemon.owner
    daemon.tasks[working.id].cancel()
    await daemon.resources.close()
