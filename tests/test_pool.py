"""The analysis pool under failure (issue 12 items 2-4): real spawn workers, real DeepFace.

A SIGKILLed worker is replaced and its image retried once, then rejected
``analysis_crashed``; a stuck one is killed at ``image_timeout_s`` (``analysis_timeout``);
odd images are rejections with a reason, and decoding stays within a memory budget.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facequeue.stages.curate import CurationParams, gate
from facequeue.vision.analyze import AnalysisSettings
from facequeue.vision.pool import AnalysisPool, WorkerLost

PUTIN = "people/Vladimir_Putin/1.jpg"
PARAMS = CurationParams.for_model("Dlib")


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> AnalysisSettings:
    return AnalysisSettings(deepface_home=str(tmp_path_factory.mktemp("deepface")))


@pytest.fixture
async def pool(settings):
    p = AnalysisPool(settings, workers=1)
    await asyncio.to_thread(p.warm)
    yield p
    p.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_killed_worker_is_replaced_and_image_retried_once_then_rejected(pool, testdata_dir):
    """Item 2: every worker that picks the image up is SIGKILLed (as the OOM killer
    would): the image is tried twice, then rejected analysis_crashed; the pool goes on."""
    killed: set[int] = set()

    async def killer() -> None:
        while len(killed) < 2:
            for pid in pool.pids():
                if pid not in killed:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            await asyncio.sleep(0.01)

    k = asyncio.create_task(killer())
    a = await pool.analyze(str(testdata_dir / PUTIN))
    await asyncio.wait_for(k, 60)
    assert a.status == "analysis_crashed" and "signal 9" in (a.detail or "")
    assert gate(a, PARAMS) == "analysis_crashed"
    assert len(killed) == 2 and all(_gone(pid) for pid in killed)
    # Nobody else is affected: the next image is analysed by a fresh worker.
    b = await pool.analyze(str(testdata_dir / PUTIN))
    assert b.status == "ok" and b.embedding is not None
    assert pool.pids() and not set(pool.pids()) & killed


async def test_one_crash_is_retried_and_succeeds(pool, testdata_dir):
    first = pool.pids()[0]

    async def kill_once() -> None:
        await asyncio.sleep(0.02)
        os.kill(first, signal.SIGKILL)

    k = asyncio.create_task(kill_once())
    a = await pool.analyze(str(testdata_dir / PUTIN))
    await k
    assert a.status == "ok" and first not in pool.pids()


async def test_stuck_worker_is_killed_at_the_deadline(settings, testdata_dir):
    """Item 3: past image_timeout_s the worker is killed, replaced, the image rejected."""
    pool = AnalysisPool(settings, workers=1, image_timeout_s=0.001)
    try:
        await asyncio.to_thread(pool.warm)
        stuck = pool.pids()[0]
        a = await pool.analyze(str(testdata_dir / PUTIN))
        assert a.status == "analysis_timeout" and "longer than" in (a.detail or "")
        assert gate(a, PARAMS) == "analysis_timeout"
        assert _gone(stuck)
        with pytest.raises(WorkerLost) as lost:
            await pool.run(time.sleep, 3600, timeout=0.5)
        assert lost.value.kind == "timeout"
        pool.timeout_s = 120.0
        b = await pool.analyze(str(testdata_dir / PUTIN))
        assert b.status == "ok"
    finally:
        pool.close()


async def test_cancelled_task_kills_its_worker_and_close_does_not_wait(settings):
    """Shutdown: a person cancelled after the grace period takes its worker down with it,
    and close() returns within its grace even with a worker stuck in a task."""
    pool = AnalysisPool(settings, workers=2)
    await asyncio.to_thread(pool.warm)
    pids = pool.pids()
    task = asyncio.create_task(pool.run(time.sleep, 3600))
    other = asyncio.create_task(pool.run(time.sleep, 3600))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    closer = threading.Thread(target=pool.close, kwargs={"grace_s": 1.0})
    closer.start()
    closer.join(30)  # a deadline, not a measurement: close() must not block on `other`
    assert not closer.is_alive()
    other.cancel()
    await asyncio.gather(other, return_exceptions=True)
    for pid in pids:
        for _ in range(100):
            if _gone(pid):
                break
            await asyncio.sleep(0.05)
        assert _gone(pid)


def test_no_worker_outlives_a_killed_parent(settings, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            from facequeue.vision.analyze import AnalysisSettings
            from facequeue.vision.pool import AnalysisPool
            if __name__ == "__main__":
                s = AnalysisSettings(deepface_home={settings.deepface_home!r})
                print(" ".join(map(str, AnalysisPool(s, 2).warm())), flush=True)
                time.sleep(3600)
            """
        )
    )
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            pids = [int(p) for p in proc.stdout.readline().split()]  # type: ignore[union-attr]
            assert len(pids) == 2 and not any(_gone(p) for p in pids)
        finally:
            proc.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.1)
    assert all(_gone(p) for p in pids)


async def test_odd_images_are_rejections_not_failures(pool, tmp_path, testdata_dir):
    """Item 4: a 100x210000 PNG (made cv2.resize raise) and bodies that are no image."""
    strip = tmp_path / "strip.png"
    Image.new("RGB", (100, 210000), (200, 180, 160)).save(strip)
    a = await pool.analyze(str(strip))
    assert a.status == "no_face" and gate(a, PARAMS) == "no_face"

    html = tmp_path / "page.jpg"
    html.write_bytes(b"<!DOCTYPE html><html><body>Not found</body></html>")
    a = await pool.analyze(str(html))
    assert a.status == "unreadable" and a.detail == "an HTML page, not an image"

    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes((testdata_dir / PUTIN).read_bytes()[:3000])
    a = await pool.analyze(str(truncated))
    assert a.status == "unreadable" and "truncated" in (a.detail or "")
    assert "\n" not in (a.detail or "")

    corrupt = tmp_path / "corrupt.png"
    data = bytearray(strip.read_bytes()[:2000])
    data[100:400] = os.urandom(300)
    corrupt.write_bytes(bytes(data))
    a = await pool.analyze(str(corrupt))
    assert a.status == "unreadable" and gate(a, PARAMS) == "unreadable"


async def test_large_rgba_png_stays_within_the_memory_budget(pool, tmp_path, testdata_dir):
    """Item 4: a 7000x7000 RGBA PNG took a worker to 1.3 GB; now under ~600 MB peak, and the
    face in a large photo is still found (decoded reduced)."""
    big = tmp_path / "big.png"
    im = Image.new("RGBA", (7000, 7000), (0, 0, 0, 0))
    face = Image.open(testdata_dir / PUTIN).convert("RGBA")
    im.paste(face.resize((face.width * 6, face.height * 6)), (1000, 1000))
    im.save(big)
    a = await pool.analyze(str(big))
    assert a.status == "ok" and a.faces
    peak = _peak_rss_mb(pool.pids()[0])
    print(f"worker peak RSS after a 7000x7000 RGBA PNG: {peak:.0f} MB")
    assert peak < 600

    jpeg = tmp_path / "big.jpg"
    im.convert("RGB").save(jpeg, quality=90)
    a = await pool.analyze(str(jpeg))
    assert a.status == "ok" and a.faces
    assert _peak_rss_mb(pool.pids()[0]) < 600


async def test_image_over_the_decode_budget_is_refused(settings, tmp_path):
    small_budget = AnalysisSettings(deepface_home=settings.deepface_home, decode_budget_mb=16)
    pool = AnalysisPool(small_budget, workers=1)
    try:
        png = tmp_path / "wide.png"
        Image.fromarray(np.full((3000, 3000, 4), 128, np.uint8), "RGBA").save(png)
        a = await pool.analyze(str(png))
        assert a.status == "unreadable" and "over the 16 MB budget" in (a.detail or "")
    finally:
        pool.close()
