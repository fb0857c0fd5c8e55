"""Operator actions on the queue: find a person, what `status` shows, re-curation."""

from __future__ import annotations

from dataclasses import dataclass

from facequeue.config import Config
from facequeue.errors import InputError, NotFoundError
from facequeue.store import (
    DaemonInfo,
    Failure,
    Person,
    PersonState,
    Progress,
    ReasonCount,
    Stage,
    Store,
)

# a daemon whose heartbeat is older than this many heartbeats is taken for dead
STALE_HEARTBEATS = 3


def stale_after_s(cfg: Config) -> float:
    return cfg.queue.heartbeat_s * STALE_HEARTBEATS + 5


async def find_person(store: Store, ref: str) -> Person:
    """The one person whose id, slug or name is `ref`; a clear error for none or several."""
    matches = await store.find_people(ref)
    if not matches:
        raise NotFoundError(f"no person matches {ref!r} (use an id, a slug or the exact name)")
    if len(matches) > 1:
        listed = ", ".join(f"#{m.id} {m.name} ({m.country})" for m in matches[:5])
        raise InputError(f"{ref!r} matches several people: {listed}; use the id")
    return matches[0]


@dataclass(frozen=True)
class Overview:
    queue: dict[str, int]
    daemons: list[DaemonInfo]
    people: list[Progress]
    failures: list[Failure]


@dataclass(frozen=True)
class PersonStatus:
    person: Progress
    outcomes: list[ReasonCount]


async def overview(cfg: Config, store: Store, limit: int) -> Overview:
    return Overview(
        queue=await store.queue_summary(),
        daemons=await store.live_daemons(stale_after_s(cfg)),
        people=await store.progress(limit),
        failures=await store.recent_failures(5),
    )


async def person_status(store: Store, ref: str) -> PersonStatus:
    person = await find_person(store, ref)
    progress = await store.progress_of(person.id)
    if progress is None:  # deleted between the two reads
        raise NotFoundError(f"no person matches {ref!r}")
    return PersonStatus(progress, await store.image_reasons(person.id))


async def queue_recuration(store: Store, people: list[Person]) -> list[int]:
    """Requeue at the curate stage everyone of `people` who has been analyzed; ids queued.
    A person being processed is an error (nothing is requeued then)."""
    for p in people:
        if p.state == PersonState.RUNNING:
            raise InputError(f"#{p.id} {p.name} is being processed right now")
    ids = []
    for p in people:
        if p.stage in (Stage.CURATE, Stage.PROMOTE, Stage.DONE):
            await store.requeue(p.id, Stage.CURATE)
            ids.append(p.id)
    return ids
