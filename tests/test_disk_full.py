"""Issue 12 item 7: a full disk fails the stage (retried later), never rejects an image; the
daemon stays up and logs one line; below queue.min_free_mb it claims nobody; `retry` makes
a person waiting for a scheduled retry claimable now. A real tmpfs as the data disk, a real
`facequeue run` process, real local search and image servers, real analysis."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from servers import fake_services

pytestmark = [pytest.mark.slow, pytest.mark.model]


WHO = "deepface_person_01"  # ~3.9 MB of photos: more than the disk has free


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small disk")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_body_cut_short_by_a_full_disk_leaves_no_temp_file(small_disk):
    """The partial temp file of a write that hit ENOSPC is removed: left behind, it kept
    the disk full so the daemon could not even record the failure."""
    from facequeue.stages.bodies import Body, place

    fill(small_disk, 100_000)
    tmp = small_disk / "tmp"
    tmp.mkdir()
    body = Body(None, 300_000, data=b"\xff" * 300_000)
    with pytest.raises(OSError) as err:
        place(body, small_disk / "raw", "jpg", str(tmp / ".dl-1.part"))
    assert err.value.errno == errno.ENOSPC
    assert list(tmp.iterdir()) == []
    assert [p.name for p in small_disk.rglob("*") if p.is_file()] == ["filler"]


def fill(disk: Path, leave_bytes: int) -> Path:
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))
    return filler


def query(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def cli(cfg: Path, *args: str, env: dict | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "facequeue",
        "--config",
        str(cfg),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    return proc.returncode, out.decode(), err.decode()


async def until(check, what: str, proc=None, limit_s: float = 300.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not check():
        if proc is not None and proc.returncode is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) before: {what}")
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.2)


async def test_full_disk_fails_the_stage_not_the_images(tmp_path, small_disk, testdata_dir):
    photos = sorted((testdata_dir / "people" / WHO).iterdir())
    async with fake_services(testdata_dir) as svc:
        svc.mediawiki.results["Disk Person actor"] = [
            svc.images.face_url(f"people/{WHO}/{p.name}") for p in photos
        ]
        cfg = tmp_path / "facequeue.toml"
        cfg.write_text(f"""
data_dir = "{small_disk / "data"}"
log_level = "info"
[queue]
poll_s = 0.2
min_free_mb = 0
[wikimedia]
api_url = "{svc.wikimedia_url}"
[download]
allow_private_addresses = true
[analysis]
deepface_home = "{tmp_path / "deepface"}"
workers = 1
""")
        db = small_disk / "data" / "facequeue.db"
        assert (await cli(cfg, "add-person", "Disk Person", "-c", "Serbia", "-o", "actor"))[0] == 0
        filler = fill(small_disk, 600_000)  # room for the database, not for the photos
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "facequeue",
            "--config",
            str(cfg),
            "run",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:

            def failed_once() -> bool:
                return bool(query(db, "SELECT 1 FROM people WHERE last_error IS NOT NULL"))

            await until(failed_once, "the stage failing on the full disk", daemon)
            ((state, attempts, error, run_after),) = query(
                db, "SELECT state, attempts, last_error, run_after FROM people"
            )
            assert state == "queued" and attempts == 1 and run_after is not None
            assert "LocalIOError" in error and "No space left" in error, error
            # Not one image was judged by our disk: none rejected, the rest still pending.
            assert query(db, "SELECT COUNT(*) FROM images WHERE state = 'rejected'") == [(0,)]
            assert query(db, "SELECT COUNT(*) FROM images WHERE state = 'pending'")[0][0] > 0
            assert daemon.returncode is None  # the daemon stays up

            # Below the free-space floor a daemon claims nobody, and says so in one line.
            code, _, err = await cli(
                cfg, "run", "--once", env={"FACEQUEUE_QUEUE__MIN_FREE_MB": "1"}
            )
            assert code == 0, err[-3000:]
            assert err.count("disk_space_low") == 1, err
            filler.unlink()

            # The user freed space: `retry` makes the waiting person claimable now.
            code, out, _ = await cli(cfg, "retry")
            assert code == 0 and "requeued 1" in out
            assert query(db, "SELECT run_after, attempts FROM people") == [(None, 0)]

            def at_rest() -> bool:
                return query(db, "SELECT stage FROM people") == [("done",)]

            await until(at_rest, "the person finishing after the retry", daemon)
            reasons = query(db, "SELECT DISTINCT COALESCE(reason, '') FROM images")
            assert ("connection_error",) not in reasons
            assert query(db, "SELECT COUNT(*) FROM images WHERE state = 'pending'") == [(0,)]
        finally:
            if daemon.returncode is None:
                daemon.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(daemon.wait(), 120)
            err = (await daemon.stderr.read()).decode()
        assert code == 0, err[-3000:]
        assert err.count('"event": "person_retry_scheduled"') == 1, err[-3000:]
        assert err.count('"event": "claim_failed"') <= 1, err[-3000:]  # one line, not a flood
        assert list((small_disk / "data" / "tmp").glob("*")) == []
