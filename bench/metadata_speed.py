"""Images/s of `facequeue metadata` against a seed-style baseline, measured in the same run.

    .venv/bin/python bench/metadata_speed.py [--count 120] [--workers 2] [--baseline-count N]

facequeue: the real command in a subprocess (`facequeue metadata DIR --yes -w 2`), timed end
to end (process start, pool spawn and model loading included): one decode, one detection,
one embedding per image in the worker pool, attributes on the same decoded array.

Baseline: one process, one image at a time, a separate DeepFace call per attribute, each
re-detecting the face as the seed's analyzer did: DeepFace.extract_faces (faces, regions),
DeepFace.represent (embedding), DeepFace.extract_faces again for the skin tone and again for
the hair colour, plus the same whole-image colour statistics and a JSON file. Same detector
and model (dlib / Dlib). Age and sex are skipped on both sides (no weights offline).

The corpus (../shared/testdata/faces or $FACEQUEUE_TESTDATA) is copied to a temp folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SEED_RATE = 4.8


def corpus() -> Path:
    return Path(os.environ.get("FACEQUEUE_TESTDATA", REPO.parent / "shared" / "testdata" / "faces"))


def pick(count: int) -> list[Path]:
    rows = (corpus() / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    paths = [corpus() / r.split("\t")[0] for r in rows if r.strip()]
    if count >= len(paths):
        return paths
    return [paths[i * len(paths) // count] for i in range(count)]


def copy_set(paths: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True)
    for i, p in enumerate(paths):
        rel = p.relative_to(corpus()).as_posix().replace("/", "_")
        shutil.copyfile(p, dest / f"{i:03d}_{rel}")


def run_facequeue(folder: Path, workers: int, work: Path) -> tuple[float, int, str]:
    cfg = work / "facequeue.toml"
    cfg.write_text(f'data_dir = "data"\n[analysis]\nworkers = {workers}\n', encoding="utf-8")
    exe = Path(sys.executable).parent / "facequeue"
    cmd = [str(exe), "--config", str(cfg), "metadata", str(folder), "--yes", "-w", str(workers)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    m = re.search(r"Metadata generated\s+(\d+)", proc.stdout)
    return elapsed, int(m.group(1)) if m else 0, proc.stdout[-600:] + proc.stderr[-600:]


def run_baseline(folder: Path, home: Path) -> tuple[float, int, int]:
    """Seed-style: one image at a time, one DeepFace call per attribute (each re-detects)."""
    import numpy as np
    from PIL import Image

    from facequeue.vision import attributes
    from facequeue.vision import engine as faces

    t = time.perf_counter()
    faces.prepare("Dlib", "dlib", home, False)
    from deepface import DeepFace

    done = errors = 0
    for path in sorted(folder.iterdir()):
        try:
            data = path.read_bytes()
            with Image.open(path) as im:
                props = {
                    "width": im.width,
                    "height": im.height,
                    "format": im.format,
                    "mode": im.mode,
                }
            img = np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1].copy()
            found = [
                f
                for f in DeepFace.extract_faces(
                    img, detector_backend="dlib", enforce_detection=False
                )
                if f["confidence"] > 0
            ]
            regions = [[f["facial_area"][k] for k in ("x", "y", "w", "h")] for f in found]
            emb = DeepFace.represent(
                img, model_name="Dlib", detector_backend="dlib", enforce_detection=False
            )
            skin = hair = None
            again = [
                f
                for f in DeepFace.extract_faces(
                    img, detector_backend="dlib", enforce_detection=False
                )
                if f["confidence"] > 0
            ]  # skin-tone analyzer's own detection
            if again:
                a = again[0]["facial_area"]
                box = type("B", (), {"x": a["x"], "y": a["y"], "w": a["w"], "h": a["h"]})
                skin = attributes.skin_tone(img, box)
            third = [
                f
                for f in DeepFace.extract_faces(
                    img, detector_backend="dlib", enforce_detection=False
                )
                if f["confidence"] > 0
            ]  # hair analyzer's own detection
            if third and skin:
                a = third[0]["facial_area"]
                box = type("B", (), {"x": a["x"], "y": a["y"], "w": a["w"], "h": a["h"]})
                hair = attributes.hair_colour(img, box, skin["lab"])
            grey = img.mean(axis=2)
            doc = {
                "filename": path.name,
                "md5_hash": hashlib.md5(data).hexdigest(),
                "image_properties": props,
                "faces": regions,
                "embedding_len": len(emb[0]["embedding"]) if emb else 0,
                "skin": skin,
                "hair": hair,
                "brightness": float(grey.mean()),
                "contrast": float(grey.std()),
                "saturation": attributes.saturation(img),
                "colors": attributes.dominant_colours(img),
            }
            path.with_suffix(".json").write_text(json.dumps(doc))
            done += 1
        except Exception:  # noqa: BLE001 - unreadable corpus files count as errors, as in the seed
            errors += 1
    return time.perf_counter() - t, done, errors


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=120, help="corpus images to process (>= 100)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--baseline-count",
        type=int,
        default=40,
        help="baseline on N images spread evenly over the sample (0: all); it runs "
        "at a few seconds per large photo",
    )
    args = ap.parse_args()
    paths = pick(args.count)
    with tempfile.TemporaryDirectory(prefix="fq-bench-") as tmp:
        work = Path(tmp)
        copy_set(paths, work / "fq")
        n_base = args.baseline_count or len(paths)
        base_paths = [paths[i * len(paths) // n_base] for i in range(min(n_base, len(paths)))]
        copy_set(base_paths, work / "base")
        copy_set(paths, work / "fq2")
        # facequeue before and after the baseline: the machine is shared, load drifts
        fq_s1, fq_n, tail = run_facequeue(work / "fq", args.workers, work)
        if fq_n == 0:
            sys.exit(f"facequeue metadata produced nothing:\n{tail}")
        base_s, base_n, base_err = run_baseline(work / "base", work / "data" / "deepface")
        fq_s2, fq_n2, _ = run_facequeue(work / "fq2", args.workers, work)
    fq_s = (fq_s1 + fq_s2) / 2
    print(f"facequeue runs: {fq_s1:.1f} s and {fq_s2:.1f} s ({fq_n} and {fq_n2} sidecars)")
    fq_rate = len(paths) / fq_s
    base_rate = len(base_paths) / base_s
    print(f"images: {len(paths)} (corpus sample), sidecars written: {fq_n}")
    print(
        f"facequeue metadata ({args.workers} workers, end to end incl. start-up): "
        f"{fq_s:.1f} s, {fq_rate:.2f} images/s"
    )
    print(
        f"baseline (1 process, DeepFace call per attribute): {base_s:.1f} s "
        f"for {len(base_paths)} images "
        f"({base_n} ok, {base_err} errors), {base_rate:.2f} images/s"
    )
    print(
        f"ratio facequeue / baseline: {fq_rate / base_rate:.2f}x   "
        f"(seed reported {SEED_RATE} images/s; "
        f"facequeue / seed: {fq_rate / SEED_RATE:.2f}x)"
    )


if __name__ == "__main__":
    main()
