"""Three daemons on one PostgreSQL database and one data dir, SIGKILLed at random moments.

At the end every person is at rest, none failed, no row is duplicated, every stage recorded
as done was done once before it (no stage redone after its record), and the accepted images
equal those of one uninterrupted daemon on SQLite."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from facequeue.files import owner_is_dead

WORKER = Path(__file__).with_name("fake_pipeline_worker.py")
PEOPLE = 60


def write_config(folder: Path, database_url: str = "", **queue) -> Path:
    q = {
        "people_in_flight": 4,
        "lease_s": 3.0,
        "heartbeat_s": 0.3,
        "poll_s": 1.0,
        "grace_s": 1.0,
        "backoff_base_s": 0.0,
        "backoff_max_s": 0.0,
        "max_attempts": 3,
        **queue,
    }
    lines = [f'data_dir = "{folder / "data"}"', f'database_url = "{database_url}"', "[queue]"]
    lines += [f"{k} = {v}" for k, v in q.items()]
    path = folder / "facequeue.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def queue_people(cfg: Path, n: int) -> None:
    csv = cfg.parent / "people.csv"
    csv.write_text(
        "name,country,occupation\n" + "".join(f"Person Number {i},Serbia,actor\n" for i in range(n))
    )
    res = subprocess.run(
        [sys.executable, "-m", "facequeue", "--config", str(cfg), "import", str(csv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr


def start(cfg: Path, journal: Path, once: bool = False, stage_s: float = 0.25) -> subprocess.Popen:
    env = {**os.environ, "FQ_TEST_JOURNAL": str(journal), "FQ_STAGE_S": str(stage_s)}
    args = [sys.executable, str(WORKER), str(cfg)] + (["--once"] if once else [])
    # stderr to a file: a pipe nobody reads would block a daemon that logs a lot
    with open(log_of(cfg), "ab") as err:
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)


def log_of(cfg: Path) -> Path:
    return cfg.parent / "daemons.log"


def log_tail(cfg: Path) -> str:
    return log_of(cfg).read_text(errors="replace")[-2000:]


ACCEPTED = (
    "SELECT p.name, i.url, i.crop_path FROM images i JOIN people p ON p.id = i.person_id "
    "WHERE i.state = 'accepted' ORDER BY 1, 2"
)


def baseline_on_sqlite(folder: Path) -> set[tuple]:
    cfg = write_config(folder)
    queue_people(cfg, PEOPLE)
    proc = start(cfg, folder / "journal.txt", once=True, stage_s=0.01)
    assert proc.wait(timeout=300) == 0, log_tail(cfg)
    con = sqlite3.connect(folder / "data" / "facequeue.db")
    rows = set(con.execute(ACCEPTED).fetchall())
    con.close()
    return rows


def at_rest(url: str) -> tuple[int, dict]:
    with psycopg.connect(url) as con:
        summary = dict(con.execute("SELECT state, people FROM queue_summary").fetchall())
    busy = summary.get("queued", 0) + summary.get("running", 0)
    return busy, summary


def kill_and_restart(cfg: Path, url: str, journal: Path, daemons: list, rng) -> tuple[int, int]:
    """SIGKILL a random daemon at a random moment, restart it; 12 times."""
    kills = meaningful = 0
    deadline = time.time() + 240
    while kills < 12 and time.time() < deadline:
        # dead daemons' leases are taken over at once, so the queue drains fast: kill often
        time.sleep(rng.uniform(0.2, 0.8))
        i = rng.randrange(len(daemons))
        daemons[i].send_signal(signal.SIGKILL)
        daemons[i].wait()
        kills += 1
        busy, _ = at_rest(url)
        meaningful += busy > 0
        daemons[i] = start(cfg, journal)
    return kills, meaningful


def wait_until_at_rest(cfg: Path, url: str, daemons: list, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and at_rest(url)[0]:
        for proc in daemons:
            if proc.poll() is not None:
                pytest.fail(f"daemon exited early: {log_tail(cfg)}")
        time.sleep(0.5)


def stop_all(daemons: list) -> None:
    for proc in daemons:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in daemons:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_journal(journal: Path) -> None:
    lines = journal.read_text().splitlines()
    assert not [line for line in lines if line.startswith("VIOLATION")]
    procs_per_person: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith("start"):
            _, pid, _, proc = line.split()
            procs_per_person.setdefault(pid, set()).add(proc)
    assert len({p for procs in procs_per_person.values() for p in procs}) > 3  # restarts worked
    assert any(len(procs) > 1 for procs in procs_per_person.values())  # leases taken over


@pytest.mark.slow
def test_three_daemons_sigkilled_at_random_match_one_uninterrupted_daemon(tmp_path, pg_url):
    expected = baseline_on_sqlite(tmp_path / "baseline")
    assert expected

    cfg = write_config(tmp_path / "shared", pg_url)
    queue_people(cfg, PEOPLE)
    journal = tmp_path / "shared" / "journal.txt"
    daemons = [start(cfg, journal) for _ in range(3)]
    try:
        kills, meaningful = kill_and_restart(cfg, pg_url, journal, daemons, random.Random(4321))
        # Survivors and restarts finish; a dead daemon's leases expire and are taken over.
        wait_until_at_rest(cfg, pg_url, daemons)
    finally:
        stop_all(daemons)
    assert kills >= 10 and meaningful >= 10, f"{kills} kills, {meaningful} while work was left"
    busy, summary = at_rest(pg_url)
    assert busy == 0 and "failed" not in summary, summary
    assert sum(summary.values()) == PEOPLE

    with psycopg.connect(pg_url) as con:
        got = set(con.execute(ACCEPTED).fetchall())
        dup_people = con.execute(
            "SELECT COUNT(*) - COUNT(DISTINCT (slug, country)) FROM people"
        ).fetchone()[0]
        dup_images = con.execute(
            "SELECT COUNT(*) - COUNT(DISTINCT (person_id, url)) FROM images"
        ).fetchone()[0]
        leased = con.execute(
            "SELECT COUNT(*) FROM people WHERE lease_owner IS NOT NULL"
        ).fetchone()[0]
    assert dup_people == 0 and dup_images == 0 and leased == 0
    assert got == expected  # the same accepted images with the same crop paths
    for _, _, crop in got:
        assert (tmp_path / "shared" / "data" / crop).is_file()
    check_journal(journal)
    # A SIGKILL may interrupt an atomic write: its temp names a dead owner, so a sweep may
    # remove it; no temp of a live writer is left behind.
    data = tmp_path / "shared" / "data"
    temps = [p for p in data.rglob("*") if p.name.endswith((".tmp", ".part"))]
    assert all(owner_is_dead(p) for p in temps), temps
