"""What `facequeue status --json` prints (and GET /api/status answers)."""

from __future__ import annotations

from facequeue.config import Config
from facequeue.store import Store


async def overview(cfg: Config, store: Store, limit: int = 20) -> dict:
    stale = cfg.queue.heartbeat_s * 3 + 5
    return {
        "queue": await store.queue_summary(),
        "daemons": await store.live_daemons(stale),
        "people": await store.progress(limit),
        "failures": await store.recent_failures(5),
    }


async def of_person(store: Store, person_id: int) -> dict:
    return {
        "person": await store.progress_of(person_id),
        "outcomes": await store.image_reasons(person_id),
    }
