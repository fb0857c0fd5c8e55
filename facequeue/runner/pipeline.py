"""What happens to one person: its stages in order, each recorded as done before the next.

A stage is `async fn(person) -> None | (final_state, reason)`. None means "done, go on";
a tuple ends the person at rest (promoted, insufficient, no_consensus). Every stage is
idempotent: after a crash the person resumes at the first stage not recorded as done and
that stage only redoes what its rows say is unfinished.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from facequeue import layout
from facequeue.config import Config
from facequeue.errors import PermanentStageError, StageError
from facequeue.files import atomic_copy
from facequeue.stages.originals import delete_originals
from facequeue.store import Analyzed, Curated, Downloaded, Image, NewImage, Person, Store

STAGES = ("search", "download", "analyze", "curate", "promote")
StageResult = tuple[str, str | None] | None
StageFn = Callable[[Person], Awaitable[StageResult]]

log = structlog.get_logger("facequeue.runner.pipeline")


def next_stage(stage: str) -> str:
    i = STAGES.index(stage)
    return STAGES[i + 1] if i + 1 < len(STAGES) else "done"


class Pipeline:
    """Runs a claimed person's remaining stages; the daemon owns claims and leases."""

    def __init__(self, store: Store, stages: dict[str, StageFn]) -> None:
        self.store = store
        self.stages = stages

    async def run_person(self, person: Person, owner: str) -> str:
        """Returns the state the person ends in."""
        stage = person.stage
        while stage != "done":
            fn = self.stages[stage]
            with structlog.contextvars.bound_contextvars(stage=stage):
                log.info("stage_started")
                loop = asyncio.get_running_loop()
                started = loop.time()
                result = await fn(person)
                log.info("stage_done", seconds=round(loop.time() - started, 3))
            if result is not None:
                state, reason = result
                await self.store.finish(person.id, owner, state, reason)
                log.info("person_finished", state=state, reason=reason)
                return state
            stage = next_stage(stage)
            if stage == "done":
                await self.store.finish(person.id, owner, "promoted", None)
                return "promoted"
            await self.store.advance_stage(person.id, owner, stage)
            person = replace(person, stage=stage)
        return person.state


@dataclass
class Resources:
    """The daemon's shared, lazily created clients: one HTTP session, one process pool."""

    cfg: Config
    _session: object = None
    _downloader: object = None
    _provider: object = None
    _pool: object = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def downloader(self):
        from facequeue.stages import download

        async with self._lock:
            if self._downloader is None:
                self._session = download.make_session(self.cfg)
                self._downloader = download.Downloader(self.cfg, self._session)
            return self._downloader

    async def provider(self):
        from facequeue.stages import search

        await self.downloader()
        async with self._lock:
            if self._provider is None:
                self._provider = search.make_provider(self.cfg, self._session)
            return self._provider

    async def pool(self):
        from facequeue.vision import analyze

        async with self._lock:
            if self._pool is None:
                settings = analyze.AnalysisSettings.from_config(self.cfg)
                self._pool = await asyncio.to_thread(
                    analyze.AnalysisPool, settings, self.cfg.analysis.workers
                )
            return self._pool

    async def close(self) -> None:
        if self._downloader is not None:
            await self._downloader.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        if self._pool is not None:
            self._pool.close()


class Stages:
    """The real stages, built from the stage modules (search, download, analyze, curate...)."""

    def __init__(self, cfg: Config, store: Store, res: Resources) -> None:
        self.cfg, self.store, self.res = cfg, store, res

    def mapping(self) -> dict[str, StageFn]:
        return {
            "search": self.search,
            "download": self.download,
            "analyze": self.analyze,
            "curate": self.curate,
            "promote": self.promote,
        }

    # -- search --------------------------------------------------------------------------
    async def search(self, person: Person) -> StageResult:
        from facequeue.stages.search import PersonQuery

        provider = await self.res.provider()
        query = PersonQuery(
            name=person.name,
            slug=person.slug,
            country=person.country,
            occupation=person.occupation,
            search_name=person.search_name,
        )
        results = await provider.search(query)
        rows = [
            NewImage(
                person_id=person.id,
                provider=r.provider,
                rank=r.rank,
                url=r.url,
                thumbnail_url=r.thumbnail_url,
                page_url=r.page_url,
                title=r.title,
                license=r.license,
                author=r.author,
                width=r.width,
                height=r.height,
            )
            for r in results
        ]
        if person.portrait_url:
            # A known portrait (Wikidata P18) anchors reference selection at curation.
            rows.append(
                NewImage(
                    person_id=person.id,
                    provider="portrait",
                    rank=0,
                    url=person.portrait_url,
                    title="portrait",
                )
            )
        await self.store.insert_images(rows)
        log.info("search_results", provider=provider.name, results=len(results))
        return None

    # -- download (and analysis as images arrive) ----------------------------------------
    async def download(self, person: Person) -> StageResult:
        """Download the pending images; each is analysed as soon as it is stored, so the
        CPU-bound analysis overlaps the downloads. Every image's progress is its own row
        (downloaded, then analyzed): a killed daemon resumes exactly, and images downloaded
        before a crash but not analysed are analysed here too (or by the analyze stage)."""
        downloader = await self.res.downloader()
        pending = await self.store.images_of(person.id, "pending")
        ready = await self.store.images_of(person.id, "downloaded")
        raw_dir = self.cfg.raw_dir

        async def one(img: Image) -> None:
            if img.provider == "folder":
                outcome = await downloader.ingest_file(Path(img.url), raw_dir)
            else:
                outcome = await downloader.fetch(img.url, raw_dir)
            if outcome.ok:
                raw_path = layout.relative(self.cfg, outcome.path)
                await self.store.mark_downloaded(
                    img.id,
                    Downloaded(
                        sha256=outcome.sha256,
                        raw_path=raw_path,
                        final_url=outcome.final_url,
                        content_type=outcome.content_type,
                        bytes=outcome.size,
                        width=outcome.width,
                        height=outcome.height,
                        format=outcome.format,
                    ),
                )
                await self._analyze_one(person, replace(img, state="downloaded", raw_path=raw_path))
            else:
                log.info(
                    "image_rejected",
                    image_id=img.id,
                    reason=outcome.reason,
                    detail=outcome.detail,
                )
                await self.store.reject_image(img.id, outcome.reason, outcome.detail)

        await all_or_cancel(
            [self._analyze_one(person, img) for img in ready] + [one(img) for img in pending]
        )
        return None

    # -- analyze -------------------------------------------------------------------------
    async def analyze(self, person: Person) -> StageResult:
        """Whatever is downloaded but not analysed yet (normally nothing: see download)."""
        todo = await self.store.images_of(person.id, "downloaded")
        await all_or_cancel([self._analyze_one(person, img) for img in todo])
        return None

    async def _analyze_one(self, person: Person, img: Image) -> None:
        pool = await self.res.pool()
        crops = layout.candidates_dir(self.cfg, person)
        margin = self.cfg.curation.crop_margin
        assert img.raw_path is not None  # a downloaded image has its raw file
        raw = layout.absolute(self.cfg, img.raw_path)
        if not raw.is_file():
            # Raw files are shared by content: another person's curation may have deleted
            # this one between our rename and our row. Download it again on the retry.
            await self.store.image_back_to_pending(img.id)
            raise StageError(f"raw file of image {img.id} vanished; it is downloaded again")
        fa = await pool.analyze(str(raw))
        face_path = None
        if fa.status == "ok" and fa.faces:
            dest = crops / f"{img.id}.jpg"
            dest.parent.mkdir(parents=True, exist_ok=True)
            await pool.crop(str(raw), fa.faces[0], margin, str(dest))
            face_path = layout.relative(self.cfg, dest)
        log.debug(
            "image_analyzed",
            image_id=img.id,
            status=fa.status,
            faces=len(fa.faces),
            timings=fa.timings,
        )
        await self.store.record_analysis(
            img.id,
            Analyzed(
                analysis_status=fa.status,
                detail=fa.detail,
                faces_json=json.dumps(
                    [[f.x, f.y, f.w, f.h, round(f.confidence, 4)] for f in fa.faces]
                ),
                face_count=len(fa.faces),
                blur=fa.blur,
                brightness=fa.brightness,
                contrast=fa.contrast,
                embedding=fa.embedding,
                phash=fa.phash,
                timings_json=json.dumps(fa.timings),
                face_path=face_path,
            ),
        )

    # -- curate --------------------------------------------------------------------------
    async def curate(self, person: Person) -> StageResult:
        from facequeue.stages import curate as curation
        from facequeue.vision.analyze import Face, FaceAnalysis

        rows = [r for r in await self.store.images_of(person.id) if r.analysis_status is not None]
        candidates = []
        for r in rows:
            faces = tuple(
                Face(int(b[0]), int(b[1]), int(b[2]), int(b[3]), float(b[4]))
                for b in json.loads(r.faces_json or "[]")
            )
            fa = FaceAnalysis(
                status=r.analysis_status or "",
                detail=r.detail,
                width=r.width or 0,
                height=r.height or 0,
                faces=faces,
                blur=r.blur,
                brightness=r.brightness,
                contrast=r.contrast,
                embedding=r.embedding,
                phash=r.phash,
                timings=json.loads(r.timings_json or "{}"),
            )
            candidates.append(
                curation.Candidate(
                    image_id=r.id,
                    rank=r.rank,
                    analysis=fa,
                    anchor=r.provider == "portrait",
                )
            )
        params = curation.CurationParams.from_config(self.cfg)
        result = curation.curate(candidates, params)
        by_id = {r.id: r for r in rows}
        out_dir = layout.faces_dir(self.cfg, person)
        updates: list[Curated] = []
        keep: set[str] = set()
        writes = []
        for d in result.decisions:
            row = by_id[d.image_id]
            crop_rel = None
            if d.state == "accepted":
                dest = out_dir / accepted_name(person, row)
                writes.append(self._write_accepted(person, row, dest, d))
                crop_rel = layout.relative(self.cfg, dest)
                keep.update({dest.name, dest.with_suffix(".json").name})
            updates.append(
                Curated(
                    id=d.image_id,
                    state=d.state,
                    reason=d.reason,
                    detail=row.detail if d.state == "rejected" else None,
                    is_reference=int(d.is_reference),
                    distance=d.distance,
                    quality=d.quality,
                    crop_path=crop_rel,
                )
            )
        await asyncio.gather(
            *writes
        )  # crops + sidecars first, rows after: never a row without its file
        await self.store.record_curation(updates)
        _remove_unlisted(out_dir, keep)
        if not self.cfg.curation.keep_originals:
            await delete_originals(self.cfg, self.store, person.id, rows)
        accepted = sum(1 for d in result.decisions if d.state == "accepted")
        log.info(
            "curated",
            outcome=result.outcome,
            accepted=accepted,
            references=list(result.reference_ids),
            reason=result.reason,
        )
        if result.outcome == "no_consensus":
            return ("no_consensus", result.reason)
        return None

    async def _write_accepted(self, person: Person, row: Image, dest: Path, decision) -> None:
        from facequeue.stages import metadata

        src = layout.absolute(self.cfg, row.face_path or "")
        if not row.face_path or not src.is_file():
            raise PermanentStageError(f"face crop missing for image {row.id}: {src}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(src, dest)
        from facequeue.vision.analyze import AnalysisSettings

        pool = await self.res.pool()
        settings = AnalysisSettings.from_config(self.cfg)
        described = await pool.run(metadata.describe_image, str(dest), settings)
        image_row = {
            **asdict(row),
            "distance": decision.distance,
            "is_reference": decision.is_reference,
        }
        sidecar = metadata.build_sidecar(
            dest,
            analysis_of_crop=described,
            person=asdict(person),
            image_row=image_row,
            settings=settings,
        )
        metadata.write_sidecar(dest, sidecar)

    # -- promote -------------------------------------------------------------------------
    async def promote(self, person: Person) -> StageResult:
        from facequeue.stages import gallery

        state, reason = await gallery.promote_person(self.cfg, self.store, person)
        return (state, reason)


async def all_or_cancel(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run the per-image coroutines of a stage together; the first failure cancels the rest
    and waits for them to stop before it is raised, so nothing writes after the stage has
    failed (and the daemon has handed the person back)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def accepted_name(person: Person, row: Image) -> str:
    """Stable, unique crop name in the seed's style: Name_YYYYMMDD_HHMMSS_<image id>.jpg."""
    stamp = (row.created_at or "")[:19].replace("-", "").replace(":", "").replace("T", "_")
    return f"{person.slug}_{stamp or 'undated'}_{row.id}.jpg"


def _remove_unlisted(folder: Path, keep: set[str]) -> None:
    """After (re)curation the folder holds exactly the accepted crops and their sidecars."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name not in keep and path.is_file():
            path.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()
