"""A reviewer's decision: recorded, the person re-curated and re-promoted at once, the
in-memory gallery updated. The decision itself is applied by curation (stages/review.py), so
`recurate` and every later run keep it."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass

import structlog

from facequeue.config import Config
from facequeue.runner.pipeline import Pipeline, Resources, Stages
from facequeue.serve.gallery import LiveGallery
from facequeue.store import Store

log = structlog.get_logger("facequeue.serve.review")

DECISIONS = ("reject", "accept", "clear")


class ReviewError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class ReviewOutcome:
    image_id: int
    person_id: int
    decision: str
    state: str  # the image's state after re-curation
    reason: str | None
    person_state: str | None  # None: not re-curated now (being processed; applied later)
    recurated: bool

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def parse_decision(body: object) -> tuple[str, str | None]:
    if not isinstance(body, dict):
        raise ReviewError(400, 'send a JSON object: {"decision": "reject"|"accept"|"clear"}')
    decision = body.get("decision")
    if decision not in DECISIONS:
        raise ReviewError(400, f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise ReviewError(400, "note must be a string")
    return decision, (note or None) and note[:1000]


class Reviewer:
    def __init__(self, cfg: Config, store: Store, gallery: LiveGallery, res: Resources) -> None:
        self.cfg, self.store, self.gallery, self.res = cfg, store, gallery, res
        self.owner = f"serve-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = asyncio.Lock()  # one re-curation at a time

    async def decide(self, image_id: int, decision: str, note: str | None) -> ReviewOutcome:
        target = await self.store.review_target(image_id)
        if target is None:
            raise ReviewError(404, f"no image {image_id}")
        if decision == "accept" and not target.has_face:
            raise ReviewError(409, f"image {image_id} has no analysed face to accept")
        async with self._lock:
            await self.store.set_review(target, decision, note)
            log.info(
                "review_recorded", image_id=image_id, person_id=target.person_id, decision=decision
            )
            person_state = await self._recurate(target.person_id)
            await self.gallery.refresh(force=True)
        after = await self.store.review_target(image_id)
        return ReviewOutcome(
            image_id,
            target.person_id,
            decision,
            after.state if after else target.state,
            after.reason if after else target.reason,
            person_state,
            person_state is not None,
        )

    async def _recurate(self, person_id: int) -> str | None:
        """Curate + promote the person now; None when it is busy or not analysed yet (the
        decision is stored and its next curation applies it)."""
        person = await self.store.claim_for_recuration(
            person_id, self.owner, self.cfg.queue.lease_s
        )
        if person is None:
            return None
        pipeline = Pipeline(self.store, Stages(self.cfg, self.store, self.res).mapping())
        try:
            with structlog.contextvars.bound_contextvars(person_id=person_id):
                return await pipeline.run_person(person, self.owner)
        except BaseException as exc:
            # leave the person to the daemon, queued at its curate stage
            await asyncio.shield(self.store.release(person_id, self.owner))
            log.error(
                "review_recurate_failed", person_id=person_id, error=f"{type(exc).__name__}: {exc}"
            )
            if isinstance(exc, Exception):
                raise ReviewError(500, f"re-curation of person {person_id} failed: {exc}") from None
            raise
