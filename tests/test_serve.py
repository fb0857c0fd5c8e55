"""`facequeue serve` against a real gallery built from the corpus by the real daemon, with a
real HTTP client (aiohttp) talking to the real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from serve_helpers import (
    HELD_BACK,
    IMPOSTOR,
    built_once,
    cli,
    copy_gallery,
    running_server,
    wait_until,
)

from facequeue.errors import ConfigError
from facequeue.serve.auth import check_bind


@pytest.fixture(scope="module")
def built(tmp_path_factory, testdata_dir) -> Path:
    return built_once(tmp_path_factory, testdata_dir)


def photo(testdata_dir: Path, rel: str) -> bytes:
    return (testdata_dir / rel).read_bytes()


async def recognize(session, base, data: bytes, name="photo.jpg", **fields) -> tuple[int, dict]:
    form = aiohttp.FormData()
    # a file object, not raw bytes: aiohttp warns on large raw bodies (warnings are errors)
    form.add_field(
        "image", io.BytesIO(data), filename=name, content_type="application/octet-stream"
    )
    for k, v in fields.items():
        form.add_field(k, str(v))
    async with session.post(f"{base}/api/recognize", data=form) as resp:
        return resp.status, await resp.json()


def db_rows(cfg, sql, *params):
    with sqlite3.connect(cfg.db_path) as conn:
        return conn.execute(sql, params).fetchall()


async def test_recognize_named_unknown_and_no_face(tmp_path, built, testdata_dir):
    cfg = copy_gallery(built, tmp_path)
    async with running_server(cfg) as base, aiohttp.ClientSession() as s:
        for who in ("Colin_Powell", "Laura_Bush", "Kofi_Annan"):
            status, body = await recognize(
                s, base, photo(testdata_dir, f"people/{who}/{HELD_BACK}")
            )
            assert status == 200, body
            assert body["status"] == "success" and body["person"] == who.replace("_", " ")
            assert 0 <= body["confidence"] <= 100
            assert body["best_match"]["identity"].startswith(who)
            assert body["best_match"]["distance"] <= 0.6
            assert len(body["faces"]) == 1 and body["faces"][0]["name"] == body["person"]
            assert set(body["faces"][0]["box"]) == {"x", "y", "w", "h"}
        status, body = await recognize(
            s, base, photo(testdata_dir, "people/Vladimir_Putin/1.jpg"), top=2
        )
        assert status == 200 and body["status"] == "unknown" and body["person"] is None, body
        assert body["faces"][0]["name"] == "unknown" and len(body["faces"][0]["candidates"]) == 2
        status, body = await recognize(
            s, base, photo(testdata_dir, "noface/skimage_coffee.png"), "c.png"
        )
        assert status == 200 and body["status"] == "no_face" and body["faces"] == []
        multi = sorted((testdata_dir / "multi").iterdir())[0]
        status, body = await recognize(s, base, multi.read_bytes())
        assert status == 200 and len(body["faces"]) >= 2

        async with s.get(f"{base}/api/people") as r:
            people = (await r.json())["people"]
        names = {p["person"] for p in people}
        assert {"Colin Powell", "Laura Bush", "Kofi Annan", "Tony Blair"} <= names
        colin = next(p for p in people if p["person"] == "Colin Powell")
        async with s.get(f"{base}/api/people/{colin['person_id']}") as r:
            one = await r.json()
        assert (
            one["images"] == len(one["gallery_images"]) > 0
            and one["self_test_top1"] is not None
            and "flagged" in one
        )
        async with s.get(f"{base}/api/people/999999") as r:
            assert r.status == 404 and "error" in await r.json()
        async with s.get(f"{base}/api/status") as r:
            st = await r.json()
        assert st["queue"]["promoted"] >= 4 and "daemons" in st and "people" in st
        async with s.get(f"{base}/healthz") as r:
            health = await r.json()
            assert r.status == 200 and health["gallery_loaded"] and health["database"]
        async with s.get(f"{base}/metrics") as r:
            text = await r.text()
    for name in (
        'facequeue_people{state="promoted"}',
        'facequeue_images{reason="',
        "facequeue_gallery_identities ",
        "facequeue_daemon_heartbeat_age_seconds ",
        "facequeue_recognize_seconds_bucket{",
        "facequeue_recognize_seconds_count ",
        'facequeue_http_requests_total{code="200",route="/api/recognize"}',
        'facequeue_http_requests_total{code="404",route="/api/people/{id}"}',
    ):
        assert name in text, name
    assert "facequeue_daemon_heartbeat_age_seconds +Inf" in text  # no daemon running


def _bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, "PNG")  # ~400 MP of zeros, a few hundred KB
    return buf.getvalue()


async def test_bad_uploads_get_json_4xx_and_nothing_crashes(tmp_path, built, testdata_dir):
    cfg = copy_gallery(built, tmp_path, serve="max_upload_mb = 1.0\nmax_pixels = 4000000")
    good = photo(testdata_dir, f"people/Colin_Powell/{HELD_BACK}")
    big = io.BytesIO()
    Image.linear_gradient("L").resize((3000, 2000)).convert("RGB").save(big, "JPEG")
    huge = big.getvalue()
    assert len(huge) < 1024 * 1024  # under the byte limit: the pixel limit must catch it
    cases = {
        "text": (b"this is not an image at all\n" * 10, 415),
        "html": (b"<!doctype html><html><body>hi</body></html>", 415),
        "truncated": (good[: len(good) // 3], 422),
        "too big": (good + b"\0" * (1024 * 1024), 413),
        "bomb": (_bomb_png(), 413),
        "huge": (huge, 413),
        "empty": (b"", 400),
    }
    async with running_server(cfg) as base, aiohttp.ClientSession() as s:
        for what, (data, code) in cases.items():
            status, body = await recognize(s, base, data)
            assert status == code, (what, body)
            assert isinstance(body.get("error"), str) and body["error"], (what, body)
        status, body = await recognize(s, base, good, top="many")
        assert status == 400 and "top" in body["error"]
        async with s.post(f"{base}/api/recognize", data=b"raw bytes") as r:
            assert r.status == 400 and "multipart" in (await r.json())["error"]
        form = aiohttp.FormData()
        form.add_field("picture", good, filename="x.jpg")
        async with s.post(f"{base}/api/recognize", data=form) as r:
            assert r.status == 400 and "'image'" in (await r.json())["error"]
        # still serving, still right
        status, body = await recognize(s, base, good)
        assert status == 200 and body["person"] == "Colin Powell"
        async with s.get(f"{base}/healthz") as r:
            assert r.status == 200
    assert not any(cfg.tmp_dir.rglob("uploads-*/*"))  # no upload left behind


async def test_auth_token_cookie_and_csrf(tmp_path, built, testdata_dir):
    cfg = copy_gallery(built, tmp_path)
    good = photo(testdata_dir, f"people/Colin_Powell/{HELD_BACK}")
    token = "s3cret-token"
    async with running_server(cfg, token=token) as base:
        async with aiohttp.ClientSession() as s:
            status, body = await recognize(s, base, good)
            assert status == 401 and "token" in body["error"]
            for path in ("/api/people", "/api/status"):
                async with s.get(base + path) as r:
                    assert r.status == 401
            async with s.get(base + "/api/people", headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
            async with s.post(f"{base}/api/images/1/review", json={"decision": "reject"}) as r:
                assert r.status == 401
            async with s.get(f"{base}/index.html", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"].startswith("/login")
            async with s.get(f"{base}/healthz") as r:
                assert r.status == 200  # monitoring stays open
            async with s.get(f"{base}/metrics") as r:
                assert r.status == 200
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=auth) as s:
            status, body = await recognize(s, base, good)
            assert status == 200 and body["person"] == "Colin Powell"
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            async with s.post(f"{base}/login", data={"token": "wrong"}) as r:
                assert r.status == 401
            async with s.post(
                f"{base}/login", data={"token": token, "next": "/index.html"}, allow_redirects=False
            ) as r:
                assert r.status == 303
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
            async with s.get(f"{base}/index.html") as r:
                assert r.status == 200 and "People" in await r.text()
            # a cookie alone cannot change anything: the form needs the CSRF token
            async with s.post(
                f"{base}/ui/images/1/review", data={"decision": "reject"}, allow_redirects=False
            ) as r:
                assert r.status == 403
            async with s.post(
                f"{base}/api/images/1/review",
                data="decision=reject",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as r:
                assert r.status == 403
    with pytest.raises(ConfigError, match="FACEQUEUE_API_TOKEN"):
        check_bind("0.0.0.0", "")
    check_bind("0.0.0.0", token)
    check_bind("::1", "")
    res = cli(tmp_path / "facequeue.toml", "serve", "--host", "0.0.0.0", "--port", "0")
    assert res.returncode != 0 and "refusing to listen on 0.0.0.0" in res.stderr


async def test_100_concurrent_uploads_two_at_a_time(tmp_path, built, testdata_dir):
    cfg = copy_gallery(built, tmp_path, serve="max_concurrent = 2\nqueue_wait_s = 1.5")
    good = photo(testdata_dir, f"people/Laura_Bush/{HELD_BACK}")
    async with (
        running_server(cfg) as base,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s,
    ):
        results = await asyncio.gather(*(recognize(s, base, good) for _ in range(100)))
        codes = [c for c, _ in results]
        assert set(codes) <= {200, 503}, codes
        ok = [b for c, b in results if c == 200]
        busy = [b for c, b in results if c == 503]
        assert len(ok) >= 2 and all(b["person"] == "Laura Bush" for b in ok)
        # a 503 only once a request has waited the full queue_wait_s
        assert all(b["waited_s"] >= 1.5 and "busy" in b["error"] for b in busy)
        async with s.get(f"{base}/healthz") as r:
            assert r.status == 200
        status, body = await recognize(s, base, good)
        assert status == 200 and body["person"] == "Laura Bush"
        async with s.get(f"{base}/metrics") as r:
            text = await r.text()
    if busy:
        line = 'facequeue_http_requests_total{code="503",route="/api/recognize"}'
        assert f"{line} {float(len(busy))}" in text


def image_state(cfg, image_id: int) -> tuple[str, str | None]:
    return db_rows(cfg, "SELECT state, reason FROM images WHERE id = ?", image_id)[0]


def gallery_image_ids(cfg, person_id: int) -> set[int]:
    return {
        r[0]
        for r in db_rows(cfg, "SELECT image_id FROM gallery_images WHERE person_id = ?", person_id)
    }


async def review(
    s, base, image_id: int, decision: str, note: str | None = None
) -> tuple[int, dict]:
    async with s.post(
        f"{base}/api/images/{image_id}/review", json={"decision": decision, "note": note}
    ) as r:
        return r.status, await r.json()


async def test_review_decisions_survive_recurate(tmp_path, built, testdata_dir):
    cfg = copy_gallery(built, tmp_path)
    tony = db_rows(cfg, "SELECT id FROM people WHERE slug = 'Tony_Blair'")[0][0]
    rows = db_rows(
        cfg, "SELECT id, state, reason, url FROM images WHERE person_id = ? ORDER BY id", tony
    )
    impostor = next(r[0] for r in rows if r[3].endswith("impostor.jpg") or IMPOSTOR[1] in r[3])
    assert image_state(cfg, impostor)[0] == "rejected"  # curation caught the impostor
    accepted = [r[0] for r in rows if r[1] == "accepted"]
    victim = accepted[0]
    assert victim in gallery_image_ids(cfg, tony)
    async with running_server(cfg) as base, aiohttp.ClientSession() as s:
        version = (await (await s.get(f"{base}/api/people")).json())["gallery_version"]
        status, out = await review(s, base, victim, "reject", "not him: a poster")
        assert status == 200, out
        assert out["state"] == "rejected" and out["reason"] == "reviewer" and out["recurated"]
        assert victim not in gallery_image_ids(cfg, tony)  # re-promoted at once
        people = await (await s.get(f"{base}/api/people")).json()
        assert people["gallery_version"] > version  # the server's gallery followed
        status, out = await review(s, base, impostor, "accept", "the reviewer knows better")
        assert status == 200 and out["state"] == "accepted", out
        assert impostor in gallery_image_ids(cfg, tony)
        # bad requests: JSON errors
        assert (await review(s, base, victim, "maybe"))[0] == 400
        assert (await review(s, base, 10**9, "reject"))[0] == 404
        async with s.post(
            f"{base}/api/images/{victim}/review",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ) as r:
            assert r.status == 400 and "JSON" in (await r.json())["error"]

    # later runs never override the reviewer: recurate with the CLI (a real subprocess)
    res = cli(tmp_path / "facequeue.toml", "recurate", "Tony_Blair")
    assert res.returncode == 0, res.stderr
    assert image_state(cfg, victim) == ("rejected", "reviewer")
    assert image_state(cfg, impostor) == ("accepted", None)
    assert victim not in gallery_image_ids(cfg, tony) and impostor in gallery_image_ids(cfg, tony)
    res = cli(tmp_path / "facequeue.toml", "recurate", "--all")
    assert res.returncode == 0, res.stderr
    assert image_state(cfg, victim) == ("rejected", "reviewer")
    out = db_rows(cfg, "SELECT decision, note FROM review_outcomes WHERE image_id = ?", victim)
    assert out == [("reject", "not him: a poster")]

    # clear: curation's own verdict again
    async with running_server(cfg) as base, aiohttp.ClientSession() as s:
        status, out = await review(s, base, victim, "clear")
        assert status == 200 and out["state"] == "accepted", out
        status, out = await review(s, base, impostor, "clear")
        assert status == 200 and out["state"] == "rejected" and out["reason"] != "reviewer"
    assert db_rows(cfg, "SELECT COUNT(*) FROM image_reviews") == [(0,)]
    # the report shows the reviewer's rejections as a reason of their own
    await_review = cli(tmp_path / "facequeue.toml", "report")
    assert await_review.returncode == 0


async def test_forget_reaches_the_running_server(tmp_path, built, testdata_dir):
    cfg = copy_gallery(built, tmp_path, serve="gallery_poll_s = 0.2")
    laura = db_rows(cfg, "SELECT id FROM people WHERE slug = 'Laura_Bush'")[0][0]
    held_back = photo(testdata_dir, f"people/Laura_Bush/{HELD_BACK}")
    async with running_server(cfg) as base, aiohttp.ClientSession() as s:
        status, body = await recognize(s, base, held_back)
        assert status == 200 and body["person"] == "Laura Bush"
        some = db_rows(
            cfg, "SELECT id FROM images WHERE person_id = ? AND state = 'accepted'", laura
        )
        assert (await review(s, base, some[0][0], "reject"))[0] == 200
        reloads = (await (await s.get(f"{base}/healthz")).json())["gallery_version"]

        res = await asyncio.to_thread(
            cli, tmp_path / "facequeue.toml", "forget", "Laura_Bush", "--yes"
        )
        assert res.returncode == 0, res.stderr
        assert "and 1 reviewer decision(s)" in res.stdout

        async def gone() -> bool:
            _, b = await recognize(s, base, held_back)
            return b["person"] != "Laura Bush"

        assert await wait_until(gone, timeout=30)
        status, body = await recognize(s, base, held_back)
        assert status == 200 and body["status"] == "unknown"
        people = await (await s.get(f"{base}/api/people")).json()
        assert "Laura Bush" not in {p["person"] for p in people["people"]}
        assert people["gallery_version"] > reloads
        async with s.get(f"{base}/api/people/{laura}") as r:
            assert r.status == 404
        # the others are still there (an incremental reload, not an empty gallery)
        status, body = await recognize(
            s, base, photo(testdata_dir, f"people/Kofi_Annan/{HELD_BACK}")
        )
        assert body["person"] == "Kofi Annan"
    assert db_rows(cfg, "SELECT COUNT(*) FROM image_reviews WHERE person_id = ?", laura) == [(0,)]


async def test_healthz_is_503_when_unhealthy(tmp_path, built):
    cfg = copy_gallery(built, tmp_path)
    # no recognition workers: not able to answer /api/recognize, so not healthy
    async with running_server(cfg, start_workers=False) as base, aiohttp.ClientSession() as s:
        async with s.get(f"{base}/healthz") as r:
            body = await r.json()
            assert r.status == 503 and body["status"] == "unhealthy" and body["workers"] is False
            assert body["database"] is True and body["gallery_loaded"] is True
