"""Does the queue scale out? People per minute with 1, 2, 4 and 8 daemons, on PostgreSQL and on
SQLite, in one run, with a fixed-duration fake stage (the real daemon, its claims, leases,
heartbeats and NOTIFY wake-ups; each stage sleeps --stage-s and writes its rows and files like
tests/fake_pipeline_worker.py). The baseline is 1 daemon on the same backend in the same run:
the ratio says how much of N daemons' work the queue lets through (target: >= 3.5x with 4
daemons on PostgreSQL). A second part measures the queue's own ceiling: claim + finish round
trips per second with the work removed.

Usage: python bench/queue_scale.py [--database-url postgresql://...] [--stage-s 0.2]
Without --database-url a throwaway PostgreSQL cluster is started (tests/pgcluster.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from pgcluster import Cluster, pg_bin_dir  # noqa: E402

from facequeue.config import load_config  # noqa: E402
from facequeue.store import Analyzed, NewImage, NewPerson, connect  # noqa: E402

WORKER = REPO / "tests" / "fake_pipeline_worker.py"
COUNTS = (1, 2, 4, 8)


def write_config(folder: Path, url: str, in_flight: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "facequeue.toml"
    path.write_text(
        f'data_dir = "{folder / "data"}"\ndatabase_url = "{url}"\nlog_level = "warning"\n'
        f"[queue]\npeople_in_flight = {in_flight}\nlease_s = 30.0\nheartbeat_s = 2.0\n"
        "poll_s = 0.2\ngrace_s = 2.0\n"
    )
    return path


async def wait_for_daemons(store, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(await store.live_daemons(60)) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(await store.live_daemons(60))} of {n} daemons started")
        await asyncio.sleep(0.1)


async def run_case(folder: Path, url: str, n: int, args) -> float:
    """People per minute of n daemons, from queueing to the last person at rest."""
    cfg_path = write_config(folder, url, args.in_flight)
    cfg = load_config(cfg_path)
    env = {**os.environ, "FQ_STAGE_S": str(args.stage_s), "FQ_IMAGES": "4"}
    store = await connect(cfg)
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(cfg_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        await wait_for_daemons(store, n)
        people = args.people_per_daemon * n
        t0 = time.monotonic()
        await store.add_people(
            [
                NewPerson(name=f"P {i}", slug=f"P_{i}", country=folder.name, source="bench")
                for i in range(people)
            ]
        )
        while True:
            summary = await store.queue_summary()
            if not summary.get("queued", 0) + summary.get("running", 0):
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        await store.close()
    return people / elapsed * 60


async def queue_ceiling(url: str, folder: Path, claimers: int, seconds: float) -> float:
    """Claim + finish round trips per second, work removed (each claimer its own store)."""
    cfg = load_config(write_config(folder, url, 1))
    stores = [await connect(cfg) for _ in range(claimers)]
    await stores[0].add_people(
        [
            NewPerson(name=f"Q {i}", slug=f"Q_{i}", country=folder.name, source="bench")
            for i in range(20000)
        ]
    )
    done = 0
    stop = time.monotonic() + seconds

    async def loop(store, owner):
        nonlocal done
        while time.monotonic() < stop:
            p = await store.claim(owner, 60)
            if p is None:
                return
            await store.finish(p.id, owner, "promoted", None)
            done += 1

    t0 = time.monotonic()
    await asyncio.gather(*(loop(s, f"c{i}") for i, s in enumerate(stores)))
    rate = done / (time.monotonic() - t0)
    for s in stores:
        await s.close()
    return rate


async def bytes_per_image(url: str, folder: Path, people: int = 100, per: int = 70) -> float:
    """Database bytes per curated image row (embedding, faces JSON, URLs, indexes)."""
    cfg = load_config(write_config(folder, url, 1))
    store = await connect(cfg)
    before = await _db_size(store, cfg)
    added = (
        await store.add_people(
            [
                NewPerson(name=f"S {i}", slug=f"S_{i}", country=folder.name, source="bench")
                for i in range(people)
            ]
        )
    ).added
    for pid in added:
        await store.insert_images(
            [
                NewImage(
                    person_id=pid,
                    provider="wikimedia",
                    rank=r,
                    url=f"https://upload.wikimedia.org/wikipedia/commons/a/ab/P{pid}_{r}.jpg",
                    thumbnail_url=f"https://upload.wikimedia.org/thumb/a/ab/P{pid}_{r}.jpg/1280px",
                    page_url=f"https://commons.wikimedia.org/wiki/File:P{pid}_{r}.jpg",
                    title=f"File:P{pid}_{r}.jpg",
                    license="CC BY-SA 4.0",
                    author="Someone",
                    width=3000,
                    height=2000,
                )
                for r in range(per)
            ]
        )
        for img in await store.images_of(pid):
            await store.record_analysis(
                img.id,
                Analyzed(
                    analysis_status="ok",
                    detail=None,
                    faces_json='[{"x": 1200, "y": 400, "w": 420, "h": 420, "conf": 1.0}]',
                    face_count=1,
                    blur=31.2,
                    brightness=0.52,
                    contrast=0.21,
                    embedding=os.urandom(512),  # 128 float32
                    phash="c3a1f0e4b2d19687",
                    timings_json='{"decode": 0.004, "detect": 0.045, "embed": 0.069}',
                    face_path=f"faces/S_{pid}/{img.id}.face.jpg",
                ),
            )
    size = await _db_size(store, cfg) - before
    await store.close()
    return size / (people * per)


async def _db_size(store, cfg) -> int:
    if cfg.database_url:
        sql = (
            "SELECT pg_total_relation_size('images') + pg_total_relation_size('people')"
            " + pg_total_relation_size('gallery_images')"
        )
        return (await store._all(sql))[0][0]
    await store._all("PRAGMA wal_checkpoint(TRUNCATE)")
    return cfg.db_path.stat().st_size


async def main(args) -> None:
    cluster = None
    if not args.database_url:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise SystemExit("PostgreSQL server binaries not found: apt-get install postgresql")
        cluster = Cluster(bin_dir)
        cluster.start()
    try:
        with tempfile.TemporaryDirectory(prefix="fq-bench-") as tmp:
            results: dict[str, dict[int, float]] = {"postgresql": {}, "sqlite": {}}
            for backend in results:
                for n in COUNTS:
                    url = ""
                    if backend == "postgresql":
                        url = cluster.create_db() if cluster else args.database_url
                    folder = Path(tmp) / f"{backend}-{n}"
                    results[backend][n] = await run_case(folder, url, n, args)
                    print(f"{backend:10} {n} daemon(s): {results[backend][n]:7.1f} people/min")
            print(
                f"\nstage {args.stage_s}s x 5 stages, {args.in_flight} people in flight per daemon"
            )
            print(f"{'daemons':>8} {'ideal':>6} {'postgresql':>11} {'sqlite':>8}")
            for n in COUNTS:
                pg = results["postgresql"][n] / results["postgresql"][1]
                lite = results["sqlite"][n] / results["sqlite"][1]
                print(f"{n:>8} {n:>5}x {pg:>10.2f}x {lite:>7.2f}x")
            four = results["postgresql"][4] / results["postgresql"][1]
            verdict = "met" if four >= 3.5 else "NOT met"
            print(f"\ntarget >= 3.5x with 4 daemons on PostgreSQL: {four:.2f}x ({verdict})")
            print("\nqueue ceiling (claim + finish per second, no work, 8 claimers):")
            for backend in ("postgresql", "sqlite"):
                url = ""
                if backend == "postgresql":
                    url = cluster.create_db() if cluster else args.database_url
                rate = await queue_ceiling(url, Path(tmp) / f"ceiling-{backend}", 8, args.seconds)
                print(f"  {backend:10} {rate:8.0f} people/s")
            print("\ndatabase bytes per analysed image row (100 people x 70 images):")
            for backend in ("postgresql", "sqlite"):
                url = ""
                if backend == "postgresql":
                    url = cluster.create_db() if cluster else args.database_url
                size = await bytes_per_image(url, Path(tmp) / f"size-{backend}")
                print(f"  {backend:10} {size:8.0f} bytes")
    finally:
        if cluster:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database")
    parser.add_argument("--stage-s", type=float, default=0.2, help="fake stage duration")
    parser.add_argument("--in-flight", type=int, default=2, help="people in flight per daemon")
    parser.add_argument("--people-per-daemon", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="queue ceiling duration")
    asyncio.run(main(parser.parse_args()))
