"""Recognition latency against gallery size: the vectorised in-memory index vs. a brute-force
baseline (a python loop over every stored embedding), measured in the same run.

Synthetic 128-d embeddings (Dlib's size; identity centre + noise) are stored in a real
facequeue SQLite database (people, images, gallery_images), so "load" is the real
`gallery.load_index` path, run once per gallery. Each query is a noisy view of a random
identity; both methods must agree on the nearest identity.

    .venv/bin/python bench/recognize.py [--sizes 100,1000,10000] [--per-person 10] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facequeue.config import Config  # noqa: E402
from facequeue.stages import gallery  # noqa: E402
from facequeue.store import SqliteStore  # noqa: E402
from facequeue.vision.recognize import brute_force_search  # noqa: E402

DIM = 128


async def make_gallery(db: Path, identities: int, per_person: int, rng) -> np.ndarray:
    """people + accepted images + gallery_images rows; returns the identity centres."""
    centres = rng.normal(size=(identities, DIM)).astype(np.float32)
    centres *= 0.9 / np.linalg.norm(centres, axis=1, keepdims=True) * 1.0
    store = await SqliteStore.open(db)
    conn = store.conn
    await conn.execute("BEGIN")
    await conn.executemany(
        "INSERT INTO people (id, name, slug, country, source, state, stage) "
        "VALUES (?, ?, ?, 'XX', 'bench', 'promoted', 'done')",
        [(i + 1, f"Person {i + 1}", f"Person_{i + 1}") for i in range(identities)],
    )
    rows, grows = [], []
    image_id = 0
    for i in range(identities):
        noise = rng.normal(scale=0.04, size=(per_person, DIM)).astype(np.float32)
        for vec in centres[i] + noise:
            image_id += 1
            rows.append((image_id, i + 1, image_id, f"https://example.org/{image_id}.jpg"))
            grows.append(
                (
                    i + 1,
                    image_id,
                    f"gallery/Person_{i + 1}__XX/{image_id}.jpg",
                    f"{image_id:064x}",
                    vec.tobytes(),
                )
            )
    await conn.executemany(
        "INSERT INTO images (id, person_id, provider, rank, url, state) "
        "VALUES (?, ?, 'bench', ?, ?, 'accepted')",
        rows,
    )
    await conn.executemany(
        "INSERT INTO gallery_people (person_id, folder, images, model, metric, threshold, "
        "nearest_other_distance) VALUES (?, ?, ?, 'Dlib', 'euclidean', 0.6, 0.3)",  # tested
        [(i + 1, f"gallery/Person_{i + 1}__XX", per_person) for i in range(identities)],
    )
    await conn.executemany(
        "INSERT INTO gallery_images (person_id, image_id, path, sha256, embedding) "
        "VALUES (?, ?, ?, ?, ?)",
        grows,
    )
    await conn.execute("COMMIT")
    await store.close()
    return centres


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def run_size(
    tmp: Path, identities: int, per_person: int, queries: int, brute_queries: int, rng
) -> dict:
    data = tmp / f"g{identities}"
    cfg = Config(data_dir=data, gallery={"threshold": 0.6})
    centres = await make_gallery(cfg.db_path, identities, per_person, rng)
    store = await SqliteStore.open(cfg.db_path)
    t = time.perf_counter()
    index = await gallery.load_index(cfg, store)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    await gallery.self_test(cfg, store, 1)  # what promotion adds: load + leave-one-out
    selftest_s = time.perf_counter() - t
    await store.close()
    assert len(index) == identities * per_person

    who = rng.integers(0, identities, size=queries)
    qs = (centres[who] + rng.normal(scale=0.04, size=(queries, DIM))).astype(np.float32)

    index.search(qs[0], 5)  # warm-up
    fast = []
    fast_top = []
    for q in qs:
        t = time.perf_counter()
        m = index.search(q, 5)
        fast.append(time.perf_counter() - t)
        fast_top.append(m[0].person_id)

    stored = list(
        zip(index.person_ids.tolist(), list(index.matrix), strict=False)
    )  # loaded once, like ours
    slow = []
    agree = 0
    n_brute = min(brute_queries, queries)
    for q, top in zip(qs[:n_brute], fast_top[:n_brute], strict=False):
        t = time.perf_counter()
        best = brute_force_search(stored, q, "euclidean", 5)
        slow.append(time.perf_counter() - t)
        agree += best[0][0] == top
    correct = sum(int(p) == int(w) + 1 for p, w in zip(fast_top, who, strict=False))
    return {
        "identities": identities,
        "embeddings": len(index),
        "matrix_mb": index.matrix.nbytes / 2**20,
        "load_s": load_s,
        "selftest_s": selftest_s,
        "fast_med_ms": 1e3 * statistics.median(fast),
        "fast_p95_ms": 1e3 * pct(fast, 0.95),
        "slow_med_ms": 1e3 * statistics.median(slow),
        "brute_n": n_brute,
        "agree": agree,
        "correct": correct,
        "queries": queries,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--per-person", type=int, default=10)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--brute-queries",
        type=int,
        default=10,
        help="queries timed with the slow baseline per size",
    )
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(
        f"gallery recognition latency, {DIM}-d float32, {args.per_person} images per identity, "
        f"euclidean, top-5 identities per query"
    )
    print(
        f"{'identities':>10} {'embeddings':>10} {'matrix':>8} {'load once':>10} "
        f"{'self-test':>10} {'vectorised':>11} {'p95':>8} {'brute loop':>11} {'speed-up':>9} "
        f"{'agree':>7} {'top-1':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            r = await run_size(
                Path(tmp), size, args.per_person, args.queries, args.brute_queries, rng
            )
            print(
                f"{r['identities']:>10} {r['embeddings']:>10} {r['matrix_mb']:>6.1f}MB "
                f"{r['load_s'] * 1e3:>8.0f}ms {r['selftest_s'] * 1e3:>8.0f}ms "
                f"{r['fast_med_ms']:>9.2f}ms {r['fast_p95_ms']:>6.2f}ms "
                f"{r['slow_med_ms']:>9.1f}ms {r['slow_med_ms'] / r['fast_med_ms']:>8.0f}x "
                f"{r['agree']:>3}/{r['brute_n']:<3} {r['correct']:>4}/{r['queries']}"
            )
    print("self-test = what promoting one person adds (load the index + leave-one-out + re-tests);")
    print(
        "vectorised = GalleryIndex.search (one matrix-vector product + per-identity "
        "np.minimum.reduceat, matrix kept in memory);\nbrute loop = python loop computing the "
        "distance to every stored embedding (same in-memory vectors); both per query, median."
    )


if __name__ == "__main__":
    asyncio.run(main())
