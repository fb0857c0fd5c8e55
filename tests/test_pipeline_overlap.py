"""Issue 14 "a person's stages overlap" and issue 12 item 8 "a failed stage cancels its sibling
image tasks". Real local image server, real SQLite, the real analysis pool (DeepFace)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from servers import serve

from facequeue.config import Config
from facequeue.runner.pipeline import Resources, Stages, all_or_cancel
from facequeue.store import Downloaded, NewImage, NewPerson, SqliteStore


async def wait_for(predicate, what: str, limit_s: float = 300.0) -> None:
    """Poll until predicate() holds; a hang (the behaviour missing) fails after limit_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not await predicate():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


@pytest.mark.model
async def test_images_are_analysed_while_others_still_download(tmp_path, testdata_dir):
    photos = sorted((testdata_dir / "people" / "Colin_Powell").iterdir())[:3]
    gate = asyncio.Event()

    async def photo(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 2:
            await gate.wait()  # the last image arrives only when the test says so
        return web.Response(body=photos[n].read_bytes(), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/p/{n}.jpg", photo)
    cfg = Config(
        data_dir=tmp_path / "data",
        analysis={"deepface_home": str(tmp_path / "deepface"), "workers": 1},
        download={"allow_private_addresses": True, "honor_robots_txt": False},
    )
    store = await SqliteStore.open(cfg.db_path)
    res = Resources(cfg)
    try:
        async with serve(app) as base:
            (pid,) = (
                await store.add_people([NewPerson("Colin Powell", "Colin_Powell", "USA")])
            ).added
            await store.insert_images(
                [
                    NewImage(person_id=pid, provider="test", rank=i, url=f"{base}/p/{i}.jpg")
                    for i in range(3)
                ]
            )
            person = await store.get_person(pid)
            stage = asyncio.create_task(Stages(cfg, store, res).download(person))

            async def first_two_analysed() -> bool:
                assert not stage.done(), stage.exception() if stage.done() else None
                states = [i.state for i in await store.images_of(pid)]
                return states.count("analyzed") == 2

            # The download stage is still waiting for image 3, yet 1 and 2 are analysed.
            await wait_for(first_two_analysed, "analysis before the last download")
            assert [i.state for i in await store.images_of(pid)][2] == "pending"
            gate.set()
            assert await asyncio.wait_for(stage, 300) is None
            images = await store.images_of(pid)
            assert [i.state for i in images] == ["analyzed"] * 3
            assert all(i.analysis_status == "ok" for i in images)
            # Nothing is left for the analyze stage; running it is a no-op.
            assert await Stages(cfg, store, res).analyze(person) is None
    finally:
        gate.set()
        await res.close()
        await store.close()


async def test_a_failed_image_task_cancels_its_siblings_before_the_error_is_raised(tmp_path):
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    (pid,) = (await store.add_people([NewPerson("A B", "A_B", "Serbia")])).added
    await store.insert_images(
        [NewImage(person_id=pid, provider="t", rank=i, url=f"u{i}") for i in range(2)]
    )
    first, second = await store.images_of(pid)
    never = asyncio.Event()
    stopped: list[str] = []

    async def fails() -> None:
        await asyncio.sleep(0.05)
        raise OSError(28, "No space left on device")

    async def slow_writer() -> None:
        try:
            await never.wait()
            await store.reject_image(second.id, "late", "written after the stage failed")
        finally:
            stopped.append("slow_writer")

    try:
        try:
            await all_or_cancel([fails(), slow_writer()])
        except OSError as exc:
            assert exc.errno == 28
        else:
            raise AssertionError("the failure was swallowed")
        assert stopped == ["slow_writer"]  # cancelled and finished before the raise
        never.set()
        await asyncio.sleep(0.05)
        assert (await store.images_of(pid))[1].state == "pending"
    finally:
        await store.close()


@pytest.mark.model
async def test_raw_file_deleted_by_another_persons_curation_is_downloaded_again(
    tmp_path, testdata_dir
):
    """Raw files are shared by content; if one vanished between download and analysis (another
    person's curation deleted it) it is fetched again and analysed in the same stage: never a
    rejection, and no retry for the person to wait for (run --once would end with it queued)."""
    photo = sorted((testdata_dir / "people" / "Colin_Powell").iterdir())[0].read_bytes()
    hits: list[str] = []

    async def serve_photo(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=photo, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/p.jpg", serve_photo)
    cfg = Config(
        data_dir=tmp_path / "data",
        analysis={"deepface_home": str(tmp_path / "deepface"), "workers": 1},
        download={"allow_private_addresses": True, "honor_robots_txt": False},
    )
    store = await SqliteStore.open(cfg.db_path)
    res = Resources(cfg)
    try:
        async with serve(app) as base:
            (pid,) = (await store.add_people([NewPerson("A B", "A_B", "Serbia")])).added
            await store.insert_images(
                [NewImage(person_id=pid, provider="t", rank=0, url=f"{base}/p.jpg")]
            )
            (img,) = await store.images_of(pid)
            await store.mark_downloaded(
                img.id,
                Downloaded(
                    sha256="ab" * 32,
                    raw_path="raw/ab/" + "ab" * 32 + ".jpg",  # never written: "deleted"
                    final_url=f"{base}/p.jpg",
                    content_type="image/jpeg",
                    bytes=10,
                    width=200,
                    height=200,
                    format="JPEG",
                ),
            )
            person = await store.get_person(pid)
            assert await Stages(cfg, store, res).analyze(person) is None
        (again,) = await store.images_of(pid)
        assert (again.state, again.reason, again.analysis_status) == ("analyzed", None, "ok")
        assert again.raw_path and (cfg.data_dir / again.raw_path).is_file()
        assert again.sha256 != "ab" * 32
        assert hits == ["/p.jpg"]
    finally:
        await res.close()
        await store.close()
