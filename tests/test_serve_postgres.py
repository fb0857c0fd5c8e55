"""`facequeue serve` on PostgreSQL: the gallery built by the real daemon (on SQLite), moved
with `facequeue copy-db` to a real PostgreSQL server as a user would, the SQLite file then
removed; the real server recognises, takes a review, and follows a change another process
makes (`forget` from the command line)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import psycopg
import pytest
from serve_helpers import HELD_BACK, built_once, cli, copy_gallery, running_server, wait_until
from test_serve import recognize, review

from facequeue.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.model]  # subprocesses, real face models


@pytest.fixture(scope="module")
def built(tmp_path_factory, testdata_dir) -> Path:
    return built_once(tmp_path_factory, testdata_dir)


def pg_rows(url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


async def test_serve_on_postgres_recognizes_reviews_and_follows_changes(
    tmp_path, built, testdata_dir, pg_url
):
    lite = copy_gallery(built, tmp_path, serve="gallery_poll_s = 0.2")
    cfg_path = tmp_path / "facequeue.toml"
    res = cli(cfg_path, "copy-db", pg_url)
    assert res.returncode == 0, res.stderr
    for suffix in ("", "-wal", "-shm"):  # from now on only PostgreSQL holds the data
        Path(f"{lite.db_path}{suffix}").unlink(missing_ok=True)
    cfg_path.write_text(f'database_url = "{pg_url}"\n' + cfg_path.read_text())
    cfg = load_config(cfg_path)
    assert cfg.database_url == pg_url

    tony = pg_rows(pg_url, "SELECT id FROM people WHERE slug = 'Tony_Blair'")[0][0]
    in_gallery = [r[0] for r in pg_rows(pg_url, "SELECT image_id FROM gallery_images")]
    victim = pg_rows(
        pg_url, "SELECT image_id FROM gallery_images WHERE person_id = %s ORDER BY id", tony
    )[0][0]
    held_back = {
        who: (testdata_dir / "people" / who / HELD_BACK).read_bytes()
        for who in ("Colin_Powell", "Laura_Bush", "Kofi_Annan")
    }
    async with running_server(cfg) as base, aiohttp.ClientSession() as s:
        async with s.get(f"{base}/healthz") as r:
            health = await r.json()
            assert r.status == 200 and health["database"] is True, health
        for who, data in held_back.items():
            status, body = await recognize(s, base, data)
            assert status == 200 and body["person"] == who.replace("_", " "), body

        version = (await (await s.get(f"{base}/api/people")).json())["gallery_version"]
        status, out = await review(s, base, victim, "reject", "not him")
        assert status == 200, out
        assert out["state"] == "rejected" and out["reason"] == "reviewer" and out["recurated"]
        tony_gallery = pg_rows(
            pg_url, "SELECT image_id FROM gallery_images WHERE person_id = %s", tony
        )
        assert victim not in {r[0] for r in tony_gallery}  # re-promoted at once
        assert pg_rows(
            pg_url, "SELECT decision, note FROM review_outcomes WHERE image_id = %s", victim
        ) == [("reject", "not him")]
        assert (await (await s.get(f"{base}/api/people")).json())["gallery_version"] > version

        # another process changes the gallery: the running server follows
        res = await asyncio.to_thread(cli, cfg_path, "forget", "Laura_Bush", "--yes")
        assert res.returncode == 0, res.stderr

        async def gone() -> bool:
            _, b = await recognize(s, base, held_back["Laura_Bush"])
            return b["person"] != "Laura Bush"

        assert await wait_until(gone, timeout=60)
        status, body = await recognize(s, base, held_back["Kofi_Annan"])
        assert body["person"] == "Kofi Annan"  # an incremental reload, not an empty gallery
        async with s.get(f"{base}/metrics") as r:
            text = await r.text()
        assert "facequeue_gallery_identities 3.0" in text
    assert len(in_gallery) > len(pg_rows(pg_url, "SELECT image_id FROM gallery_images"))
    assert not lite.db_path.exists()  # nothing was written to SQLite behind our back
