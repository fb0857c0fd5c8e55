"""Every command on PostgreSQL, as a user runs them: local search, image, LLM and SPARQL
servers, real DeepFace models, `facequeue run --once` as a real subprocess; then the same
views read with psycopg that the SQLite end-to-end test reads with sqlite3, and copy-db back
to a SQLite file that the commands then read."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import psycopg
import pytest
from fake_services import FakeOpenAI
from servers import fake_services
from test_add_country import world_llm
from wikidata_endpoint import WikidataEndpoint
from wikidata_world import serbia_world

pytestmark = [pytest.mark.slow, pytest.mark.model]  # subprocesses, real face models

PEOPLE = {"Colin Powell": ("USA", "politician"), "Kit Harington": ("UK", "actor")}
HELD_BACK = 6


async def cli(cfg: Path, *args: str, timeout: float = 600) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "facequeue",
        "--config",
        str(cfg),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OPENAI_API_KEY": "sk-test"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def photos(testdata_dir: Path, name: str) -> list[str]:
    folder = testdata_dir / "people" / name.replace(" ", "_")
    return sorted(f"people/{folder.name}/{p.name}" for p in folder.iterdir())


async def ok(cfg: Path, *args: str) -> str:
    code, out, err = await cli(cfg, *args)
    assert code == 0, f"{args}: {err[-3000:]}"
    return out


async def queue_and_run(tmp_path: Path, testdata_dir: Path, pg_url: str) -> Path:
    async with (
        fake_services(testdata_dir) as svc,
        FakeOpenAI(world_llm()) as llm,
        WikidataEndpoint(serbia_world()) as wd,
    ):
        for name, (_, occupation) in PEOPLE.items():
            own = [p for p in photos(testdata_dir, name) if not p.endswith(f"/{HELD_BACK}.jpg")]
            svc.mediawiki.results[f"{name} {occupation}"] = [svc.images.face_url(p) for p in own]
        cfg = tmp_path / "facequeue.toml"
        cfg.write_text(f"""
data_dir = "data"
database_url = "{pg_url}"
[queue]
poll_s = 0.2
[wikimedia]
api_url = "{svc.wikimedia_url}"
[download]
allow_private_addresses = true
retries = 0
[gallery]
min_images = 3
[llm]
base_url = "{llm.base_url}"
model = "test-model"
max_retries = 1
retry_backoff_s = 0.01
[wikidata]
sparql_url = "{wd.url}"
max_retries = 0
""")
        assert "applied 0001_initial" in await ok(cfg, "migrate")
        await ok(
            cfg, "add-person", "Colin Powell", "--country", "USA", "--occupation", "politician"
        )
        csv = tmp_path / "people.csv"
        csv.write_text("name,country,occupation\nKit Harington,UK,actor\n")
        await ok(cfg, "import", str(csv))
        out = await ok(cfg, "add-country", "Serbia", "--occupation", "athlete", "--count", "2")
        assert "queued" in out
        await ok(cfg, "run", "--once")
    return cfg


async def test_every_command_on_postgres(tmp_path, testdata_dir, pg_url):
    cfg = await queue_and_run(tmp_path, testdata_dir, pg_url)
    with psycopg.connect(pg_url) as db:
        states = dict(db.execute("SELECT name, state FROM people").fetchall())
        outcomes = db.execute("SELECT state, reason, crop_path, url FROM image_outcomes").fetchall()
    assert states["Colin Powell"] == "promoted", states
    assert states["Kit Harington"] in ("insufficient", "no_consensus", "promoted"), states
    assert all(s in ("promoted", "insufficient", "no_consensus") for s in states.values()), states
    assert all(state in ("accepted", "rejected") for state, *_ in outcomes)
    assert all(reason for state, reason, *_ in outcomes if state == "rejected")
    for state, _, crop, url in outcomes:
        if state == "accepted":
            sidecar = json.loads((tmp_path / "data" / crop).with_suffix(".json").read_text())
            assert sidecar["source_url"] == url

    assert "accepted" in await ok(cfg, "status", "Colin_Powell")
    assert json.loads(await ok(cfg, "status", "--json"))["queue"]["promoted"] >= 1
    assert "Colin Powell" in await ok(cfg, "gallery")
    held = testdata_dir / "people" / "Colin_Powell" / f"{HELD_BACK}.jpg"
    answer = json.loads(await ok(cfg, "recognize", str(held), "--json"))
    assert "Colin Powell" in [f.get("name") or f.get("person") for f in answer["faces"]], answer
    assert "Colin Powell" in await ok(cfg, "stats", "--db")
    await ok(cfg, "report", "--out", str(tmp_path / "report"))
    assert "Colin Powell" in "".join(p.read_text() for p in (tmp_path / "report").rglob("*.html"))
    assert "requeued 0" in await ok(cfg, "retry")
    await ok(cfg, "recurate", "Colin_Powell")
    doctor = json.loads((await cli(cfg, "doctor", "--json", "--skip-models"))[1])
    checks = doctor["checks"] if isinstance(doctor, dict) else doctor
    db_check = next(c for c in checks if c["name"] == "database")
    assert db_check["status"] == "ok", db_check
    await ok(cfg, "forget", "Kit_Harington", "--yes")

    # copy-db back to SQLite: the same queue, read by the same commands.
    lite = tmp_path / "copy" / "facequeue.db"
    lite.parent.mkdir()
    assert "copied" in await ok(cfg, "copy-db", str(lite))
    lite_cfg = tmp_path / "copy" / "facequeue.toml"
    lite_cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    (tmp_path / "data" / "facequeue.db").unlink(missing_ok=True)
    lite.rename(tmp_path / "data" / "facequeue.db")
    pg_status = json.loads(await ok(cfg, "status", "--json"))["queue"]
    assert json.loads(await ok(lite_cfg, "status", "--json"))["queue"] == pg_status
    answer = json.loads(await ok(lite_cfg, "recognize", str(held), "--json"))
    assert "Colin Powell" in [f.get("name") or f.get("person") for f in answer["faces"]], answer
