"""Store methods for what reviewers and operators read and decide: status, the report's rows,
reviewer decisions and `facequeue serve` (gallery version stamp, metrics, health), shared by
both backends: `ReviewQueries` extends sqlbase.SqlStore and SqliteStore and PgStore subclass
it (kept apart from sqlbase.py for its length). Statements are looked up by name in the
backend's `Q` (queries.sql, postgres.sql: the same names); results are the
records of records.py; base.py declares them on the boundary.
"""

from __future__ import annotations

import json

from facequeue.store.records import (
    Failure,
    GalleryImageRef,
    GalleryRow,
    ImageTotals,
    Person,
    Progress,
    ReasonCount,
    RejectReason,
    ReportImage,
    ReportPerson,
    Review,
    ReviewTarget,
    from_row,
)
from facequeue.store.sqlbase import SqlStore

DECISIONS = ("reject", "accept")


class ReviewQueries(SqlStore):
    """SqlStore with the status, report, review and serve methods; each backend subclasses
    this."""

    # -- status --------------------------------------------------------------------------
    async def queue_summary(self) -> dict[str, int]:
        return {r[0]: r[1] for r in await self._all(self.Q["queue_summary"])}

    async def progress(self, limit: int | None = 50) -> list[Progress]:
        """person_progress rows by id; limit None = everyone."""
        return await self._records(
            Progress, "person_progress_all", limit=-1 if limit is None else limit
        )

    async def progress_of(self, person_id: int) -> Progress | None:
        row = await self._one(self.Q["person_progress_one"], {"id": person_id})
        return from_row(Progress, row) if row else None

    async def image_reasons(self, person_id: int) -> list[ReasonCount]:
        return await self._records(ReasonCount, "image_reasons", id=person_id)

    async def recent_failures(self, limit: int = 10) -> list[Failure]:
        return await self._records(Failure, "recent_failures", limit=limit)

    # -- report --------------------------------------------------------------------------
    async def report_people(self) -> list[ReportPerson]:
        return await self._records(ReportPerson, "report_people")

    async def report_images(self, person_id: int) -> list[ReportImage]:
        return await self._records(ReportImage, "report_images", person_id=person_id)

    async def image_totals(self) -> ImageTotals:
        row = await self._one(self.Q["report_totals"])
        assert row is not None  # an aggregate always returns one row
        return from_row(ImageTotals, row)

    async def reject_reasons(self) -> list[RejectReason]:
        return await self._records(RejectReason, "report_reasons")

    # -- reviews -------------------------------------------------------------------------
    async def review_target(self, image_id: int) -> ReviewTarget | None:
        row = await self._one(self.Q["review_image"], {"id": image_id})
        if row is None:
            return None
        return ReviewTarget(
            row["id"],
            row["person_id"],
            row["state"],
            row["reason"],
            bool(row["has_embedding"]) and bool(row["face_path"]),
            row["person_state"],
            row["person_stage"],
        )

    async def set_review(self, target: ReviewTarget, decision: str, note: str | None) -> None:
        """Record (or replace) a decision; 'clear' removes it."""
        if decision == "clear":
            await self._write(self.Q["review_clear"], {"image_id": target.image_id})
            return
        if decision not in DECISIONS:
            raise ValueError(decision)
        await self._write(
            self.Q["review_set"],
            {
                "image_id": target.image_id,
                "person_id": target.person_id,
                "decision": decision,
                "note": note,
            },
        )

    async def reviews_of(self, person_id: int) -> dict[int, Review]:
        rows = await self._all(self.Q["reviews_of_person"], {"person_id": person_id})
        return {r["image_id"]: Review(r[0], r[1], r[2], r[3]) for r in rows}

    async def claim_for_recuration(
        self, person_id: int, owner: str, lease_s: float
    ) -> Person | None:
        """Lease a person at rest and put it back at its curate stage, in one statement."""
        rows = await self._write(
            self.Q["review_claim_person"], {"id": person_id, "owner": owner, "lease_s": lease_s}
        )
        return from_row(Person, rows[0]) if rows else None

    # -- the gallery's version stamp ---------------------------------------------------------
    async def gallery_version(self) -> int:
        row = await self._one(self.Q["gallery_version"])
        return int(row[0]) if row else 0

    async def gallery_changed_since(self, seq: int) -> list[int] | None:
        """People whose gallery rows changed after version `seq`; None when the change log no
        longer reaches back that far (read everything)."""
        oldest = await self._one(self.Q["gallery_oldest_change"])
        if oldest is not None and seq and oldest[0] > seq + 1:
            return None
        return [r[0] for r in await self._all(self.Q["gallery_changed_since"], {"seq": seq})]

    async def gallery_person_ids(self) -> list[int]:
        return [r[0] for r in await self._all(self.Q["gallery_all_person_ids"])]

    async def gallery_rows_of(self, person_ids: list[int]) -> list[GalleryRow]:
        rows = await self._all(self.Q["gallery_embeddings_of"], {"ids": json.dumps(person_ids)})
        return [GalleryRow(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    async def gallery_images_of_person(self, person_id: int) -> list[GalleryImageRef]:
        rows = await self._all(self.Q["gallery_references_of"], {"person_id": person_id})
        return [from_row(GalleryImageRef, r) for r in rows]

    # -- metrics and health --------------------------------------------------------------
    async def people_by_state(self) -> dict[str, int]:
        return {r[0]: r[1] for r in await self._all(self.Q["metrics_people"])}

    async def images_by_outcome(self) -> list[tuple[str, str, int]]:
        return [(r[0], r[1], r[2]) for r in await self._all(self.Q["metrics_images"])]

    async def heartbeat_age_s(self) -> float | None:
        """Seconds since the newest heartbeat of a daemon not stopped; None: no daemon."""
        row = await self._one(self.Q["metrics_heartbeat_age"])
        return None if row is None or row[0] is None else float(row[0])

    async def ping(self) -> bool:
        return bool(await self._one(self.Q["ping"]))
