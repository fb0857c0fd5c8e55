"""Throughput end to end: facequeue's analysis, curation, crops and sidecars vs the seed's
algorithm on the same 64 images.

Four simulated people (a search result each, 16 images: the person's 6-8 photos, large
photos of other people first, 2 LFW crops of others, a group photo and a no-face photo;
64 in all, mostly 1000-4600 px like real search results). Both sides get 2 spawn worker
processes on this 2-core machine, the same detector and model (config defaults), and write
a crop for every accepted image.

- facequeue: one AnalysisPool; every image analyzed once (decode, detect on <= max_side px,
  every usable face: aligned chip, embedding, pHash; crops written from the same decoded
  array), curate() per person, then per accepted image what the pipeline does: the kept
  face's crop copied into place and its JSON sidecar built from the stored analysis plus
  colours / skin / hair computed once on the crop (``metadata.describe_crop``).
- seed: per person, in a worker: DeepFace.extract_faces on images in order until 3 pass
  its checks (size >= 70, Laplacian >= 100 on the face, one face) -> references; every
  later image: whole-image 8x8 hash dedup, then DeepFace.verify against each reference
  (cosine) until one says verified; crop saved; at most 40. People run 2 at a time.

The seed side writes crops but no sidecars (its metadata script is a separate pass), so
the comparison favours the seed. Prints images/s for both, the ratio, and the peak RSS of
every process (parent and each worker, sampled from /proc every 0.1 s). Targets: ratio >=
10; every facequeue process <= 250 MB (a Pi with 2 workers).

Run: .venv/bin/python bench/analyze_speed.py [--no-seed]   (--no-seed: facequeue's side and
its memory only, no ratio; the seed's side takes ~20 minutes on a busy 2-core machine)
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from curate_quality import CORPUS, HOME, manifest, quiet_logs  # noqa: E402

from facequeue.files import atomic_copy  # noqa: E402
from facequeue.stages import metadata  # noqa: E402
from facequeue.stages.curate import Candidate, CurationParams, curate, default_threshold  # noqa: E402
from facequeue.vision import engine as faces  # noqa: E402
from facequeue.vision.analyze import AnalysisSettings, crop_box, crop_name  # noqa: E402
from facequeue.vision.pool import AnalysisPool  # noqa: E402

WORKERS = 2
# Search results are large photos (the seed asks for 1024x768 and more): the people are the
# corpus' deepface identities (1000-4600 px photos); LFW 250 px crops are distractors.
PEOPLE = ["deepface_person_01", "deepface_person_10", "deepface_person_03", "deepface_person_02"]
OTHERS = [
    "deepface_person_04",
    "deepface_person_05",
    "deepface_person_11",
    "deepface_person_12",
    "deepface_person_13",
]


def workload() -> list[tuple[str, list[str]]]:
    """4 people x 16 images: their photos, 4 large + 2 LFW others, a group and a no-face photo."""
    rows = manifest()
    people: dict[str, list[str]] = {}
    for r in rows:
        if r["path"].startswith("people/"):
            people.setdefault(r["identity"], []).append(r["path"])
    big_others = [p for ident in OTHERS for p in people[ident]]
    lfw = [
        ps[0]
        for ident, ps in sorted(people.items())
        if len(ps) == 6 and not ident.startswith("deepface")
    ]
    multi = [r["path"] for r in rows if r["path"].startswith("multi/")]
    noface = [r["path"] for r in rows if r["path"].startswith("noface/")]
    out = []
    for k, person in enumerate(PEOPLE):
        own = people[person][:8]
        n_big = 16 - len(own) - 4
        items = (
            big_others[k * 5 : k * 5 + n_big]
            + lfw[k * 2 : (k + 1) * 2]
            + own
            + [multi[k], noface[k]]
        )
        out.append((person, [str(CORPUS / p) for p in items]))
    return out


# --------------------------------------------------------------------------- RSS sampling


def rss_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    """Child pids of `pid`, from /proc/<pid>/stat of every process (no psutil needed)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


class PeakRss:
    """Peak of the summed RSS of this process and its children, and each one's own peak."""

    def __init__(self) -> None:
        self.peak = 0
        self.per_process: dict[int, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            pids = [me] + children(me)
            self.peak = max(self.peak, rss_of(pids))
            for pid in pids:
                self.per_process[pid] = max(self.per_process.get(pid, 0), rss_of([pid]))
            time.sleep(0.1)

    def describe(self) -> str:
        me = os.getpid()
        parts = [f"parent {self.per_process.get(me, 0) / 2**20:.0f} MB"] + [
            f"worker {v / 2**20:.0f} MB" for pid, v in sorted(self.per_process.items()) if pid != me
        ]
        return ", ".join(parts)

    def max_process(self) -> int:
        return max(self.per_process.values(), default=0)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


# --------------------------------------------------------------------------- seed


def seed_init(home: str) -> None:
    faces.prepare("Dlib", "dlib", home, False)


def seed_person(  # noqa: C901 - the seed's algorithm, kept as the baseline
    paths: list[str], out_dir: str, detector: str, model: str, threshold: float
) -> int:
    """The seed's "DeepFace Validation" for one person, with real DeepFace calls."""
    import cv2
    import imagehash
    from deepface import DeepFace
    from PIL import Image

    def save_face(path: str, area: dict) -> None:
        img = cv2.imread(path)
        if img is None:
            return
        h, w = img.shape[:2]
        x, y, fw, fh = area["x"], area["y"], area["w"], area["h"]
        x1, y1 = max(0, x - int(fw * 0.2)), max(0, y - int(fh * 0.2))
        x2, y2 = min(w, x + fw + int(fw * 0.2)), min(h, y + fh + int(fh * 0.2))
        cv2.imwrite(
            os.path.join(out_dir, f"seed_{os.getpid()}_{time.monotonic_ns()}.jpg"),
            img[y1:y2, x1:x2],
        )

    def ahash(path: str) -> str | None:
        img = cv2.imread(path)
        if img is None:
            return None
        return str(imagehash.average_hash(Image.fromarray(img[:, :, ::-1]), hash_size=8))

    refs: list[str] = []
    i = 0
    while i < len(paths) and len(refs) < 3:
        path = paths[i]
        i += 1
        try:
            found = DeepFace.extract_faces(
                img_path=path, detector_backend=detector, enforce_detection=False
            )
        except Exception:
            continue
        found = [f for f in found if f.get("confidence", 0) > 0] or []
        if not found:
            continue
        area = found[0]["facial_area"]
        if area["w"] < 70 or area["h"] < 70 or len(found) > 1:
            continue
        face = (found[0]["face"] * 255).astype("uint8")
        grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
        if cv2.Laplacian(grey, cv2.CV_64F).var() < 100:
            continue
        save_face(path, area)
        refs.append(path)
    accepted = len(refs)
    hashes = {ahash(r) for r in refs}
    for path in paths[i:]:
        if accepted >= 40:
            break
        h = ahash(path)
        if h is None or h in hashes:
            continue
        for ref in refs:
            try:
                res = DeepFace.verify(
                    img1_path=ref,
                    img2_path=path,
                    model_name=model,
                    detector_backend=detector,
                    distance_metric="cosine",
                    threshold=threshold,
                    enforce_detection=False,
                )
            except Exception:
                continue
            if res["verified"]:
                save_face(path, res["facial_areas"]["img2"])
                accepted += 1
                hashes.add(h)
                break
    return accepted


# --------------------------------------------------------------------------- runs


async def run_facequeue(work, settings: AnalysisSettings, out_dir: str):  # type: ignore[no-untyped-def]
    params = CurationParams.for_model(settings.model)
    pool = AnalysisPool(settings, WORKERS)
    try:
        await asyncio.get_running_loop().run_in_executor(None, pool.warm)  # model loading not timed
        with PeakRss() as rss:
            t = time.perf_counter()

            async def sidecar(name: str, path: str, k: int, a, d) -> None:  # type: ignore[no-untyped-def]
                src = crop_name(os.path.join(out_dir, "candidates", f"{name}_{k}"), d.face_index)
                dest = os.path.join(out_dir, "faces", f"{name}_{k}.jpg")
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                atomic_copy(src, dest)
                fa = a.with_face(d.face_index)
                f = fa.faces[0]
                x0, y0, _, _ = crop_box(f, 0.2, 1 << 30, 1 << 30)
                box = (f.x - x0, f.y - y0, f.w, f.h, f.confidence)
                described = await pool.run(
                    metadata.describe_crop, dest, box, metadata.stored_facts(fa), settings
                )
                row = {"url": path, "distance": d.distance, "is_reference": d.is_reference}
                side = metadata.build_sidecar(
                    dest,
                    analysis_of_crop=described,
                    person={"name": name},
                    image_row=row,
                    settings=settings,
                )
                metadata.write_sidecar(dest, side)

            async def person(name: str, paths: list[str]) -> int:
                prefix = os.path.join(out_dir, "candidates", name)
                analyses = await asyncio.gather(
                    *(pool.analyze(p, (f"{prefix}_{k}", 0.2)) for k, p in enumerate(paths))
                )
                res = curate([Candidate(k, k, a) for k, a in enumerate(analyses)], params)
                acc = [d for d in res.decisions if d.state == "accepted"]
                await asyncio.gather(
                    *(
                        sidecar(name, paths[d.image_id], d.image_id, analyses[d.image_id], d)
                        for d in acc
                    )
                )
                return len(acc)

            counts = await asyncio.gather(*(person(n, ps) for n, ps in work))
            elapsed = time.perf_counter() - t
    finally:
        pool.close()
    return elapsed, sum(counts), rss


def run_seed(work, settings: AnalysisSettings, out_dir: str) -> tuple[float, int, int]:
    thr = default_threshold(settings.model, "cosine")
    with ProcessPoolExecutor(
        WORKERS,
        mp_context=mp.get_context("spawn"),
        initializer=seed_init,
        initargs=(settings.deepface_home,),
    ) as ex:
        list(ex.map(seed_init, [settings.deepface_home] * WORKERS))  # start both workers
        with PeakRss() as rss:
            t = time.perf_counter()
            futs = [
                ex.submit(seed_person, ps, out_dir, settings.detector, settings.model, thr)
                for _, ps in work
            ]
            counts = [f.result() for f in futs]
            elapsed = time.perf_counter() - t
    return elapsed, sum(counts), rss


def main() -> int:
    quiet_logs()
    work = workload()
    n = sum(len(ps) for _, ps in work)
    settings = AnalysisSettings(deepface_home=HOME)
    faces.prepare(settings.model, settings.detector, HOME, False)
    print(
        f"{n} images, {len(work)} people, {WORKERS} workers, detector={settings.detector} "
        f"model={settings.model}, cpus={os.cpu_count()}"
    )
    with tempfile.TemporaryDirectory() as out:
        fq_t, fq_n, fq_rss = asyncio.run(run_facequeue(work, settings, out))
        print(
            f"facequeue: {fq_t:6.1f} s  {n / fq_t:6.2f} images/s  accepted {fq_n} (crops + "
            f"sidecars)  peak RSS parent+workers {fq_rss.peak / 2**20:.0f} MB "
            f"({fq_rss.describe()})"
        )
        if "--no-seed" in sys.argv:  # memory check only: no ratio without the baseline
            biggest = fq_rss.max_process() / 2**20
            print(f"largest facequeue process {biggest:.0f} MB (target <= 250 MB); no seed run")
            return 0 if biggest <= 250 else 1
        sd_t, sd_n, sd_rss = run_seed(work, settings, out)
        print(
            f"seed:      {sd_t:6.1f} s  {n / sd_t:6.2f} images/s  accepted {sd_n} (crops)  "
            f"peak RSS parent+workers {sd_rss.peak / 2**20:.0f} MB ({sd_rss.describe()})"
        )
    ratio = sd_t / fq_t
    biggest = fq_rss.max_process() / 2**20
    ok = ratio >= 10 and biggest <= 250
    print(
        f"speed-up {ratio:.1f}x (target >= 10x); largest facequeue process {biggest:.0f} MB "
        f"(target <= 250 MB): {'MET' if ok else 'NOT MET'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
