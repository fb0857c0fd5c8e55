"""The only place that talks SQL: connection set-up, migrations, the people queue, image rows.

Statements live in queries.sql (by name) and migrations/NNNN_*.sql. One aiosqlite connection
per process; an asyncio lock serialises transactions on it so coroutines never interleave
inside one transaction. Other processes are kept out by SQLite's own locking (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from anyascii import anyascii

from facequeue.config import Config
from facequeue.errors import LeaseLost, StoreError

PACKAGE_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
BUSY_TIMEOUT_MS = 30_000
# A transient "database is locked"/"busy" (another process held the write lock past the busy
# timeout) is retried with backoff for this long before it becomes an error.
TRANSIENT_RETRY_S = 120.0


def is_transient(exc: BaseException) -> bool:
    """SQLite lock contention: worth retrying, never a verdict on the work."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc).lower()


def folder_base(slug: str, country: str) -> str:
    """`<slug>__<ascii country>`: a person's folder name unless another person has it."""
    flat = re.sub(r"[^A-Za-z0-9]+", "_", anyascii(country or "").replace("'", "")).strip("_")
    return f"{slug}__{flat[:60].strip('_') or 'unknown'}"


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


@dataclass(frozen=True)
class NewPerson:
    name: str
    slug: str
    country: str
    occupation: str | None = None
    source: str = "manual"
    search_name: str | None = None
    wikidata_id: str | None = None
    portrait_url: str | None = None
    cross_check: str | None = None


@dataclass(frozen=True)
class AddResult:
    added: list[int]
    skipped: list[NewPerson]


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, Path]]:
    if not directory.is_dir():
        raise StoreError(f"migrations folder not found: {directory}")
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = re.match(r"(\d{4})_(\w+)\.sql$", path.name)
        if not match:
            raise StoreError(f"badly named migration {path.name}: expected NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise StoreError("two migrations share a number")
    return found


class Store:
    """An open database. Use `await Store.open(cfg)` or `async with open_store(cfg)`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.lock = asyncio.Lock()
        self.retry_s = TRANSIENT_RETRY_S

    # -- set-up --------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        db_path: Path,
        migrate: bool = True,
        migrations_dir: Path = MIGRATIONS_DIR,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> Store:
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(
                str(db_path), isolation_level=None, timeout=busy_timeout_ms / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {db_path}: {exc}") from None
        conn.row_factory = aiosqlite.Row
        store = cls(conn, db_path)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
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

    async def close(self) -> None:
        await self.conn.close()

    async def migrate(self, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
        """Apply pending migrations in order; each with its record in one transaction."""
        applied_now: list[str] = []
        async with self.lock:
            await self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TEXT NOT NULL "
                "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
            )
            for version, name, path in migration_files(migrations_dir):
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    cur = await self.conn.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                    )
                    if await cur.fetchone():
                        await self.conn.execute("COMMIT")
                        continue
                    for statement in _split_sql(path.read_text(encoding="utf-8")):
                        await self.conn.execute(statement)
                    await self.conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                        (version, name),
                    )
                    await self.conn.execute("COMMIT")
                except BaseException as exc:
                    await self.conn.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.Error):
                        raise StoreError(f"migration {path.name} failed: {exc}") from None
                    raise
                applied_now.append(f"{version:04d}_{name}")
        return applied_now

    async def applied_migrations(self) -> list[tuple[int, str, str]]:
        return [
            tuple(r)
            for r in await self._all(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            )
        ]

    # -- helpers -----------------------------------------------------------------------
    async def _retrying(self, fn):
        """Run fn() again while SQLite says locked/busy, with backoff, up to retry_s."""
        deadline = time.monotonic() + self.retry_s
        delay = 0.05
        while True:
            try:
                return await fn()
            except sqlite3.OperationalError as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error (including cancellation).

        BEGIN IMMEDIATE takes the write lock, so lock contention shows up there (and only
        there, in WAL mode): it is retried, the transaction's body runs once."""
        async with self.lock:
            await self._retrying(lambda: self.conn.execute("BEGIN IMMEDIATE"))
            try:
                yield self.conn
            except BaseException:
                await asyncio.shield(self.conn.execute("ROLLBACK"))
                raise
            else:
                await asyncio.shield(self.conn.execute("COMMIT"))

    async def _all(self, sql: str, params: Any = ()) -> list[aiosqlite.Row]:
        async def read() -> list[aiosqlite.Row]:
            cur = await self.conn.execute(sql, params)
            return list(await cur.fetchall())

        async with self.lock:
            return await self._retrying(read)

    async def _one(self, sql: str, params: Any = ()) -> aiosqlite.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _write(self, sql: str, params: Any = ()) -> list[aiosqlite.Row]:
        async with self.transaction() as conn:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall())

    async def query(self, name: str, **params: Any) -> list[aiosqlite.Row]:
        """Run a named read query from queries.sql."""
        return await self._all(Q[name], params)

    async def execute(self, name: str, **params: Any) -> list[aiosqlite.Row]:
        """Run a named write statement in its own transaction."""
        return await self._write(Q[name], params)

    # -- people --------------------------------------------------------------------------
    async def add_people(self, people: Iterable[NewPerson]) -> AddResult:
        """Insert all new people in one transaction; existing ones (slug+country or
        Wikidata id) are skipped. Either all new rows land or none."""
        added: list[int] = []
        skipped: list[NewPerson] = []
        async with self.transaction() as conn:
            for person in people:
                params = person.__dict__
                cur = await conn.execute(Q["person_exists"], params)
                if await cur.fetchone():
                    skipped.append(person)
                    continue
                folder = folder_base(person.slug, person.country)
                cur = await conn.execute(Q["insert_person"], {**params, "folder": folder})
                row = await cur.fetchone()
                if row is None:
                    skipped.append(person)
                else:
                    added.append(row[0])
                    await conn.execute(
                        Q["person_folder_suffixed"], {"id": row[0], "folder": folder}
                    )
        return AddResult(added, skipped)

    async def claim(self, owner: str, lease_s: float) -> dict | None:
        rows = await self._write(Q["claim_person"], {"owner": owner, "lease_s": lease_s})
        return dict(rows[0]) if rows else None

    async def reclaim_expired(self) -> list[dict]:
        return [dict(r) for r in await self._write(Q["reclaim_expired"])]

    async def renew_leases(self, owner: str, lease_s: float, live_ids: Iterable[int]) -> list[int]:
        """Extend the leases of the people this daemon is working on (and no others)."""
        rows = await self._write(
            Q["renew_leases"],
            {"owner": owner, "lease_s": lease_s, "ids": json.dumps(sorted(live_ids))},
        )
        return [r[0] for r in rows]

    async def release_orphans(self, owner: str, live_ids: Iterable[int]) -> list[int]:
        rows = await self._write(
            Q["release_orphans"], {"owner": owner, "ids": json.dumps(sorted(live_ids))}
        )
        return [r[0] for r in rows]

    async def still_own(self, person_id: int, owner: str) -> bool:
        return bool(await self._one(Q["still_own"], {"id": person_id, "owner": owner}))

    async def claim_specific(self, person_id: int, owner: str, lease_s: float) -> dict | None:
        rows = await self._write(
            Q["claim_specific"], {"id": person_id, "owner": owner, "lease_s": lease_s}
        )
        return dict(rows[0]) if rows else None

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

    async def get_person(self, person_id: int) -> dict | None:
        row = await self._one(Q["get_person"], {"id": person_id})
        return dict(row) if row else None

    async def find_people(self, ref: str) -> list[dict]:
        return [dict(r) for r in await self._all(Q["find_people"], {"ref": ref})]

    async def people_at_rest(self) -> list[dict]:
        return [dict(r) for r in await self._all(Q["people_at_rest"])]

    async def delete_person(self, person_id: int) -> None:
        await self._write(Q["delete_person"], {"id": person_id})

    async def claimable_count(self) -> int:
        row = await self._one(Q["claimable_count"])
        return row[0]

    async def next_run_after(self) -> str | None:
        row = await self._one(Q["next_run_after"])
        return row[0]

    # -- daemons -------------------------------------------------------------------------
    async def register_daemon(
        self, daemon_id: str, pid: int, host: str, boot_id: str | None = None
    ) -> None:
        await self._write(Q["prune_daemons"])
        await self._write(
            Q["register_daemon"], {"id": daemon_id, "pid": pid, "host": host, "boot_id": boot_id}
        )

    async def other_daemons(self, daemon_id: str) -> list[dict]:
        """Daemons not known to have stopped, other than this one, with heartbeat age."""
        return [dict(r) for r in await self._all(Q["other_daemons"], {"id": daemon_id})]

    async def take_over(self, daemon_id: str) -> list[dict]:
        """A daemon known dead: mark it stopped and requeue the people it held, at once."""
        async with self.transaction() as conn:
            await conn.execute(Q["mark_daemon_dead"], {"id": daemon_id})
            cur = await conn.execute(Q["take_over_leases"], {"owner": daemon_id})
            return [dict(r) for r in await cur.fetchall()]

    async def beat_daemon(self, daemon_id: str, in_flight: int) -> None:
        await self._write(Q["beat_daemon"], {"id": daemon_id, "in_flight": in_flight})

    async def stop_daemon(self, daemon_id: str) -> None:
        await self._write(Q["stop_daemon"], {"id": daemon_id})

    async def live_daemons(self, stale_s: float) -> list[dict]:
        return [dict(r) for r in await self._all(Q["live_daemons"], {"stale_s": stale_s})]

    # -- status --------------------------------------------------------------------------
    async def queue_summary(self) -> dict[str, int]:
        return {r[0]: r[1] for r in await self._all(Q["queue_summary"])}

    async def progress(self, limit: int = 50) -> list[dict]:
        return [dict(r) for r in await self._all(Q["person_progress_all"], {"limit": limit})]

    async def progress_of(self, person_id: int) -> dict | None:
        row = await self._one(Q["person_progress_one"], {"id": person_id})
        return dict(row) if row else None

    async def image_reasons(self, person_id: int) -> list[dict]:
        return [dict(r) for r in await self._all(Q["image_reasons"], {"id": person_id})]

    async def recent_failures(self, limit: int = 10) -> list[dict]:
        return [dict(r) for r in await self._all(Q["recent_failures"], {"limit": limit})]

    # -- images --------------------------------------------------------------------------
    async def insert_images(self, rows: list[dict]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(Q["insert_image"], rows)

    async def images_of(self, person_id: int, state: str | None = None) -> list[dict]:
        if state is None:
            rows = await self._all(Q["images_of_person"], {"person_id": person_id})
        else:
            rows = await self._all(Q["images_in_state"], {"person_id": person_id, "state": state})
        return [dict(r) for r in rows]

    async def update_image(self, statement: str, **params: Any) -> None:
        """One of the image_* statements of queries.sql, in its own transaction."""
        if not statement.startswith("image_"):
            raise ValueError(statement)
        await self._write(Q[statement], params)

    async def update_images(self, statement: str, rows: list[dict]) -> None:
        if not statement.startswith("image_"):
            raise ValueError(statement)
        async with self.transaction() as conn:
            await conn.executemany(Q[statement], rows)

    async def other_users_of_raw(self, raw_path: str, person_id: int) -> int:
        row = await self._one(
            Q["other_users_of_raw"], {"raw_path": raw_path, "person_id": person_id}
        )
        return row[0]

    async def forget_raw_paths(self, image_ids: list[int]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(Q["forget_raw_path"], [{"id": i} for i in image_ids])

    async def referenced_paths(self) -> set[str]:
        raws = await self._all(Q["all_raw_paths"])
        crops = await self._all(Q["all_crop_paths"])
        return {r[0] for r in raws} | {r[0] for r in crops}


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about strings)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise StoreError("migration ends with an incomplete statement")
    return statements


@asynccontextmanager
async def open_store(cfg: Config, migrate: bool = True) -> AsyncIterator[Store]:
    store = await Store.open(cfg.db_path, migrate=migrate)
    try:
        yield store
    finally:
        await store.close()
