"""The domain methods of the store in SQL, shared by both backends (sqlite.py, postgres.py).

Each backend supplies its statements by name (`Q`: queries.sql, postgres.sql: the same names)
and five primitives: `_all` (a read), `_one`, `_write` (one statement in its own transaction,
returning its rows), `_many` (one statement over many rows in one transaction) and
`_transaction()` (a connection whose `execute` returns a cursor with fetchone/fetchall, and
`executemany`). Everything else, the boundary of base.py, is here once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from anyascii import anyascii

from facequeue.errors import LeaseLost
from facequeue.store.records import (
    AcceptedCrop,
    AddResult,
    Analyzed,
    Curated,
    DaemonInfo,
    DaemonLiveness,
    Downloaded,
    GalleryCandidate,
    GalleryEmbedding,
    GalleryEntry,
    GalleryFile,
    GalleryIdentity,
    GallerySummary,
    Image,
    NewImage,
    NewPerson,
    Person,
    SelfTest,
    from_row,
)

R = TypeVar("R")


def load_queries(path: Path) -> dict[str, str]:
    """Statements by name from a .sql file of `-- name: x` sections (comments dropped)."""
    queries: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"--\s*name:\s*(\w+)", line)
        if match:
            if name:
                queries[name] = "\n".join(lines).strip()
            name, lines = match.group(1), []
        elif name and not line.startswith("--"):
            lines.append(line)
    if name:
        queries[name] = "\n".join(lines).strip()
    return {k: v.rstrip(";") for k, v in queries.items()}


def folder_base(slug: str, country: str) -> str:
    """`<slug>__<ascii country>`: a person's folder name unless another person has it."""
    flat = re.sub(r"[^A-Za-z0-9]+", "_", anyascii(country or "").replace("'", "")).strip("_")
    return f"{slug}__{flat[:60].strip('_') or 'unknown'}"


class SqlStore:
    """Domain methods over named SQL statements; a backend subclasses it."""

    Q: ClassVar[dict[str, str]]

    # -- primitives each backend implements ----------------------------------------------
    def _transaction(self) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def _all(self, sql: str, params: Any = ()) -> list[Any]:
        raise NotImplementedError

    async def _one(self, sql: str, params: Any = ()) -> Any | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _write(self, sql: str, params: Any = ()) -> list[Any]:
        raise NotImplementedError

    async def _many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    async def _records(self, cls: type[R], name: str, **params: Any) -> list[R]:
        return [from_row(cls, r) for r in await self._all(self.Q[name], params)]

    # -- people --------------------------------------------------------------------------
    async def add_people(self, people: Iterable[NewPerson]) -> AddResult:
        """Insert all new people in one transaction; existing ones (slug+country or
        Wikidata id) are skipped. Either all new rows land or none. Each gets a folder of
        its own (<slug>__<ascii country>, with __<id> when another person has that one)."""
        added: list[int] = []
        skipped: list[NewPerson] = []
        async with self._transaction() as conn:
            for person in people:
                params = asdict(person)
                cur = await conn.execute(self.Q["person_exists"], params)
                if await cur.fetchone():
                    skipped.append(person)
                    continue
                folder = folder_base(person.slug, person.country)
                cur = await conn.execute(self.Q["insert_person"], {**params, "folder": folder})
                row = await cur.fetchone()
                if row is None:
                    skipped.append(person)
                else:
                    added.append(row[0])
                    await conn.execute(
                        self.Q["person_folder_suffixed"], {"id": row[0], "folder": folder}
                    )
        return AddResult(added, skipped)

    async def already_queued(self, people: Iterable[NewPerson]) -> list[NewPerson]:
        """Those of `people` that add_people would skip (same slug+country or Wikidata id)."""
        found = []
        for person in people:
            if await self._one(self.Q["person_exists"], asdict(person)):
                found.append(person)
        return found

    async def slug_holder(self, slug: str, country: str) -> tuple[bool, str | None]:
        """(is the slug taken in that country, the Wikidata id of who holds it)."""
        row = await self._one(self.Q["wikidata_id_by_slug"], {"slug": slug, "country": country})
        return (True, row[0]) if row else (False, None)

    async def claim(self, owner: str, lease_s: float) -> Person | None:
        rows = await self._write(self.Q["claim_person"], {"owner": owner, "lease_s": lease_s})
        return from_row(Person, rows[0]) if rows else None

    async def claim_specific(self, person_id: int, owner: str, lease_s: float) -> Person | None:
        rows = await self._write(
            self.Q["claim_specific"], {"id": person_id, "owner": owner, "lease_s": lease_s}
        )
        return from_row(Person, rows[0]) if rows else None

    async def reclaim_expired(self) -> list[Person]:
        return [from_row(Person, r) for r in await self._write(self.Q["reclaim_expired"])]

    async def renew_leases(self, owner: str, lease_s: float, live_ids: Iterable[int]) -> list[int]:
        """Renew only the leases of people this daemon is working on now."""
        rows = await self._write(
            self.Q["renew_leases"],
            {"owner": owner, "lease_s": lease_s, "ids": json.dumps(sorted(live_ids))},
        )
        return [r[0] for r in rows]

    async def release_orphans(self, owner: str, live_ids: Iterable[int]) -> list[int]:
        """Leases held on people nobody here works on any more go back to the queue."""
        rows = await self._write(
            self.Q["release_orphans"], {"owner": owner, "ids": json.dumps(sorted(live_ids))}
        )
        return [r[0] for r in rows]

    async def still_own(self, person_id: int, owner: str) -> bool:
        return bool(await self._one(self.Q["still_own"], {"id": person_id, "owner": owner}))

    async def advance_stage(self, person_id: int, owner: str, stage: str) -> None:
        rows = await self._write(
            self.Q["advance_stage"], {"id": person_id, "owner": owner, "stage": stage}
        )
        if not rows:
            raise LeaseLost(f"lease on person {person_id} was lost before stage {stage}")

    async def finish(self, person_id: int, owner: str, state: str, reason: str | None) -> None:
        rows = await self._write(
            self.Q["finish_person"],
            {"id": person_id, "owner": owner, "state": state, "reason": reason},
        )
        if not rows:
            raise LeaseLost(f"lease on person {person_id} was lost before it finished")

    async def fail_attempt(
        self, person_id: int, owner: str, error: str, max_attempts: int, delay_s: float
    ) -> tuple[str, int] | None:
        rows = await self._write(
            self.Q["fail_attempt"],
            {
                "id": person_id,
                "owner": owner,
                "error": error[:2000],
                "max_attempts": max_attempts,
                "delay_s": f"{delay_s:.3f}",
            },
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def fail_permanently(self, person_id: int, owner: str, error: str) -> None:
        await self._write(
            self.Q["fail_permanently"], {"id": person_id, "owner": owner, "error": error[:2000]}
        )

    async def release(self, person_id: int, owner: str) -> None:
        await self._write(self.Q["release_person"], {"id": person_id, "owner": owner})

    async def release_owner(self, owner: str) -> None:
        await self._write(self.Q["release_owner"], {"owner": owner})

    async def retry_failed(self, person_id: int | None = None) -> list[int]:
        return [r[0] for r in await self._write(self.Q["retry_failed"], {"id": person_id})]

    async def requeue(self, person_id: int, stage: str) -> None:
        await self._write(self.Q["requeue_person"], {"id": person_id, "stage": stage})

    async def get_person(self, person_id: int) -> Person | None:
        row = await self._one(self.Q["get_person"], {"id": person_id})
        return from_row(Person, row) if row else None

    async def find_people(self, ref: str) -> list[Person]:
        return await self._records(Person, "find_people", ref=ref)

    async def people_at_rest(self) -> list[Person]:
        return await self._records(Person, "people_at_rest")

    async def delete_person(self, person_id: int) -> None:
        await self._write(self.Q["delete_person"], {"id": person_id})

    async def claimable_count(self) -> int:
        row = await self._one(self.Q["claimable_count"])
        return int(row[0]) if row else 0

    async def next_run_after(self) -> str | None:
        row = await self._one(self.Q["next_run_after"])
        return row[0] if row else None

    # -- daemons -------------------------------------------------------------------------
    async def register_daemon(
        self, daemon_id: str, pid: int, host: str, boot_id: str | None = None
    ) -> None:
        await self._write(self.Q["prune_daemons"])
        await self._write(
            self.Q["register_daemon"],
            {"id": daemon_id, "pid": pid, "host": host, "boot_id": boot_id},
        )

    async def other_daemons(self, daemon_id: str) -> list[DaemonLiveness]:
        return await self._records(DaemonLiveness, "other_daemons", id=daemon_id)

    async def take_over(self, daemon_id: str) -> list[int]:
        """Mark a dead daemon stopped and hand its leases back to the queue, atomically."""
        async with self._transaction() as conn:
            await conn.execute(self.Q["mark_daemon_dead"], {"id": daemon_id})
            cur = await conn.execute(self.Q["take_over_leases"], {"owner": daemon_id})
            return [r[0] for r in await cur.fetchall()]

    async def beat_daemon(self, daemon_id: str, in_flight: int) -> None:
        await self._write(self.Q["beat_daemon"], {"id": daemon_id, "in_flight": in_flight})

    async def stop_daemon(self, daemon_id: str) -> None:
        await self._write(self.Q["stop_daemon"], {"id": daemon_id})

    async def live_daemons(self, stale_s: float) -> list[DaemonInfo]:
        return await self._records(DaemonInfo, "live_daemons", stale_s=stale_s)

    # -- images --------------------------------------------------------------------------
    async def insert_images(self, images: Iterable[NewImage]) -> None:
        """New search results; an URL already listed for the person is skipped."""
        await self._many(self.Q["insert_image"], [asdict(i) for i in images])

    async def images_of(self, person_id: int, state: str | None = None) -> list[Image]:
        if state is None:
            return await self._records(Image, "images_of_person", person_id=person_id)
        return await self._records(Image, "images_in_state", person_id=person_id, state=state)

    async def mark_downloaded(self, image_id: int, result: Downloaded) -> None:
        await self._write(self.Q["image_downloaded"], {"id": image_id, **asdict(result)})

    async def reject_image(self, image_id: int, reason: str, detail: str | None) -> None:
        await self._write(
            self.Q["image_rejected"], {"id": image_id, "reason": reason, "detail": detail}
        )

    async def record_analysis(self, image_id: int, result: Analyzed) -> None:
        await self._write(self.Q["image_analyzed"], {"id": image_id, **asdict(result)})

    async def record_curation(self, verdicts: Iterable[Curated]) -> None:
        """Curation's verdicts on a person's images, all in one transaction."""
        await self._many(self.Q["image_curated"], [asdict(v) for v in verdicts])

    async def other_users_of_raw(self, raw_path: str, person_id: int) -> int:
        row = await self._one(
            self.Q["other_users_of_raw"], {"raw_path": raw_path, "person_id": person_id}
        )
        return int(row[0]) if row else 0

    async def forget_raw_paths(self, image_ids: list[int]) -> None:
        await self._many(self.Q["forget_raw_path"], [{"id": i} for i in image_ids])

    async def image_back_to_pending(self, image_id: int) -> None:
        await self._write(self.Q["image_back_to_pending"], {"id": image_id})

    async def referenced_paths(self) -> set[str]:
        raws = await self._all(self.Q["all_raw_paths"])
        crops = await self._all(self.Q["all_crop_paths"])
        return {r[0] for r in raws} | {r[0] for r in crops}

    async def accepted_crops(self) -> list[AcceptedCrop]:
        return await self._records(AcceptedCrop, "metadata_accepted_images")

    # -- gallery -------------------------------------------------------------------------
    async def gallery_candidates(self, person_id: int) -> list[GalleryCandidate]:
        return await self._records(GalleryCandidate, "gallery_accepted_images", person_id=person_id)

    async def gallery_folder(self, person_id: int) -> str | None:
        row = await self._one(self.Q["gallery_folder"], {"person_id": person_id})
        return row[0] if row else None

    async def save_gallery(self, entry: GalleryEntry, files: Sequence[GalleryFile]) -> None:
        """Upsert the identity and its images; its gallery rows not in `files` go."""
        keep = {f.image_id for f in files}
        async with self._transaction() as conn:
            await conn.execute(self.Q["gallery_upsert_person"], asdict(entry))
            cur = await conn.execute(self.Q["gallery_images_of"], {"person_id": entry.person_id})
            for row in await cur.fetchall():
                if row["image_id"] not in keep:
                    await conn.execute(self.Q["gallery_delete_image"], {"id": row["id"]})
            await conn.executemany(
                self.Q["gallery_upsert_image"],
                [
                    {
                        "person_id": entry.person_id,
                        "image_id": f.image_id,
                        "path": f.rel_path,
                        "sha256": f.sha256,
                        "embedding": f.embedding,
                        "is_reference": f.is_reference,
                    }
                    for f in files
                ],
            )

    async def remove_from_gallery(self, person_id: int) -> None:
        async with self._transaction() as conn:
            await conn.execute(self.Q["gallery_delete_person_images"], {"person_id": person_id})
            await conn.execute(self.Q["gallery_delete_person"], {"person_id": person_id})

    async def gallery_tested_against(self, person_id: int) -> list[int]:
        """Identities whose nearest other identity is `person_id`."""
        rows = await self._all(self.Q["gallery_tested_against"], {"person_id": person_id})
        return [r[0] for r in rows]

    async def gallery_identities(self) -> list[GalleryIdentity]:
        return await self._records(GalleryIdentity, "gallery_identities")

    async def gallery_embeddings(self) -> list[GalleryEmbedding]:
        return await self._records(GalleryEmbedding, "gallery_all_embeddings")

    async def save_self_tests(self, results: Iterable[SelfTest]) -> None:
        await self._many(
            self.Q["gallery_self_test"],
            [
                {
                    "person_id": t.person_id,
                    "top1": t.top1,
                    "misses": t.misses,
                    "own_distance": t.own_distance,
                    "nearest_other_person_id": t.nearest_other_person_id,
                    "nearest_other_distance": t.nearest_other_distance,
                    "margin": t.margin,
                    "flagged": int(t.flagged),
                    "flag_reason": t.flag_reason,
                }
                for t in results
            ],
        )

    async def gallery_summary(self) -> list[GallerySummary]:
        return await self._records(GallerySummary, "gallery_list")

    async def gallery_paths(self) -> list[str]:
        return [r[0] for r in await self._all(self.Q["gallery_paths"])]
