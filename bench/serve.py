"""`facequeue serve` latency and throughput vs. bare detection + embedding and the CLI.

For galleries of 1,000 and 10,000 synthetic identities (128-d embeddings in a real facequeue
database, built by bench/recognize.py's `make_gallery`), the real server runs as a
subprocess (`facequeue serve` on 127.0.0.1, default max_concurrent) and a real HTTP client
uploads the same corpus photo at concurrency 1, 4 and 16. In the same run, baselines on the
same photo:
- bare: `embed_faces` in this process (decode + detection + embedding, models warm): what
  the server cannot avoid doing;
- CLI: `facequeue recognize PHOTO --json` as a subprocess, per photo (start-up, model and
  gallery load included): what a user had before the server.
Target: server p50 at concurrency 1 within 1.3x of bare; no error at concurrency 16.

    .venv/bin/python bench/serve.py [--sizes 1000,10000] [--photo people/Colin_Powell/6.jpg]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import corpus_dir  # noqa: E402
from recognize import make_gallery  # noqa: E402

from facequeue.config import load_config  # noqa: E402
from facequeue.vision.analyze import AnalysisSettings  # noqa: E402
from facequeue.vision.recognize import embed_faces  # noqa: E402

REPO = HERE.parent


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def facequeue(cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "facequeue", "--config", str(cfg), *args]


def write_config(folder: Path, weights: str) -> Path:
    cfg = folder / "facequeue.toml"
    cfg.write_text(
        f'data_dir = "data"\nlog_level = "warning"\n[analysis]\ndeepface_home = "{weights}"\n'
        "[gallery]\nthreshold = 0.6\n"
    )
    return cfg


def bare(photo: Path, settings: AnalysisSettings, n: int) -> list[float]:
    embed_faces(str(photo), settings)  # models load once, like a server worker
    out = []
    for _ in range(n):
        t = time.perf_counter()
        res = embed_faces(str(photo), settings)
        out.append(time.perf_counter() - t)
        assert res.status == "ok", res
    return out


def cli_runs(cfg: Path, photo: Path, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        res = subprocess.run(facequeue(cfg, "recognize", str(photo), "--json"), capture_output=True)
        out.append(time.perf_counter() - t)
        assert res.returncode == 0, res.stderr.decode()[-500:]
    return out


async def start_server(cfg: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FACEQUEUE_API_TOKEN"}
    proc = subprocess.Popen(
        facequeue(cfg, "serve", "--port", str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                async with s.get(f"{base}/healthz") as r:
                    if r.status == 200:
                        return proc, base
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.terminate()
    raise SystemExit("server did not become healthy in 60 s")


async def paired(base: str, data: bytes, photo: Path, settings, n: int) -> tuple[list, list]:
    """Concurrency 1, each server request right after one bare run of the same photo, so both
    see the same load on a shared machine: (server latencies, bare latencies)."""
    server, bare_t = [], []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            t = time.perf_counter()
            embed_faces(str(photo), settings)
            bare_t.append(time.perf_counter() - t)
            form = aiohttp.FormData()
            form.add_field("image", data, filename="q.jpg")
            t = time.perf_counter()
            async with s.post(f"{base}/api/recognize", data=form) as r:
                await r.read()
                assert r.status == 200, r.status
            server.append(time.perf_counter() - t)
    return server, bare_t


async def load(
    base: str, data: bytes, concurrency: int, total: int
) -> tuple[list[float], float, int]:
    """(latencies of answered requests, wall seconds, errors)."""
    latencies: list[float] = []
    errors = 0
    todo = iter(range(total))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def worker() -> None:
            nonlocal errors
            for _ in todo:
                form = aiohttp.FormData()
                form.add_field("image", data, filename="q.jpg")
                t = time.perf_counter()
                async with s.post(f"{base}/api/recognize", data=form) as r:
                    await r.read()
                    if r.status == 200:
                        latencies.append(time.perf_counter() - t)
                    else:
                        errors += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - t, errors


def ms(v: float) -> str:
    return f"{1e3 * v:8.0f}"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--photo", default="people/Colin_Powell/6.jpg", help="relative to the corpus")
    ap.add_argument(
        "--requests", type=int, default=24, help="requests per concurrency level (x c/4 above 4)"
    )
    ap.add_argument("--bare", type=int, default=20, help="bare detection+embedding repetitions")
    ap.add_argument("--cli", type=int, default=3, help="CLI runs per gallery size")
    args = ap.parse_args()
    photo = corpus_dir() / args.photo
    data = photo.read_bytes()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        weights = str(Path(tmp) / "deepface")
        settings = AnalysisSettings.from_config(load_config(write_config(Path(tmp), weights)))
        b = bare(photo, settings, args.bare)
        print(
            f"photo {args.photo} ({len(data) // 1024} KB); 2 server workers (serve.max_concurrent)"
        )
        print(
            f"bare detection + embedding, alone: p50 {1e3 * statistics.median(b):.0f} ms, "
            f"p95 {1e3 * pct(b, 0.95):.0f} ms ({len(b)} runs)"
        )
        bare_p50 = statistics.median(b)
        print(
            f"{'identities':>10} {'what':>12} {'conc':>5} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8} {'req/s':>7} {'errors':>6} {'p50/bare':>8}"
        )
        verdicts = []
        for size in [int(x) for x in args.sizes.split(",")]:
            folder = Path(tmp) / f"g{size}"
            folder.mkdir()
            cfg = write_config(folder, weights)
            await make_gallery(folder / "data" / "facequeue.db", size, 5, rng)
            c = cli_runs(cfg, photo, args.cli)
            print(
                f"{size:>10} {'CLI':>12} {1:>5} {len(c):>4} {ms(statistics.median(c))} "
                f"{ms(pct(c, 0.95))} {ms(pct(c, 0.99))} {len(c) / sum(c):7.2f} {0:>6} "
                f"{statistics.median(c) / bare_p50:8.2f}"
            )
            proc, base = await start_server(cfg)
            try:
                await load(base, data, 2, 4)  # warm-up: both workers, gallery loaded
                for conc in (1, 4, 16):
                    n = args.requests * max(1, conc // 4)
                    if conc == 1:
                        lat, b1 = await paired(base, data, photo, settings, n)
                        wall, errors, bare_p50 = sum(lat), 0, statistics.median(b1)
                        print(
                            f"{size:>10} {'bare':>12} {1:>5} {n:>4} {ms(bare_p50)} "
                            f"{ms(pct(b1, 0.95))} {ms(pct(b1, 0.99))} {n / sum(b1):7.2f} "
                            f"{0:>6} {1.0:8.2f}"
                        )
                    else:
                        lat, wall, errors = await load(base, data, conc, n)
                    p50 = statistics.median(lat) if lat else float("nan")
                    print(
                        f"{size:>10} {'server':>12} {conc:>5} {n:>4} {ms(p50)} "
                        f"{ms(pct(lat, 0.95))} {ms(pct(lat, 0.99))} {len(lat) / wall:7.2f} "
                        f"{errors:>6} {p50 / bare_p50:8.2f}"
                    )
                    if conc == 1:
                        verdicts.append((size, "p50 within 1.3x of bare", p50 / bare_p50 <= 1.3))
                        cli_ratio = statistics.median(c) / p50
                        print(
                            f"{'':>10} {'CLI/server':>12} {'':>5} {'':>4} "
                            f"{cli_ratio:8.1f}x: the server is that much faster per photo"
                        )
                    if conc == 16:
                        verdicts.append((size, "no error at concurrency 16", errors == 0))
            finally:
                proc.terminate()
                proc.wait(30)
        for size, what, ok in verdicts:
            print(f"{size:>10} identities: {what}: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    asyncio.run(main())
