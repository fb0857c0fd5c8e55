"""A data_dir shared by daemons on several machines: temps name their owner, sweeps remove only
dead owners' temps, and two writers storing the same content-addressed image is safe."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from facequeue.files import atomic_write_bytes, owner_is_dead, owner_tag, temp_name, temp_owner
from facequeue.ops.sweep import sweep_old_temps
from facequeue.stages.bodies import Body, place


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_names_carry_their_owner_and_are_unique():
    a, b = temp_name("x.jpg"), temp_name("x.jpg")
    assert a != b and a.startswith(".x.jpg.") and a.endswith(".tmp")
    host, pid = temp_owner(a)
    assert f"{host}~{pid}" == owner_tag() and pid == os.getpid()
    assert temp_owner(".x.jpg.1234.tmp") is None  # old style: owner unknown


def test_owner_is_dead_on_this_host_by_pid_elsewhere_by_live_daemons():
    assert owner_is_dead(temp_name("a")) is False
    gone = f".a.{owner_tag(pid=dead_pid())}~0123abcd.tmp"
    assert owner_is_dead(gone) is True
    other = f".a.{owner_tag('other-host.lan', 42)}~0123abcd.tmp"
    assert owner_is_dead(other) is None  # cannot tell without the database
    assert owner_is_dead(other, live={owner_tag("other-host.lan", 42)}) is False
    assert owner_is_dead(other, live={owner_tag("third-host", 42)}) is True


def test_sweep_removes_only_dead_owners_temps(tmp_path):
    names = {
        "mine": temp_name("a"),
        "dead_here": f".b.{owner_tag(pid=dead_pid())}~0123abcd.tmp",
        "live_there": f".c.{owner_tag('other-host', 7)}~0123abcd.part",
        "dead_there": f".d.{owner_tag('gone-host', 7)}~0123abcd.part",
        "unknown_new": "legacy.part",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    sweep_old_temps(tmp_path, live={owner_tag("other-host", 7)})
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names["mine"], names["live_there"], names["unknown_new"]}
    old = tmp_path / "legacy.part"
    os.utime(old, (0, 0))
    sweep_old_temps(tmp_path, live=set())
    assert not old.exists() and (tmp_path / names["mine"]).exists()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (200, 160), (120, 30, 200)).save(buf, "PNG")
    return buf.getvalue()


def _store_many(folder: str, rounds: int) -> None:
    """One 'machine': download the same picture again and again into the shared raw store."""
    body = _png()
    for _ in range(rounds):
        tmp = Path(folder) / "tmp" / temp_name("dl", "part")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        whole = Body(sha256=None, size=len(body), data=body)
        dest = place(whole, Path(folder) / "raw", "png", str(tmp))
        assert dest.read_bytes() == body
        assert not tmp.exists()


def test_two_writers_of_the_same_image_leave_one_whole_file(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_store_many, args=(str(tmp_path), 150)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    files = [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]
    body = _png()
    assert len(files) == 1 and files[0].read_bytes() == body
    assert files[0].name == f"{hashlib.sha256(body).hexdigest()}.png"


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_bytes(tmp_path / "f.json", b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
