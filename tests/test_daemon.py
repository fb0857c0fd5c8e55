"""The daemon as a real subprocess: SIGKILL at random moments, SIGTERM, retries."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facequeue.runner.pipeline import STAGES

pytestmark = pytest.mark.slow  # real daemon subprocesses

WORKER = Path(__file__).with_name("daemon_worker.py")


def write_config(tmp_path: Path, **queue) -> Path:
    q = {
        "people_in_flight": 4,
        "lease_s": 2.0,
        "heartbeat_s": 0.3,
        "poll_s": 0.1,
        "grace_s": 1.0,
        "backoff_base_s": 0.0,
        "backoff_max_s": 0.0,
        "max_attempts": 3,
        **queue,
    }
    lines = [f'data_dir = "{tmp_path / "data"}"', "[queue]"]
    lines += [f"{k} = {v}" for k, v in q.items()]
    path = tmp_path / "facequeue.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(cfg: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facequeue", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _reap_workers():
    """Every daemon a test starts is gone, and its pipes closed, when the test ends."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()


def worker(cfg: Path, journal: Path, once: bool = True, **env) -> subprocess.Popen:
    e = {**os.environ, "FQ_TEST_JOURNAL": str(journal), **env}
    args = [sys.executable, str(WORKER), str(cfg)] + (["--once"] if once else [])
    proc = subprocess.Popen(args, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _started.append(proc)
    return proc


def queue_people(cfg: Path, n: int, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text(
        "name,country,occupation\n" + "".join(f"Person Number {i},Serbia,actor\n" for i in range(n))
    )
    cli(cfg, "import", str(csv))


def test_sigkill_at_random_moments_with_default_config_then_run_once(tmp_path):
    """The default queue config (lease 300 s, heartbeat 30 s): every restart is `run --once`,
    which takes over the killed daemon's leases at once (same host, process gone)."""
    cfg = tmp_path / "facequeue.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    queue_people(cfg, 40, tmp_path)
    journal = tmp_path / "journal.txt"
    rng = random.Random(1234)
    kills = 0
    for _ in range(30):
        if kills >= 12:
            break
        proc = worker(cfg, journal, once=True, FQ_TEST_STAGE_S="0.25")
        try:
            proc.wait(timeout=rng.uniform(0.8, 2.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
        con = sqlite3.connect(tmp_path / "data" / "facequeue.db")
        running = con.execute("SELECT COUNT(*) FROM people WHERE state = 'running'").fetchone()[0]
        con.close()
        assert kills or not running
    assert kills >= 10, f"only {kills} kills happened; make stages slower"
    # One more `run --once` finishes everyone: no lease of a dead daemon is waited for.
    final = worker(cfg, journal, once=True, FQ_TEST_STAGE_S="0.01")
    assert final.wait(timeout=300) == 0, final.stderr.read().decode()[-2000:]

    con = sqlite3.connect(tmp_path / "data" / "facequeue.db")
    rows = con.execute("SELECT state, stage, COUNT(*) FROM people GROUP BY state, stage").fetchall()
    assert rows == [("promoted", "done", 40)]
    assert con.execute("SELECT COUNT(DISTINCT slug) FROM people").fetchone()[0] == 40
    lines = journal.read_text().splitlines()
    assert not [ln for ln in lines if ln.startswith("VIOLATION")]
    ends = {tuple(ln.split()[1:]) for ln in lines if ln.startswith("end")}
    ids = [r[0] for r in con.execute("SELECT id FROM people")]
    assert ends == {(str(i), s) for i in ids for s in STAGES}  # every stage of everyone done


def test_sigterm_releases_in_flight_people_and_exits_zero(tmp_path):
    cfg = write_config(tmp_path, grace_s=0.5, lease_s=60.0)
    queue_people(cfg, 3, tmp_path)
    journal = tmp_path / "journal.txt"
    proc = worker(cfg, journal, once=False, FQ_TEST_STAGE_S="30")
    deadline = time.time() + 30
    while time.time() < deadline and not (
        journal.exists() and journal.read_text().count("start") >= 3
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    con = sqlite3.connect(tmp_path / "data" / "facequeue.db")
    assert con.execute("SELECT state, lease_owner FROM people").fetchall() == [("queued", None)] * 3
    assert con.execute("SELECT COUNT(*) FROM daemons WHERE stopped_at IS NULL").fetchone()[0] == 0


def test_failing_stage_retries_then_parks_failed_then_retry_requeues(tmp_path):
    cfg = write_config(tmp_path, max_attempts=3)
    queue_people(cfg, 2, tmp_path)
    journal = tmp_path / "journal.txt"
    proc = worker(cfg, journal, FQ_TEST_FAIL="download")
    assert proc.wait(timeout=60) == 0
    con = sqlite3.connect(tmp_path / "data" / "facequeue.db")
    rows = con.execute("SELECT state, attempts, stage, last_error FROM people").fetchall()
    assert rows == [("failed", 3, "download", "RuntimeError: test failure in download")] * 2
    status = cli(cfg, "status", "--json")
    assert '"failed": 2' in status.stdout
    assert "requeued 2" in cli(cfg, "retry").stdout
    assert con.execute("SELECT state, attempts FROM people").fetchall() == [("queued", 0)] * 2
