"""The HTML review report, checked in headless Chromium (DevTools protocol over aiohttp):
every page renders, every <img> loads (naturalWidth > 0), no console errors; a forgotten
person disappears from the rebuilt report.

Needs Debian's `chromium` (/usr/bin/chromium, or $CHROMIUM)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from facequeue import layout
from facequeue.config import Config
from facequeue.ops import report
from facequeue.stages import gallery
from facequeue.store import NewPerson, Person, SqliteStore

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"
)


class Browser:
    """One headless Chromium; `check(url)` loads a page and reports what went wrong."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile

    async def __aenter__(self) -> Browser:
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        for _ in range(200):
            if port_file.is_file() and port_file.read_text().count("\n") >= 1:
                break
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self.next_id = 0
        self.events: list[dict] = []
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            await self.call(method)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        await self.session.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive(timeout=30)).data)
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def wait_event(self, method: str, timeout: float = 30) -> dict:
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method:
                    return self.events.pop(i)
            msg = json.loads((await self.ws.receive(timeout=timeout)).data)
            self.events.append(msg)

    async def check(self, url: str) -> dict:
        """Load url; return {'errors': [...], 'images': [...], 'title': ..., 'text': ...}."""
        self.events.clear()
        await self.call("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")
        res = await self.call(
            "Runtime.evaluate",
            returnByValue=True,
            awaitPromise=True,
            expression="""(async () => {
              const imgs = [...document.images];
              await Promise.all(imgs.map(i => i.decode().catch(() => null)));
              return {title: document.title, text: document.body.innerText,
                      links: [...document.links].map(a => a.getAttribute('href')),
                      images: imgs.map(i => ({src: i.getAttribute('src'), w: i.naturalWidth,
                                              complete: i.complete}))};
            })()""",
        )
        await asyncio.sleep(0.1)  # let late console/log events arrive
        while True:
            try:
                msg = await self.ws.receive(timeout=0.05)
            except TimeoutError:
                break
            self.events.append(json.loads(msg.data))
        errors = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a)) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                errors.append("exception: " + p["exceptionDetails"].get("text", ""))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        value = res["result"]["value"]
        value["errors"] = errors
        value["broken"] = [i["src"] for i in value["images"] if not i["complete"] or i["w"] <= 0]
        return value


def synthetic_embedding(seed: int, center: np.ndarray) -> bytes:
    rng = np.random.default_rng(seed)
    return (center + rng.normal(scale=0.02, size=128)).astype(np.float32).tobytes()


async def build_db(cfg: Config, corpus: Path) -> dict[str, Person]:
    """Three people: promoted (accepted + rejected of every kind), insufficient, queued."""
    store = await SqliteStore.open(cfg.db_path)
    people = {}
    try:
        res = await store.add_people(
            [
                NewPerson(
                    name="Тони Блэр", slug="Toni_Bler", country="Србија", occupation="politician"
                ),
                NewPerson(name="Colin Powell", slug="Colin_Powell", country="USA"),
                NewPerson(name="Queued <Person>", slug="Queued_Person", country="USA"),
            ]
        )
        for key, pid in zip(("tony", "colin", "queued"), res.added, strict=False):
            people[key] = await store.get_person(pid)
        conn = store.conn
        raw_dir = cfg.data_dir / "raw"
        raw_dir.mkdir(parents=True)

        async def image(person, rank, url, state, **cols):
            cols = {
                "person_id": person.id,
                "provider": "rapidapi",
                "rank": rank,
                "url": url,
                "state": state,
                **cols,
            }
            names = ", ".join(cols)
            marks = ", ".join("?" for _ in cols)
            await conn.execute(
                f"INSERT INTO images ({names}) VALUES ({marks})", list(cols.values())
            )

        center = np.random.default_rng(0).normal(size=128)
        for key, who, count in (("tony", "Tony_Blair", 6), ("colin", "Colin_Powell", 3)):
            person = people[key]
            dest = layout.faces_dir(cfg, person)
            dest.mkdir(parents=True)
            for n, src in enumerate(sorted((corpus / "people" / who).iterdir())[:count]):
                crop = dest / f"{person.slug}_{n}.jpg"
                shutil.copyfile(src, crop)
                await image(
                    person,
                    n,
                    f"https://img{n}.example.org/{who}/{n}.jpg",
                    "accepted",
                    crop_path=layout.relative(cfg, crop),
                    is_reference=int(n < 3),
                    distance=0.05 * n,
                    embedding=synthetic_embedding(n, center if key == "tony" else -center),
                )
        tony = people["tony"]
        # rejected: original kept (RGBA PNG under a non-ASCII name), deleted, corrupt
        kept = raw_dir / "слика.png"
        shutil.copyfile(corpus / "people" / "Alex_Lacamoire" / "3.png", kept)
        await image(
            tony,
            10,
            "https://example.org/wrong-person.png",
            "rejected",
            reason="not_same_person",
            detail="median distance 0.71 > 0.6",
            distance=0.71,
            raw_path=layout.relative(cfg, kept),
        )
        await image(
            tony,
            11,
            "https://example.org/gone.jpg?a=1&b=<2>",
            "rejected",
            reason="not_same_person",
            detail="original deleted",
            raw_path=None,
        )
        corrupt = raw_dir / "truncated.jpg"
        corrupt.write_bytes((corpus / "noface" / "dlib_dogs.jpg").read_bytes()[:300])
        await image(
            tony,
            12,
            "https://example.org/truncated.jpg",
            "rejected",
            reason="unreadable",
            detail="image file is truncated",
            raw_path=layout.relative(cfg, corrupt),
        )
        noface = raw_dir / "cat.png"
        shutil.copyfile(corpus / "noface" / "skimage_chelsea.png", noface)
        await image(
            tony,
            13,
            "javascript:alert(1)",
            "rejected",
            reason="no_face",
            detail="no face detected",
            raw_path=layout.relative(cfg, noface),
        )
        await image(people["queued"], 0, "https://example.org/q.jpg", "pending")

        state, _ = await gallery.promote_person(cfg, store, tony)
        assert state == "promoted"
        state, reason = await gallery.promote_person(cfg, store, people["colin"])
        assert state == "insufficient"
        await conn.execute(
            "UPDATE people SET state = 'promoted', stage = 'done' WHERE id = ?", (tony.id,)
        )
        await conn.execute(
            "UPDATE people SET state = 'insufficient', stage = 'done', "
            "state_reason = ? WHERE id = ?",
            (reason, people["colin"].id),
        )
    finally:
        await store.close()
    return people


@pytest.mark.browser
async def test_report_renders_in_chromium_and_forgets(tmp_path, testdata_dir):
    cfg = Config(data_dir=tmp_path / "data", gallery={"threshold": 0.6})
    people = await build_db(cfg, testdata_dir)
    out = tmp_path / "report"
    store = await SqliteStore.open(cfg.db_path)
    try:
        index = await report.build_report(cfg, store, out)
    finally:
        await store.close()
    pages = sorted((out / "people").glob("*.html"))
    assert index == out / "index.html" and len(pages) == 3
    thumbs = list((out / "thumbs").iterdir())
    assert thumbs and all(t.stat().st_size < 30_000 for t in thumbs)  # small, self-contained
    raw_total = sum(p.stat().st_size for p in (cfg.data_dir / "raw").iterdir())
    assert sum(t.stat().st_size for t in thumbs) < raw_total

    async with Browser(tmp_path / "chromium-profile") as browser:
        # the checker itself catches a broken image and a console error
        bad = tmp_path / "bad.html"
        bad.write_text('<img src="missing.jpg"><script>console.error("boom")</script>')
        res = await browser.check(bad.as_uri())
        assert res["broken"] == ["missing.jpg"] and any("boom" in e for e in res["errors"])

        res = await browser.check(index.as_uri())
        assert res["errors"] == [] and res["broken"] == []
        assert "Тони Блэр" in res["text"] and "Queued <Person>" in res["text"]
        assert "6 accepted faces" not in res["text"]
        assert "3 accepted faces, need more than 5" in res["text"]
        assert len(res["images"]) >= 2  # covers of tony and colin

        tony_page = next(p for p in pages if p.name.startswith(f"{people['tony'].id}_"))
        res = await browser.check(tony_page.as_uri())
        assert res["errors"] == [] and res["broken"] == []
        # 6 accepted crops + the kept PNG original + the cat; deleted and corrupt -> placeholders
        assert len(res["images"]) == 8, res["images"]
        assert "reference" in res["text"] and "not_same_person (2)" in res["text"]
        assert "https://example.org/gone.jpg?a=1&b=<2>" in res["text"]
        assert "file deleted" in res["text"] and "d=0.710" in res["text"]
        assert "javascript:alert(1)" not in res["links"]
        assert "In the gallery: 6 images" in res["text"]
        for page in pages:
            res = await browser.check(page.as_uri())
            assert res["errors"] == [] and res["broken"] == [], (page, res)

        # forget tony: gone from the gallery, and from the report once it is rebuilt from the DB
        store = await SqliteStore.open(cfg.db_path)
        try:
            await gallery.forget_person(cfg, store, people["tony"])
            await store.delete_person(people["tony"].id)
            assert await report.rebuild_if_present(cfg, store, out) == index
        finally:
            await store.close()
        assert not (cfg.gallery_dir / layout.person_folder(people["tony"])).exists()
        assert len(list((out / "people").glob("*.html"))) == 2
        assert len(list((out / "thumbs").iterdir())) == 3  # colin's crops only
        res = await browser.check(index.as_uri())
        assert res["errors"] == [] and res["broken"] == []
        assert "Тони Блэр" not in res["text"] and "Colin Powell" in res["text"]
    with sqlite3.connect(cfg.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM gallery_images").fetchone()[0] == 0
