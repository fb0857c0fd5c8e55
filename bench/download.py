"""Download benchmark: facequeue's Downloader vs the seed's one-at-a-time way, same run.

A separate process serves distinct JPEGs (same photo, a different COM segment each) from
several local ports ("hosts"), adding --latency seconds per image. We measure:
  1. facequeue: all --count URLs spread over --hosts hosts, default download limits;
  2. baseline: --baseline-count URLs one at a time with urllib + PIL verify (the seed's way);
  3. single host: --single-count URLs on one host, against its ceiling per_host / latency.
Peak RSS is sampled during each facequeue phase; per-host peak concurrency comes from the
servers. Usage: python bench/download.py [--count 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from facequeue.config import load_config  # noqa: E402
from facequeue.stages.download import Downloader, make_session  # noqa: E402

PHOTO = "people/deepface_person_10/5.jpg"


def corpus_dir() -> Path:
    return Path(os.environ.get("FACEQUEUE_TESTDATA", REPO.parent / "shared" / "testdata" / "faces"))


# ------------------------------------------------------------------ server process


def _serve(n_hosts: int, latency: float, conn, stop) -> None:
    from servers import ImageHost, serve

    async def main() -> None:
        testdata = corpus_dir() if (corpus_dir() / PHOTO).is_file() else None
        hosts = [ImageHost(testdata, latency_s=latency, photo=PHOTO) for _ in range(n_hosts)]
        async with _serve_all(hosts, serve) as urls:
            conn.send(urls)
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


class _serve_all:
    def __init__(self, hosts, serve):
        self.hosts, self.serve, self.ctxs = hosts, serve, []

    async def __aenter__(self):
        urls = []
        for h in self.hosts:
            ctx = self.serve(h.app)
            h.base_url = await ctx.__aenter__()
            self.ctxs.append(ctx)
            urls.append(h.base_url)
        return urls

    async def __aexit__(self, *exc):
        for ctx in reversed(self.ctxs):
            await ctx.__aexit__(None, None, None)


def host_stats(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/stats", timeout=10) as resp:
        return json.loads(resp.read())


# ------------------------------------------------------------------ measurements


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssPeak:
    """Samples RSS every 20 ms in a thread while active."""

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


async def run_facequeue(cfg, urls: list[str], dest: Path, window: int) -> tuple[float, int, int]:
    async with make_session(cfg) as session:
        downloader = Downloader(cfg, session)
        todo = iter(urls)
        ok, shas, bad = 0, set(), []

        async def worker() -> None:  # a bounded window of fetches, as the daemon has
            nonlocal ok
            for url in todo:
                out = await downloader.fetch(url, dest)
                if out.ok:
                    ok += 1
                    shas.add(out.sha256)
                else:
                    bad.append(out)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(window)))
        elapsed = time.perf_counter() - started
    if bad:
        print(f"  failures: {len(bad)}, e.g. {bad[0].reason}: {bad[0].detail}")
    return elapsed, ok, len(shas)


def run_baseline(urls: list[str], dest: Path) -> tuple[float, int]:
    """The seed's way: one request at a time, write the file, open it with PIL."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    ok = 0
    started = time.perf_counter()
    for i, url in enumerate(urls):
        req = urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        path = dest / f"img_{i}.jpg"
        path.write_bytes(body)
        if len(body) > 100:
            with Image.open(path) as im:
                im.verify()
            ok += 1
    return time.perf_counter() - started, ok


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--baseline-count", type=int, default=100)
    ap.add_argument("--single-count", type=int, default=400)
    ap.add_argument(
        "--concurrency", type=int, default=None, help="download.concurrency (default: config)"
    )
    ap.add_argument(
        "--per-host", type=int, default=None, help="download.per_host (default: config)"
    )
    ap.add_argument(
        "--window",
        type=int,
        default=0,
        help="fetches in flight from the caller (default 4 x concurrency; the "
        "downloader's own limits still apply)",
    )
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(args.hosts, args.latency, child, stop), daemon=True)
    server.start()
    hosts = parent.recv()
    work = Path(tempfile.mkdtemp(prefix="fq-bench-"))
    try:
        overrides = {"allow_private_addresses": True}
        if args.concurrency:
            overrides["concurrency"] = args.concurrency
        if args.per_host:
            overrides["per_host"] = args.per_host
        cfg = load_config(None, data_dir=work / "data", download=overrides)
        d = cfg.download
        window = args.window or 4 * d.concurrency
        print(
            f"facequeue download bench: {args.count} images over {args.hosts} hosts, "
            f"{args.latency * 1000:.0f} ms latency per image, concurrency={d.concurrency}, "
            f"per_host={d.per_host}, caller window={window}"
        )

        urls = [f"{hosts[i % len(hosts)]}/img/{i}.jpg" for i in range(args.count)]
        with RssPeak() as mem:
            elapsed, ok, distinct = asyncio.run(run_facequeue(cfg, urls, work / "raw", window))
        fq_rate = ok / elapsed
        peaks = [host_stats(h)["max_in_flight"] for h in hosts]
        ceiling = min(d.concurrency, d.per_host * args.hosts) / args.latency
        print(
            f"facequeue : {ok}/{args.count} ok ({distinct} distinct) in {elapsed:.2f} s = "
            f"{fq_rate:.1f} images/s (ceiling {ceiling:.0f}/s); peak RSS {mem.peak:.1f} MB "
            f"(+{mem.peak - mem.start:.1f} MB during the run); per-host peak in flight "
            f"{max(peaks)} (limit {d.per_host})"
        )

        base_urls = [
            f"{hosts[i % len(hosts)]}/img/{10_000_000 + i}.jpg" for i in range(args.baseline_count)
        ]
        b_elapsed, b_ok = run_baseline(base_urls, work / "baseline")
        b_rate = b_ok / b_elapsed
        print(
            f"baseline  : {b_ok}/{args.baseline_count} one at a time (urllib + PIL) in "
            f"{b_elapsed:.2f} s = {b_rate:.1f} images/s"
        )
        print(f"ratio     : {fq_rate / b_rate:.1f}x the baseline (target >= 10x)")

        single = [f"{hosts[0]}/img/{20_000_000 + i}.jpg" for i in range(args.single_count)]
        with RssPeak() as smem:
            s_elapsed, s_ok, _ = asyncio.run(run_facequeue(cfg, single, work / "raw", window))
        s_rate = s_ok / s_elapsed
        s_ceiling = min(d.per_host, d.concurrency) / args.latency
        print(
            f"one host  : {s_ok}/{args.single_count} in {s_elapsed:.2f} s = {s_rate:.1f} images/s, "
            f"{100 * s_rate / s_ceiling:.0f}% of its ceiling per_host/latency = {s_ceiling:.0f}/s; "
            f"peak in flight {host_stats(hosts[0])['max_in_flight']}; peak RSS {smem.peak:.1f} MB"
        )
        if max(peaks) > d.per_host:
            sys.exit("per-host limit exceeded")
    finally:
        stop.set()
        server.join(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
