"""Issue 12 item 11: crash windows. Files no row references and temp files of dead processes
are removed at daemon start-up and by `doctor --fix`; referenced files, and temp files of live
processes, stay. Real CLI processes, real SQLite, real files."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import run

from facequeue.files import owner_tag

pytestmark = pytest.mark.slow  # CLI subprocesses


REFERENCED = [
    "raw/ab/" + "ab" * 32 + ".jpg",
    "faces/Ana__Serbia/Ana_20260101_000000_1.jpg",
    "faces/Ana__Serbia/Ana_20260101_000000_1.json",  # the sidecar of a referenced crop
    "candidates/Ana__Serbia/1.jpg",
    "candidates/Ana__Serbia/1_1.jpg",  # another face of the same image
    "gallery/Ana__Serbia/Ana_1.jpg",
]
ORPHANS = [
    "raw/cd/" + "cd" * 32 + ".jpg",  # renamed into place, row never written
    "faces/Ana__Serbia/Ana_20260101_000000_9.jpg",
    "faces/Gone__Serbia/Gone_20260101_000000_7.jpg",  # forget raced a stage
    "candidates/Ana__Serbia/9.jpg",
    "gallery/Gone__Serbia/Gone_7.jpg",
]


@pytest.fixture
def data(tmp_path):
    cfg = tmp_path / "facequeue.toml"
    cfg.write_text('data_dir = "data"\n[queue]\npoll_s = 0.1\n')
    assert run(cfg, "add-person", "Ana", "-c", "Serbia").returncode == 0
    db = tmp_path / "data" / "facequeue.db"
    con = sqlite3.connect(db)
    con.execute("UPDATE people SET state = 'promoted', stage = 'done', folder = 'Ana__Serbia'")
    con.execute(
        "INSERT INTO images (id, person_id, provider, rank, url, state, raw_path, face_path, "
        "crop_path) VALUES (1, 1, 't', 1, 'u', 'accepted', ?, ?, ?)",
        (REFERENCED[0], REFERENCED[3], REFERENCED[1]),
    )
    con.execute(
        "INSERT INTO gallery_people (person_id, folder, images, model, metric, threshold) "
        "VALUES (1, 'gallery/Ana__Serbia', 1, 'Dlib', 'euclidean', 0.6)"
    )
    con.execute(
        "INSERT INTO gallery_images (person_id, image_id, path, sha256, embedding) "
        "VALUES (1, 1, ?, 'x', x'00')",
        (REFERENCED[5],),
    )
    con.commit()
    con.close()
    return cfg


def make_files(root: Path, live_pid: int, dead_pid: int) -> dict[str, Path]:
    for rel in REFERENCED + ORPHANS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    temps = {
        "dead": root / "faces/Ana__Serbia" / f".Ana_1.jpg.{owner_tag(pid=dead_pid)}~0123abcd.tmp",
        "live": root / "candidates/Ana__Serbia" / f".2.jpg.{owner_tag(pid=live_pid)}~0123abcd.tmp",
        "download": root / "tmp" / "dl-0123.part",
    }
    for path in temps.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    return temps


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("how", ["daemon start-up", "doctor --fix"])
def test_unreferenced_and_dead_temp_files_are_removed(data, how):
    root = data.parent / "data"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        temps = make_files(root, live.pid, dead_pid())
        if how == "daemon start-up":
            result = run(data, "run", "--once")
        else:
            result = run(data, "doctor", "--fix", "--skip-models")
            assert "removed 5 unreferenced file(s)" in result.stdout, result.stdout
        assert result.returncode in (0, 1), result.stderr  # doctor: 1 if a check fails
        assert all((root / rel).is_file() for rel in REFERENCED)
        assert not [rel for rel in ORPHANS if (root / rel).exists()]
        assert not temps["dead"].exists() and not temps["download"].exists()
        assert temps["live"].exists()  # a live process may still be writing it
    finally:
        live.kill()
        live.wait()


def test_doctor_fix_refuses_while_a_daemon_runs(data):
    db = data.parent / "data" / "facequeue.db"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        con = sqlite3.connect(db)
        con.execute(
            "INSERT INTO daemons (id, pid, host) VALUES (?, ?, ?)",
            (f"{socket.gethostname()}:{live.pid}:x", live.pid, socket.gethostname()),
        )
        con.commit()
        con.close()
        orphan = data.parent / "data" / ORPHANS[0]
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"x")
        result = run(data, "doctor", "--fix", "--skip-models")
        assert result.returncode == 2
        assert "a daemon is running" in result.stderr and len(result.stderr.splitlines()) == 1
        assert orphan.exists()
    finally:
        live.kill()
        live.wait()
