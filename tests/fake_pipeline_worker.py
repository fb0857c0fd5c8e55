"""The real daemon (claims, leases, heartbeats, LISTEN/NOTIFY, signals) with fake stages that
write real rows and files: images found, downloaded into content-addressed raw storage,
analysed, curated (crops written atomically) and promoted, deterministically from the URL.

Used by the multi-daemon crash test and bench/queue_scale.py as a real subprocess, on either
backend. FQ_STAGE_S is the sleep of each stage (the work the queue must not slow down).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys

from facequeue.config import load_config
from facequeue.files import atomic_write_bytes
from facequeue.logs import setup_logging
from facequeue.runner.daemon import run_daemon
from facequeue.runner.pipeline import STAGES
from facequeue.store import Analyzed, Curated, Downloaded, NewImage

JOURNAL = os.environ.get("FQ_TEST_JOURNAL", "")
SLOW = float(os.environ.get("FQ_STAGE_S", "0.05"))
IMAGES = int(os.environ.get("FQ_IMAGES", "6"))


def _note(line: str) -> None:
    if not JOURNAL:
        return
    fd = os.open(JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def content(url: str) -> bytes:
    return hashlib.sha256(url.encode()).digest() * 64


def urls(slug: str) -> list[str]:
    # One picture every person shares: two daemons may store the same raw file at once.
    return [f"http://img.test/{slug}/{k}.jpg" for k in range(IMAGES)] + [
        "http://img.test/common/group.jpg"
    ]


class FakeStages:
    """Deterministic stand-ins for search/download/analyze/curate/promote."""

    def __init__(self, cfg, store) -> None:
        self.data = cfg.data_dir
        self.store = store

    async def search(self, person):
        rows = [
            NewImage(person_id=person.id, provider="fake", rank=k, url=u)
            for k, u in enumerate(urls(person.slug))
        ]
        await self.store.insert_images(rows)

    async def download(self, person):
        for img in await self.store.images_of(person.id, "pending"):
            body = content(img.url)
            sha = hashlib.sha256(body).hexdigest()
            rel = f"raw/{sha[:2]}/{sha}.bin"
            if not (self.data / rel).exists():
                await asyncio.to_thread(atomic_write_bytes, self.data / rel, body)
            await self.store.mark_downloaded(
                img.id, Downloaded(sha, rel, img.url, "image/jpeg", len(body), 640, 480, "JPEG")
            )

    async def analyze(self, person):
        for img in await self.store.images_of(person.id, "downloaded"):
            body = (self.data / img.raw_path).read_bytes()
            if hashlib.sha256(body).hexdigest() != img.sha256:
                raise RuntimeError(f"torn raw file {img.raw_path}")
            await self.store.record_analysis(
                img.id,
                Analyzed(
                    analysis_status="ok",
                    detail=None,
                    faces_json="[]",
                    face_count=1,
                    blur=1.0,
                    brightness=0.5,
                    contrast=0.5,
                    embedding=body[:64],
                    phash=img.sha256[:16],
                    timings_json="{}",
                    face_path=None,
                ),
            )

    async def curate(self, person):
        verdicts = []
        for img in await self.store.images_of(person.id, "analyzed"):
            keep = int(img.sha256[:2], 16) % 3 != 0
            crop = f"faces/{person.slug}/{img.rank}.jpg" if keep else None
            if crop:
                await asyncio.to_thread(atomic_write_bytes, self.data / crop, img.embedding)
            verdicts.append(
                Curated(
                    id=img.id,
                    state="accepted" if keep else "rejected",
                    reason=None if keep else "not_same_person",
                    detail=None,
                    is_reference=0,
                    distance=0.1,
                    quality=0.5,
                    crop_path=crop,
                )
            )
        await self.store.record_curation(verdicts)

    async def promote(self, person):
        accepted = await self.store.images_of(person.id, "accepted")
        return None if len(accepted) >= 2 else ("insufficient", "fewer than 2 accepted")


def factory(cfg, store, res):
    impl = FakeStages(cfg, store)

    def wrap(stage):
        async def fn(person):
            recorded = (await store.get_person(person.id)).stage
            order = list(STAGES) + ["done"]
            if order.index(recorded) > order.index(stage):
                _note(f"VIOLATION {person.id} {stage} recorded={recorded}")
            _note(f"start {person.id} {stage} {os.getpid()}")
            await asyncio.sleep(SLOW * random.uniform(0.8, 1.2))
            result = await getattr(impl, stage)(person)
            _note(f"end {person.id} {stage} {os.getpid()}")
            return result

        return fn

    return {s: wrap(s) for s in STAGES}


if __name__ == "__main__":
    cfg = load_config(sys.argv[1])
    setup_logging("warning", json_output=True)
    sys.exit(asyncio.run(run_daemon(cfg, once="--once" in sys.argv, stages_factory=factory)))
