"""What happens to one person: its stages in order, each recorded as done before the next.

A stage is `async fn(person) -> None | (final_state, reason)`. None means "done, go on";
a tuple ends the person at rest (promoted, insufficient, no_consensus). Every stage is
idempotent: after a crash the person resumes at the first stage not recorded as done and
that stage only redoes what its rows say is unfinished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from facequeue import layout
from facequeue.config import Config
from facequeue.errors import PermanentStageError, StageError
from facequeue.files import atomic_copy, remove_unlisted
from facequeue.stages.originals import delete_originals
from facequeue.store import (
    Analyzed,
    Curated,
    Downloaded,
    Image,
    ImageState,
    NewImage,
    Person,
    PersonState,
    Stage,
    Store,
)

STAGES = tuple(s.value for s in Stage if s is not Stage.DONE)  # in order
StageResult = tuple[str, str | None] | None
StageFn = Callable[[Person], Awaitable[StageResult]]

if TYPE_CHECKING:  # imported on first use at run time (fast CLI start)
    import aiohttp

    from facequeue.stages.download import Downloader
    from facequeue.stages.search import Provider
    from facequeue.vision.analyze import FaceAnalysis
    from facequeue.vision.pool import AnalysisPool

log = structlog.get_logger("facequeue.runner.pipeline")


def next_stage(stage: str) -> str:
    i = STAGES.index(stage)
    return STAGES[i + 1] if i + 1 < len(STAGES) else Stage.DONE


class Pipeline:
    """Runs a claimed person's remaining stages; the daemon owns claims and leases."""

    def __init__(self, store: Store, stages: dict[str, StageFn]) -> None:
        self.store = store
        self.stages = stages

    async def run_person(self, person: Person, owner: str) -> str:
        """Returns the state the person ends in."""
        stage = person.stage
        while stage != Stage.DONE:
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
            if stage == Stage.DONE:
                await self.store.finish(person.id, owner, PersonState.PROMOTED, None)
                return PersonState.PROMOTED
            await self.store.advance_stage(person.id, owner, stage)
            person = replace(person, stage=stage)
        return person.state


@dataclass
class Resources:
    """The daemon's shared, lazily created clients: one HTTP session, one process pool."""

    cfg: Config
    _session: aiohttp.ClientSession | None = None
    _downloader: Downloader | None = None
    _provider: Provider | None = None
    _pool: AnalysisPool | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def downloader(self) -> Downloader:
        from facequeue.stages import download

        async with self._lock:
            if self._downloader is None:
                self._session = download.make_session(self.cfg)
                self._downloader = download.Downloader(self.cfg, self._session)
            return self._downloader

    async def provider(self) -> Provider:
        from facequeue.stages import search

        await self.downloader()
        async with self._lock:
            if self._provider is None:
                assert self._session is not None  # made with the downloader
                self._provider = search.make_provider(self.cfg, self._session)
            return self._provider

    async def pool(self) -> AnalysisPool:
        from facequeue.vision import analyze, pool

        async with self._lock:
            if self._pool is None:
                settings = analyze.AnalysisSettings.from_config(self.cfg)
                self._pool = await asyncio.to_thread(
                    pool.AnalysisPool,
                    settings,
                    self.cfg.analysis.workers,
                    self.cfg.analysis.image_timeout_s,
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
        """Each image is analysed once stored, overlapping the downloads; rows record progress."""
        pending = await self.store.images_of(person.id, ImageState.PENDING)
        ready = await self.store.images_of(person.id, ImageState.DOWNLOADED)
        await all_or_cancel(
            [self._analyze_one(person, img) for img in ready]
            + [self._download_one(person, img) for img in pending]
        )
        return None

    async def _download_one(self, person: Person, img: Image, refetches: int = 2) -> None:
        downloader = await self.res.downloader()
        if img.provider == "folder":
            outcome = await downloader.ingest_file(Path(img.url), self.cfg.raw_dir)
        else:
            outcome = await downloader.fetch(img.url, self.cfg.raw_dir)
        if not outcome.ok:
            log.info(
                "image_rejected", image_id=img.id, reason=outcome.reason, detail=outcome.detail
            )
            await self.store.reject_image(
                img.id, outcome.reason or "download_failed", outcome.detail
            )
            return
        # a successful outcome always has its file, digest and size
        assert outcome.sha256 and outcome.path and outcome.size is not None
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
        downloaded = replace(img, state=ImageState.DOWNLOADED, raw_path=raw_path)
        await self._analyze_one(person, downloaded, refetches)

    # -- analyze -------------------------------------------------------------------------
    async def analyze(self, person: Person) -> StageResult:
        """Images downloaded but not analysed yet (normally none: see download)."""
        todo = await self.store.images_of(person.id, ImageState.DOWNLOADED)
        await all_or_cancel([self._analyze_one(person, img) for img in todo])
        return None

    async def _analyze_one(self, person: Person, img: Image, refetches: int = 2) -> None:
        from facequeue.vision import stored
        from facequeue.vision.analyze import crop_name

        assert img.raw_path is not None  # a downloaded image has its raw file
        raw = layout.absolute(self.cfg, img.raw_path)
        if not raw.is_file():
            # Raw files are shared by content: another person's curation (here or on another
            # daemon) deleted this one between our download and now. Fetch it again at once;
            # a stage retry would leave the person waiting for its backoff.
            await self.store.image_back_to_pending(img.id)
            if refetches == 0:
                raise StageError(f"raw file of image {img.id} vanished; it is downloaded again")
            log.info("raw_file_vanished", image_id=img.id, raw_path=img.raw_path)
            pending = replace(img, state=ImageState.PENDING, raw_path=None, sha256=None)
            await self._download_one(person, pending, refetches - 1)
            return
        pool = await self.res.pool()
        prefix = str(layout.candidates_dir(self.cfg, person) / str(img.id))
        # One pass in the worker: decode, every usable face embedded, their crops written.
        fa = await pool.analyze(str(raw), (prefix, self.cfg.curation.crop_margin))
        face_path = layout.relative(self.cfg, Path(crop_name(prefix, 0))) if fa.embedded else None
        log.debug(
            "image_analyzed",
            image_id=img.id,
            status=fa.status,
            faces=len(fa.faces),
            timings=fa.timings,
        )
        await self.store.record_analysis(
            img.id, Analyzed(face_path=face_path, **stored.to_columns(fa))
        )

    # -- curate --------------------------------------------------------------------------
    async def curate(self, person: Person) -> StageResult:
        from facequeue.stages import curate as curation
        from facequeue.stages.review import curate_reviewed
        from facequeue.vision import stored

        rows = [r for r in await self.store.images_of(person.id) if r.analysis_status is not None]
        candidates = [
            curation.Candidate(
                image_id=r.id,
                rank=r.rank,
                analysis=stored.from_row(asdict(r)),
                anchor=r.provider == "portrait",
            )
            for r in rows
        ]
        params = curation.CurationParams.from_config(self.cfg)
        # reviewer decisions (facequeue serve) are sticky: applied on top of every curation
        reviews = await self.store.reviews_of(person.id)
        result = curate_reviewed(candidates, params, {i: r.decision for i, r in reviews.items()})
        by_id = {r.id: r for r in rows}
        out_dir = layout.faces_dir(self.cfg, person)
        updates: list[Curated] = []
        keep: set[str] = set()
        writes = []
        analyses = {c.image_id: c.analysis for c in candidates}
        for d in result.decisions:
            row = by_id[d.image_id]
            crop_rel, embedding = None, None
            if d.state == "accepted":
                dest = out_dir / layout.accepted_name(person.slug, row.created_at, row.id)
                fa = analyses[d.image_id].with_face(d.face_index or 0)
                writes.append(self._write_accepted(person, row, dest, d, fa))
                crop_rel = layout.relative(self.cfg, dest)
                keep.update({dest.name, dest.with_suffix(".json").name})
                embedding = fa.embedding  # the kept face's: the gallery copies it
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
                    face_index=d.face_index,
                    embedding=embedding,
                )
            )
        await asyncio.gather(
            *writes
        )  # crops + sidecars first, rows after: never a row without its file
        await self.store.record_curation(updates)
        remove_unlisted(out_dir, keep)
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

    async def _write_accepted(
        self, person: Person, row: Image, dest: Path, decision, fa: FaceAnalysis
    ) -> None:
        """The kept face's crop (written at analysis) and its sidecar from the stored
        analysis; only skin, hair and colours are computed, once, on the crop."""
        from facequeue.stages import metadata
        from facequeue.vision.analyze import AnalysisSettings, crop_box, crop_name

        src = layout.absolute(self.cfg, row.face_path or "")
        if decision.face_index:
            src = Path(crop_name(str(src.with_suffix("")), decision.face_index))
        if not row.face_path or not src.is_file():
            raise PermanentStageError(f"face crop missing for image {row.id}: {src}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(src, dest)
        face = fa.faces[0]
        x0, y0, _, _ = crop_box(face, self.cfg.curation.crop_margin, 1 << 30, 1 << 30)
        pool = await self.res.pool()
        settings = AnalysisSettings.from_config(self.cfg)
        described = await pool.run(
            metadata.describe_crop,
            str(dest),
            (face.x - x0, face.y - y0, face.w, face.h, face.confidence),
            metadata.stored_facts(fa),
            settings,
        )
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
    """Run a stage's per-image coroutines; the first failure cancels and awaits the rest
    before it is raised: nothing writes after the stage failed."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
