"""The SQLite backend of the store: connection set-up and every domain method, in SQL.

Statements live in queries.sql (by name) and migrations/NNNN_*.sql. One aiosqlite connection
per process; an asyncio lock serialises transactions on it so coroutines never interleave
inside one transaction. Other processes are kept out by SQLite's own locking (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from facequeue.errors import LeaseLost, StoreError
from facequeue.store import migrate as migrations
from facequeue.store.records import (
    AcceptedCrop,
    AddResult,
    Analyzed,
    Curated,
    DaemonInfo,
    Downloaded,
    Failure,
    GalleryCandidate,
    GalleryEmbedding,
    GalleryEntry,
    GalleryFile,
    GalleryIdentity,
    GallerySummary,
    Image,
    ImageTotals,
    NewImage,
    NewPerson,
    Person,
    Progress,
    ReasonCount,
    RejectReason,
    ReportImage,
    ReportPerson,
    SelfTest,
    from_row,
)

PACKAGE_DIR = Path(__file__).resolve().parent
BUSY_TIMEOUT_MS = 30_000
R = TypeVar("R")


def _load_queries(path: Path) -> dict[str, str]:
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


Q = _load_queries(PACKAGE_DIR / "queries.sql")


class SqliteStore:
    """An open SQLite database. Use `open_store(cfg)` (or `await SqliteStore.open(path)`)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.lock = asyncio.Lock()

    # -- set-up --------------------------------------------------------------------------
    @classmethod
    async def open(
        cls, db_path: Path, migrate: bool = True, migrations_dir: Path = migrations.MIGRATIONS_DIR
    ) -> SqliteStore:
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(
                str(db_path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {db_path}: {exc}") from None
        conn.row_factory = aiosqlite.Row
        store = cls(conn, db_path)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            if migrate:
                await store.migrate(migrations_dir)
        except sqlite3.DatabaseError as exc:
            await conn.close()
            raise StoreError(f"database {db_path}: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        return store

    @property
    def location(self) -> str:
        return str(self.path)

    async def close(self) -> None:
        await self.conn.close()

    async def migrate(self, migrations_dir: Path = migrations.MIGRATIONS_DIR) -> list[str]:
        """Apply pending migrations in order; each with its record in one transaction."""
        return await migrations.apply_sqlite(self.conn, self.lock, migrations_dir)

    async def applied_migrations(self) -> list[tuple[int, str, str]]:
        try:
            rows = await self._all(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"database {self.path}: {exc}") from None
        return [(r[0], r[1], r[2]) for r in rows]

    async def integrity_problems(self) -> list[str]:
        """What `PRAGMA quick_check` finds wrong (empty when the file is sound)."""
        try:
            rows = await self._all(Q["doctor_quick_check"])
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [r[0] for r in rows if r[0] != "ok"]

    # -- helpers -----------------------------------------------------------------------
    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error (including cancellation)."""
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await asyncio.shield(self.conn.execute("ROLLBACK"))
                raise
            else:
                await asyncio.shield(self.conn.execute("COMMIT"))

    async def _all(self, sql: str, params: Any = ()) -> list[aiosqlite.Row]:
        async with self.lock:
            cur = await self.conn.execute(sql, params)
            return list(await cur.fetchall())

    async def _one(self, sql: str, params: Any = ()) -> aiosqlite.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _write(self, sql: str, params: Any = ()) -> list[aiosqlite.Row]:
        async with self._transaction() as conn:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall())

    async def _many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        async with self._transaction() as conn:
            await conn.executemany(sql, rows)

    async def _records(self, cls: type[R], name: str, **params: Any) -> list[R]:
        return [from_row(cls, r) for r in await self._all(Q[name], params)]

    # -- people --------------------------------------------------------------------------
    async def add_people(self, people: Iterable[NewPerson]) -> AddResult:
        """Insert all new people in one transaction; existing ones (slug+country or
        Wikidata id) are skipped. Either all new rows land or none."""
        added: list[int] = []
        skipped: list[NewPerson] = []
        async with self._transaction() as conn:
            for person in people:
                params = asdict(person)
                cur = await conn.execute(Q["person_exists"], params)
                if await cur.fetchone():
                    skipped.append(person)
                    continue
                cur = await conn.execute(Q["insert_person"], params)
                row = await cur.fetchone()
                if row is None:
                    skipped.append(person)
                else:
                    added.append(row[0])
        return AddResult(added, skipped)

    async def already_queued(self, people: Iterable[NewPerson]) -> list[NewPerson]:
        """Those of `people` that add_people would skip (same slug+country or Wikidata id)."""
        found = []
        for person in people:
            if await self._one(Q["person_exists"], asdict(person)):
                found.append(person)
        return found

    async def claim(self, owner: str, lease_s: float) -> Person | None:
        rows = await self._write(Q["claim_person"], {"owner": owner, "lease_s": lease_s})
        return from_row(Person, rows[0]) if rows else None

    async def claim_specific(self, person_id: int, owner: str, lease_s: float) -> Person | None:
        rows = await self._write(
            Q["claim_specific"], {"id": person_id, "owner": owner, "lease_s": lease_s}
        )
        return from_row(Person, rows[0]) if rows else None

    async def reclaim_expired(self) -> list[Person]:
        return [from_row(Person, r) for r in await self._write(Q["reclaim_expired"])]

    async def renew_leases(self, owner: str, lease_s: float) -> list[int]:
        rows = await self._write(Q["renew_leases"], {"owner": owner, "lease_s": lease_s})
        return [r[0] for r in rows]

    async def still_own(self, person_id: int, owner: str) -> bool:
        return bool(await self._one(Q["still_own"], {"id": person_id, "owner": owner}))

    async def advance_stage(self, person_id: int, owner: str, stage: str) -> None:
        rows = await self._write(
            Q["advance_stage"], {"id": person_id, "owner": owner, "stage": stage}
        )
        if not rows:
            raise LeaseLost(f"lease on person {person_id} was lost before stage {stage}")

    async def finish(self, person_id: int, owner: str, state: str, reason: str | None) -> None:
        rows = await self._write(
            Q["finish_person"], {"id": person_id, "owner": owner, "state": state, "reason": reason}
        )
        if not rows:
            raise LeaseLost(f"lease on person {person_id} was lost before it finished")

    async def fail_attempt(
        self, person_id: int, owner: str, error: str, max_attempts: int, delay_s: float
    ) -> tuple[str, int] | None:
        rows = await self._write(
            Q["fail_attempt"],
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
            Q["fail_permanently"], {"id": person_id, "owner": owner, "error": error[:2000]}
        )

    async def release(self, person_id: int, owner: str) -> None:
        await self._write(Q["release_person"], {"id": person_id, "owner": owner})

    async def release_owner(self, owner: str) -> None:
        await self._write(Q["release_owner"], {"owner": owner})

    async def retry_failed(self, person_id: int | None = None) -> list[int]:
        return [r[0] for r in await self._write(Q["retry_failed"], {"id": person_id})]

    async def requeue(self, person_id: int, stage: str) -> None:
        await self._write(Q["requeue_person"], {"id": person_id, "stage": stage})

    async def get_person(self, person_id: int) -> Person | None:
        row = await self._one(Q["get_person"], {"id": person_id})
        return from_row(Person, row) if row else None

    async def find_people(self, ref: str) -> list[Person]:
        return await self._records(Person, "find_people", ref=ref)

    async def people_at_rest(self) -> list[Person]:
        return await self._records(Person, "people_at_rest")

    async def delete_person(self, person_id: int) -> None:
        await self._write(Q["delete_person"], {"id": person_id})

    async def claimable_count(self) -> int:
        row = await self._one(Q["claimable_count"])
        return int(row[0]) if row else 0

    async def next_run_after(self) -> str | None:
        row = await self._one(Q["next_run_after"])
        return row[0] if row else None

    # -- daemons -------------------------------------------------------------------------
    async def register_daemon(self, daemon_id: str, pid: int, host: str) -> None:
        await self._write(Q["prune_daemons"])
        await self._write(Q["register_daemon"], {"id": daemon_id, "pid": pid, "host": host})

    async def beat_daemon(self, daemon_id: str, in_flight: int) -> None:
        await self._write(Q["beat_daemon"], {"id": daemon_id, "in_flight": in_flight})

    async def stop_daemon(self, daemon_id: str) -> None:
        await self._write(Q["stop_daemon"], {"id": daemon_id})

    async def live_daemons(self, stale_s: float) -> list[DaemonInfo]:
        return await self._records(DaemonInfo, "live_daemons", stale_s=stale_s)

    # -- status --------------------------------------------------------------------------
    async def queue_summary(self) -> dict[str, int]:
        return {r[0]: r[1] for r in await self._all(Q["queue_summary"])}

    async def progress(self, limit: int | None = 50) -> list[Progress]:
        """person_progress rows by id; limit None = everyone."""
        return await self._records(
            Progress, "person_progress_all", limit=-1 if limit is None else limit
        )

    async def progress_of(self, person_id: int) -> Progress | None:
        row = await self._one(Q["person_progress_one"], {"id": person_id})
        return from_row(Progress, row) if row else None

    async def image_reasons(self, person_id: int) -> list[ReasonCount]:
        return await self._records(ReasonCount, "image_reasons", id=person_id)

    async def recent_failures(self, limit: int = 10) -> list[Failure]:
        return await self._records(Failure, "recent_failures", limit=limit)

    # -- images --------------------------------------------------------------------------
    async def insert_images(self, images: Iterable[NewImage]) -> None:
        """New search results; an URL already listed for the person is skipped."""
        await self._many(Q["insert_image"], [asdict(i) for i in images])

    async def images_of(self, person_id: int, state: str | None = None) -> list[Image]:
        if state is None:
            return await self._records(Image, "images_of_person", person_id=person_id)
        return await self._records(Image, "images_in_state", person_id=person_id, state=state)

    async def mark_downloaded(self, image_id: int, result: Downloaded) -> None:
        await self._write(Q["image_downloaded"], {"id": image_id, **asdict(result)})

    async def reject_image(self, image_id: int, reason: str, detail: str | None) -> None:
        await self._write(Q["image_rejected"], {"id": image_id, "reason": reason, "detail": detail})

    async def record_analysis(self, image_id: int, result: Analyzed) -> None:
        await self._write(Q["image_analyzed"], {"id": image_id, **asdict(result)})

    async def record_curation(self, verdicts: Iterable[Curated]) -> None:
        """Curation's verdicts on a person's images, all in one transaction."""
        await self._many(Q["image_curated"], [asdict(v) for v in verdicts])

    async def other_users_of_raw(self, raw_path: str, person_id: int) -> int:
        row = await self._one(
            Q["other_users_of_raw"], {"raw_path": raw_path, "person_id": person_id}
        )
        return int(row[0]) if row else 0

    async def forget_raw_paths(self, image_ids: list[int]) -> None:
        await self._many(Q["forget_raw_path"], [{"id": i} for i in image_ids])

    async def referenced_paths(self) -> set[str]:
        raws = await self._all(Q["all_raw_paths"])
        crops = await self._all(Q["all_crop_paths"])
        return {r[0] for r in raws} | {r[0] for r in crops}

    async def accepted_crops(self) -> list[AcceptedCrop]:
        return await self._records(AcceptedCrop, "metadata_accepted_images")

    # -- gallery -------------------------------------------------------------------------
    async def gallery_candidates(self, person_id: int) -> list[GalleryCandidate]:
        return await self._records(GalleryCandidate, "gallery_accepted_images", person_id=person_id)

    async def gallery_folder(self, person_id: int) -> str | None:
        row = await self._one(Q["gallery_folder"], {"person_id": person_id})
        return row[0] if row else None

    async def save_gallery(self, entry: GalleryEntry, files: Sequence[GalleryFile]) -> None:
        """Upsert the identity and its images; its gallery rows not in `files` go."""
        keep = {f.image_id for f in files}
        async with self._transaction() as conn:
            await conn.execute(Q["gallery_upsert_person"], asdict(entry))
            cur = await conn.execute(Q["gallery_images_of"], {"person_id": entry.person_id})
            for row in await cur.fetchall():
                if row["image_id"] not in keep:
                    await conn.execute(Q["gallery_delete_image"], {"id": row["id"]})
            await conn.executemany(
                Q["gallery_upsert_image"],
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
            await conn.execute(Q["gallery_delete_person_images"], {"person_id": person_id})
            await conn.execute(Q["gallery_delete_person"], {"person_id": person_id})

    async def gallery_tested_against(self, person_id: int) -> list[int]:
        """Identities whose nearest other identity is `person_id`."""
        rows = await self._all(Q["gallery_tested_against"], {"person_id": person_id})
        return [r[0] for r in rows]

    async def gallery_identities(self) -> list[GalleryIdentity]:
        return await self._records(GalleryIdentity, "gallery_identities")

    async def gallery_embeddings(self) -> list[GalleryEmbedding]:
        return await self._records(GalleryEmbedding, "gallery_all_embeddings")

    async def save_self_tests(self, results: Iterable[SelfTest]) -> None:
        await self._many(
            Q["gallery_self_test"],
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
        return [r[0] for r in await self._all(Q["gallery_paths"])]

    # -- report --------------------------------------------------------------------------
    async def report_people(self) -> list[ReportPerson]:
        return await self._records(ReportPerson, "report_people")

    async def report_images(self, person_id: int) -> list[ReportImage]:
        return await self._records(ReportImage, "report_images", person_id=person_id)

    async def image_totals(self) -> ImageTotals:
        row = await self._one(Q["report_totals"])
        assert row is not None  # an aggregate always returns one row
        return from_row(ImageTotals, row)

    async def reject_reasons(self) -> list[RejectReason]:
        return await self._records(RejectReason, "report_reasons")
