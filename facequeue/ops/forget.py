"""`forget PERSON`: every row and file of one person goes (downloads, crops, gallery)."""

from __future__ import annotations

import shutil

from facequeue import layout
from facequeue.config import Config
from facequeue.errors import InputError
from facequeue.stages import gallery
from facequeue.stages.originals import delete_originals
from facequeue.store import Person, PersonState, Store


async def check_forgettable(cfg: Config, store: Store, person: Person) -> None:
    """A person a live daemon is working on cannot be forgotten (its stages would recreate
    files); one whose daemon died can."""
    live = await store.live_daemons(cfg.queue.heartbeat_s * 3 + 5)
    if person.state == PersonState.RUNNING and live:
        raise InputError(
            f"#{person.id} {person.name} is being processed right now; try again when it is done"
        )


async def forget_person(cfg: Config, store: Store, person: Person) -> None:
    """Files first, the person's row last: if interrupted, running forget again finishes the
    job. A raw file another person also uses stays. An existing report is rebuilt."""
    import os
    import socket

    from facequeue.ops import report

    # Hold the person's lease while its files go, so no daemon claims it meanwhile (a daemon
    # already working on it keeps its lease and forget is refused).
    owner = f"forget:{socket.gethostname()}:{os.getpid()}"
    claimed = await store.claim_specific(person.id, owner, cfg.queue.lease_s)
    if claimed is None and await _holder_is_dead(cfg, store, person.id):
        claimed = await store.claim_specific(person.id, owner, cfg.queue.lease_s)
    if claimed is None:
        raise InputError(
            f"#{person.id} {person.name} is being processed right now; try again when it is done"
        )
    await gallery.forget_person(cfg, store, person)
    await delete_originals(cfg, store, person.id, await store.images_of(person.id))
    for folder in (layout.faces_dir(cfg, person), layout.candidates_dir(cfg, person)):
        shutil.rmtree(folder, ignore_errors=True)
    await store.delete_person(person.id)
    await report.rebuild_if_present(cfg, store)


async def _holder_is_dead(cfg: Config, store: Store, person_id: int) -> bool:
    """The lease on this person belongs to a dead daemon: take its leases over (True)."""
    import socket

    from facequeue.runner import liveness

    current = await store.get_person(person_id)
    if current is None or not current.lease_owner:
        return False
    stale_s = liveness.STALE_HEARTBEATS * cfg.queue.heartbeat_s
    host, boot = socket.gethostname(), liveness.boot_id()
    for d in await store.other_daemons(""):
        if d.id == current.lease_owner and liveness.dead_reason(d, host, boot, stale_s):
            await store.take_over(d.id)
            return True
    return False
