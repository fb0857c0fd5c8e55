"""`facequeue status` on a database of 10,000 people (with 20 images each for 1,000 of them).

Prints the wall time of the real command against a baseline in the same run: `python -c pass`
started the same way (the interpreter start-up every CLI call pays), and the ratio.
Usage: python bench/status.py [--people 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facequeue.store import NewImage, NewPerson, SqliteStore


async def fill(db: Path, n: int) -> None:
    store = await SqliteStore.open(db)
    people = [
        NewPerson(name=f"Person {i}", slug=f"Person_{i}", country=f"Country{i % 50}")
        for i in range(n)
    ]
    await store.add_people(people)
    images = [
        NewImage(person_id=pid, provider="bench", rank=r, url=f"http://h/{pid}/{r}")
        for pid in range(1, min(n, 1000) + 1)
        for r in range(20)
    ]
    await store.insert_images(images)
    await store.close()


def timed(args: list[str], env: dict) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=env)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "facequeue.toml"
        cfg.write_text('data_dir = "."\n')
        asyncio.run(fill(Path(tmp) / "facequeue.db", args.people))
        env = {**os.environ, "FACEQUEUE_CONFIG": str(cfg)}
        base = timed([sys.executable, "-c", "import facequeue.cli"], env)
        status = timed([sys.executable, "-m", "facequeue", "status"], env)
        js = timed([sys.executable, "-m", "facequeue", "status", "--json"], env)
    print(f"people: {args.people}")
    print(f"baseline (start-up, import facequeue.cli): {base:.3f} s")
    print(
        f"facequeue status:        {status:.3f} s  (ratio to baseline {status / base:.2f}x, "
        f"query time ~{status - base:.3f} s)"
    )
    print(f"facequeue status --json: {js:.3f} s  (ratio to baseline {js / base:.2f}x)")


if __name__ == "__main__":
    main()
