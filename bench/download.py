"""Download benchmark: facequeue against img2dataset, plain aiohttp and `requests`, one run.

One server process serves distinct JPEGs (one photo, a different COM segment each) from
--hosts local ports ("hosts"), adding --latency seconds per image. Each downloader runs in
its own process on the same URLs; we measure images/s and process-tree RSS (sampled every
50 ms, children included):
  1. facequeue's Downloader (default config unless --concurrency/--per-host), RSS after
     500 images and at the end (memory must stay flat as the count grows);
  2. plain aiohttp at the same concurrency and per-host limit (GET, read, write a file);
  3. img2dataset (pip-installed into its own cached virtualenv under
     ~/.cache/facequeue-bench/) at 2 processes x 64 and x 128 threads; its best counts;
  4. sequential `requests` (the seed's way) on --baseline-count images;
  5. one host: facequeue on --single-count images of one host, against per_host / latency.
Every run starts with the page cache synced. facequeue's files are durable when `fetch`
returns; the others' are not, so each ratio is also printed "until the files are on disk":
each run's time plus the `sync` after it.
Usage: python bench/download.py [--count 5000] [--hosts 16] [--sweep 32x8,64x8,128x8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

PHOTO = "people/deepface_person_10/5.jpg"
I2D_VENV = Path.home() / ".cache" / "facequeue-bench" / "img2dataset-venv"
I2D_VERSION = "1.47.0"


def corpus_dir() -> Path:
    return Path(os.environ.get("FACEQUEUE_TESTDATA", REPO.parent / "shared" / "testdata" / "faces"))


# ------------------------------------------------------------------ server process


def _serve(n_hosts: int, latency: float, conn, stop) -> None:
    from servers import ImageHost, serve

    async def main() -> None:
        testdata = corpus_dir() if (corpus_dir() / PHOTO).is_file() else None
        hosts = [ImageHost(testdata, latency_s=latency, photo=PHOTO) for _ in range(n_hosts)]
        ctxs = [serve(h.app) for h in hosts]
        urls = [await c.__aenter__() for c in ctxs]
        conn.send(urls)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for c in reversed(ctxs):
            await c.__aexit__(None, None, None)

    asyncio.run(main())


def host_stats(base: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"{base}/stats", timeout=10) as resp:
        return json.loads(resp.read())


# ------------------------------------------------------------------ memory


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    """RSS of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_kb(pid)
        todo.extend(children.get(pid, []))
    return total / 1024


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run a command; (wall seconds, peak process-tree RSS MB, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{cmd[:3]} failed ({proc.returncode}):\n{err[-3000:]}")
    return elapsed, peak[0], out


# ------------------------------------------------------------------ child side: downloaders


def cpu_s() -> float:
    """CPU seconds of this process so far, all threads."""
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def child_facequeue(args: argparse.Namespace) -> dict:
    from facequeue.config import load_config
    from facequeue.stages.download import Downloader, make_session

    overrides: dict = {"allow_private_addresses": True}
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    if args.per_host:
        overrides["per_host"] = args.per_host
    cfg = load_config(None, data_dir=Path(args.out) / "data", download=overrides)
    urls = Path(args.urls).read_text().split()
    rss: dict[str, float] = {}

    async def main() -> tuple[float, int, int]:
        async with make_session(cfg) as session:
            downloader = Downloader(cfg, session)
            todo, done, ok, shas = iter(urls), 0, 0, set()

            async def worker() -> None:  # a bounded window of fetches, as the daemon has
                nonlocal done, ok
                for url in todo:
                    out = await downloader.fetch(url, Path(args.out) / "raw")
                    done += 1
                    ok += out.ok
                    if out.ok:
                        shas.add(out.sha256)
                    if done == min(500, len(urls)):
                        rss["at_500"] = _rss_kb(os.getpid()) / 1024

            started, cpu[0] = time.perf_counter(), cpu_s()
            await asyncio.gather(*(worker() for _ in range(4 * cfg.download.concurrency)))
            cpu[0] = cpu_s() - cpu[0]
            return time.perf_counter() - started, ok, len(shas)

    cpu = [0.0]
    elapsed, ok, distinct = asyncio.run(main())
    rss["end"] = _rss_kb(os.getpid()) / 1024
    d = cfg.download
    return dict(
        elapsed=elapsed,
        ok=ok,
        distinct=distinct,
        cpu_s=cpu[0],
        rss=rss,
        concurrency=d.concurrency,
        per_host=d.per_host,
    )


def child_aiohttp(args: argparse.Namespace) -> dict:
    import aiohttp

    urls = Path(args.urls).read_text().split()
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)

    async def main() -> tuple[float, int]:
        conn = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.per_host)
        async with aiohttp.ClientSession(connector=conn) as session:
            todo, ok = iter(enumerate(urls)), 0

            async def worker() -> None:
                nonlocal ok
                for i, url in todo:
                    async with session.get(url) as resp:
                        body = await resp.read()
                    (dest / f"{i}.jpg").write_bytes(body)
                    ok += resp.status == 200

            started, cpu[0] = time.perf_counter(), cpu_s()
            await asyncio.gather(*(worker() for _ in range(4 * args.concurrency)))
            cpu[0] = cpu_s() - cpu[0]
            return time.perf_counter() - started, ok

    cpu = [0.0]
    elapsed, ok = asyncio.run(main())
    return dict(elapsed=elapsed, ok=ok, cpu_s=cpu[0])


def child_requests(args: argparse.Namespace) -> dict:
    """The seed's way: one request at a time, write the file, open it with PIL."""
    import requests
    from PIL import Image

    urls = Path(args.urls).read_text().split()
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    ok, started = 0, time.perf_counter()
    for i, url in enumerate(urls):
        resp = requests.get(url, headers={"User-Agent": "Mozilla/5.0"}, timeout=30)
        path = dest / f"img_{i}.jpg"
        path.write_bytes(resp.content)
        with Image.open(path) as im:
            im.verify()
        ok += 1
    return dict(elapsed=time.perf_counter() - started, ok=ok)


# ------------------------------------------------------------------ parent side


def run_child(kind: str, urls: list[str], work: Path, **opts) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    (work / "urls.txt").write_text("\n".join(urls))
    cmd = [sys.executable, __file__, "--child", kind, "--urls", str(work / "urls.txt")]
    cmd += ["--out", str(work / "out")]
    for key, value in opts.items():
        if value:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    os.sync()  # nobody's sync pays for the previous run's unwritten files
    wall, peak, out = run_measured(cmd)
    result = json.loads(out.strip().splitlines()[-1])
    result.update(wall=wall, peak_mb=peak, rate=result["ok"] / result["elapsed"])
    result.update(on_disk_rate=result["ok"] / (result["elapsed"] + _sync_s()))
    shutil.rmtree(work, ignore_errors=True)
    return result


def _sync_s() -> float:
    """How long making the last run's files durable takes (facequeue's already are)."""
    started = time.perf_counter()
    os.sync()
    return time.perf_counter() - started


def ensure_img2dataset() -> Path:
    exe = I2D_VENV / "bin" / "img2dataset"
    if not exe.exists():
        print(f"installing img2dataset {I2D_VERSION} into {I2D_VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True)
        pip = [str(I2D_VENV / "bin" / "pip"), "install", "-q", f"img2dataset=={I2D_VERSION}"]
        subprocess.run(pip, check=True)
    return exe


def run_img2dataset(exe: Path, urls: list[str], work: Path, procs: int, threads: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    (work / "urls.txt").write_text("\n".join(urls))
    shard = max(100, len(urls) // (4 * procs))  # enough shards to keep every process busy
    cmd = [str(exe), f"--url_list={work / 'urls.txt'}", f"--output_folder={work / 'out'}"]
    cmd += [f"--processes_count={procs}", f"--thread_count={threads}", "--resize_mode=no"]
    cmd += ["--disable_all_reencoding=True", f"--number_sample_per_shard={shard}"]
    cmd += ["--timeout=30", "--retries=0", "--enable_wandb=False", "--compute_hash=sha256"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    wall, peak, _ = run_measured(cmd, env)
    ok = sum(json.loads(p.read_text())["successes"] for p in (work / "out").glob("*_stats.json"))
    shutil.rmtree(work, ignore_errors=True)
    return dict(elapsed=wall, wall=wall, ok=ok, peak_mb=peak, rate=ok / wall)


def row(name: str, r: dict, extra: str = "") -> str:
    cpu = f"{1000 * r['cpu_s'] / r['ok']:.2f}" if r.get("cpu_s") and r["ok"] else "-"
    return f"| {name} | {r['ok']} | {r['rate']:.0f} | {cpu} | {r['peak_mb']:.0f} | {extra} |"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--hosts", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument(
        "--rounds", type=int, default=5, help="facequeue/plain aiohttp pairs (machine noise)"
    )
    ap.add_argument("--baseline-count", type=int, default=100)
    ap.add_argument("--single-count", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=None, help="default: config")
    ap.add_argument("--per-host", type=int, default=None, help="default: config")
    ap.add_argument("--sweep", default="", help="also facequeue at CxP,CxP,... e.g. 64x8,128x8")
    ap.add_argument("--skip-img2dataset", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--urls", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        kinds = {"facequeue": child_facequeue, "aiohttp": child_aiohttp, "requests": child_requests}
        result = kinds[args.child](args)
        print(json.dumps(result))
        return

    from facequeue.config import load_config

    d = load_config(None, data_dir=Path(tempfile.gettempdir())).download
    conc, per_host = args.concurrency or d.concurrency, args.per_host or d.per_host
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    stop = ctx.Event()
    # One more port than --hosts: the single-host run gets a host no other run touched.
    server = ctx.Process(
        target=_serve, args=(args.hosts + 1, args.latency, child, stop), daemon=True
    )
    server.start()
    *hosts, lone = parent.recv()
    work = Path(tempfile.mkdtemp(prefix="fq-bench-"))
    try:
        bench(args, hosts, lone, conc, per_host, work)
    finally:
        stop.set()
        server.join(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def bench(args, hosts: list[str], lone: str, conc: int, per_host: int, work: Path) -> None:
    n, batch = args.count, iter(range(1, 1000))
    print(
        f"download bench: {n} distinct images over {args.hosts} hosts, "
        f"{args.latency * 1000:.0f} ms per image; facequeue concurrency={conc}, "
        f"per_host={per_host}; {args.rounds} rounds; {os.cpu_count()} cores\n"
    )

    def urls(count: int = n, over: list[str] = hosts) -> list[str]:
        base = next(batch) * 10_000_000  # every run downloads images nobody fetched yet
        return [f"{over[i % len(over)]}/img/{base + i}.jpg" for i in range(count)]

    lines = [
        "| downloader | ok | images/s | CPU ms/image | peak tree RSS MB | notes |",
        "|---|---|---|---|---|---|",
    ]
    limits = dict(concurrency=conc, per_host=per_host)
    fqs, plains = [], []
    for r in range(args.rounds):  # pairs, alternating order, so drift in load hits both
        pair = [("facequeue", fqs), ("aiohttp", plains)]
        for kind, into in pair if r % 2 == 0 else pair[::-1]:
            into.append(run_child(kind, urls(), work / kind, **limits))
    for i, (fq, plain) in enumerate(zip(fqs, plains, strict=True)):
        rss = f"RSS {fq['rss']['at_500']:.0f} MB at 500, {fq['rss']['end']:.0f} MB at {n}"
        lines.append(row(f"facequeue {conc}/{per_host}, round {i + 1}", fq, rss))
        lines.append(row(f"plain aiohttp {conc}/{per_host}, round {i + 1}", plain))
    for spec in filter(None, args.sweep.split(",")):
        c, p = (int(x) for x in spec.split("x"))
        r = run_child("facequeue", urls(), work / "sweep", concurrency=c, per_host=p)
        lines.append(row(f"facequeue {c}/{p} (sweep)", r, f"RSS end {r['rss']['end']:.0f} MB"))
    host_peak = max(host_stats(h)["max_in_flight"] for h in hosts)  # before img2dataset
    best = None
    if not args.skip_img2dataset:
        exe = ensure_img2dataset()
        for threads in (64, 128):
            r = run_img2dataset(exe, urls(), work / "i2d", 2, threads)
            lines.append(row(f"img2dataset 2x{threads}", r, "wall time incl. start-up"))
            best = r if best is None or r["rate"] > best["rate"] else best
    base = run_child("requests", urls(args.baseline_count), work / "rq")
    lines.append(row("sequential requests", base))
    single = run_child("facequeue", urls(args.single_count, [lone]), work / "one", **limits)
    ceiling = min(per_host, conc) / args.latency
    lines.append(row("facequeue, one host", single, f"ceiling per_host/latency {ceiling:.0f}/s"))
    print("\n".join(lines) + "\n")

    fq_rate = median([f["rate"] for f in fqs])
    ratios = [f["rate"] / p["rate"] for f, p in zip(fqs, plains, strict=True)]
    cpu_fq = median([f["cpu_s"] / f["ok"] for f in fqs])
    cpu_plain = median([p["cpu_s"] / p["ok"] for p in plains])
    first = fqs[0]["rss"]
    print(f"facequeue median                         : {fq_rate:.0f} images/s")
    print(
        f"facequeue / plain aiohttp, same limits   : {median(ratios):.2f}x median of rounds "
        f"({', '.join(f'{x:.2f}' for x in ratios)}) (goal >= 0.9)"
    )
    on_disk = [f["on_disk_rate"] / p["on_disk_rate"] for f, p in zip(fqs, plains, strict=True)]
    print(
        f"the same, until the files are on disk    : {median(on_disk):.2f}x "
        "(each run's time plus the sync that makes its files durable)"
    )
    print(
        f"CPU per image, facequeue / plain aiohttp : {1000 * cpu_fq:.2f} / {1000 * cpu_plain:.2f} "
        f"ms = {cpu_fq / cpu_plain:.2f} (medians; the server process is separate)"
    )
    if best:
        print(
            f"facequeue median / img2dataset best      : {fq_rate / best['rate']:.2f}x "
            "(goal >= 1.5)"
        )
    print(f"facequeue / sequential requests          : {fq_rate / base['rate']:.1f}x")
    print(
        f"facequeue memory, 500 -> {n} images     : {first['at_500']:.0f} -> "
        f"{first['end']:.0f} MB ({first['end'] - first['at_500']:+.0f} MB); peak tree "
        f"{max(f['peak_mb'] for f in fqs):.0f} MB"
    )
    print(
        f"one host / its ceiling                   : {single['rate'] / ceiling:.2f} "
        f"(peak in flight {host_stats(lone)['max_in_flight']}, limit {per_host})"
    )
    print(f"per-host peak in flight, all hosts       : {host_peak} (limit {per_host})")
    if host_peak > per_host:
        sys.exit("per-host limit exceeded")


if __name__ == "__main__":
    main()
