"""Issue 12 "what must hold": with the default config, SIGKILL the daemon at random moments
10+ times on a real queue (local search and image servers, real downloads, real DeepFace
analysis, curation, promotion), restarting with `run --once` each time: everyone ends at
rest with exactly the accepted images of an uninterrupted run, and nobody stays `running`."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from pathlib import Path

import pytest
from servers import fake_services
from test_end_to_end import cli, photos

PEOPLE = [
    "Colin Powell",
    "Laura Bush",
    "Kofi Annan",
    "Tony Blair",
    "Condoleezza Rice",
    "Barack Obama",
    "Vladimir Putin",
]


def config(tmp_path: Path, name: str, svc, weights: Path) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    cfg = folder / "facequeue.toml"
    # Only what a user must set to point facequeue at these servers: the queue is default.
    cfg.write_text(f"""
data_dir = "data"
[wikimedia]
api_url = "{svc.wikimedia_url}"
[download]
allow_private_addresses = true
[analysis]
deepface_home = "{weights}"
[gallery]
min_images = 3
""")
    return cfg


async def queue(cfg: Path) -> None:
    for name in PEOPLE:
        code, _, err = await cli(cfg, "add-person", name, "-c", "USA", "-o", "politician")
        assert code == 0, err


def outcome(cfg: Path) -> tuple[dict, set, list]:
    con = sqlite3.connect(cfg.parent / "data" / "facequeue.db")
    try:
        states = dict(con.execute("SELECT name, state FROM people"))
        accepted = set(
            con.execute("SELECT person, url FROM image_outcomes WHERE state = 'accepted'")
        )
        crops = [r[0] for r in con.execute("SELECT crop_path FROM images WHERE crop_path <> ''")]
        return states, accepted, crops
    finally:
        con.close()


def not_at_rest(cfg: Path) -> list[tuple]:
    """Who is not at rest, and why (for a failing assertion's message)."""
    con = sqlite3.connect(cfg.parent / "data" / "facequeue.db")
    try:
        return list(
            con.execute(
                "SELECT name, state, stage, attempts, run_after, last_error FROM people "
                "WHERE state NOT IN ('promoted', 'insufficient', 'no_consensus')"
            )
        )
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.model
async def test_sigkill_real_pipeline_default_config_matches_uninterrupted(tmp_path, testdata_dir):
    rng = random.Random(20261201)
    weights = tmp_path / "deepface"
    async with fake_services(testdata_dir) as svc:
        img = svc.images
        for name in PEOPLE:
            svc.mediawiki.results[f"{name} politician"] = [
                img.face_url(p) for p in photos(testdata_dir, name)
            ] + [img.face_url("people/George_W_Bush/1.jpg"), img.url("/status/404")]

        calm = config(tmp_path, "uninterrupted", svc, weights)
        await queue(calm)
        code, _, err = await cli(calm, "run", "--once")
        assert code == 0, err[-3000:]
        want_states, want_accepted, _ = outcome(calm)
        assert set(want_states.values()) <= {"promoted", "insufficient", "no_consensus"}, (
            not_at_rest(calm),
            err[-3000:],
        )
        assert len(want_accepted) >= 15

        crashy = config(tmp_path, "killed", svc, weights)
        await queue(crashy)
        kills = 0
        for _ in range(40):
            if kills >= 10:
                break
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "facequeue",
                "--config",
                str(crashy),
                "run",
                "--once",
                cwd=crashy.parent,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env={**os.environ},
            )
            try:
                # the pipeline got faster since this test was written: kill sooner
                await asyncio.wait_for(proc.wait(), rng.uniform(0.8, 2.5))
            except TimeoutError:
                proc.kill()
                await proc.wait()
                kills += 1
            else:
                assert proc.returncode == 0
                states, _, _ = outcome(crashy)
                if all(s not in ("queued", "running") for s in states.values()):
                    break  # finished before enough kills: caught below
        assert kills >= 10, f"only {kills} kills before the queue was done: give it more work"
        code, _, err = await cli(crashy, "run", "--once")  # one restart finishes everything
        assert code == 0, err[-3000:]

    states, accepted, crops = outcome(crashy)
    assert "running" not in states.values()
    assert states == want_states
    assert accepted == want_accepted
    data = crashy.parent / "data"
    assert all((data / c).is_file() for c in crops)  # no row points at a missing file
