"""The SQLite backend of the store: connection set-up and every domain method, in SQL.

Statements live in queries.sql (by name) and migrations/NNNN_*.sql. One aiosqlite connection
per process; an asyncio lock serialises transactions on it so coroutines never interleave
inside one transaction. Other processes are kept out by SQLite's own locking (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from facequeue.errors import StoreError
from facequeue.store import migrate as migrations
from facequeue.store.review import ReviewQueries
from facequeue.store.sqlbase import load_queries

PACKAGE_DIR = Path(__file__).resolve().parent
BUSY_TIMEOUT_MS = 30_000
# A transient "database is locked"/"busy" (another process held the write lock past the busy
# timeout) is retried with backoff for this long before it becomes an error.
TRANSIENT_RETRY_S = 120.0


Q = load_queries(PACKAGE_DIR / "queries.sql")


def is_transient(exc: BaseException) -> bool:
    """SQLite lock contention: worth retrying, never a verdict on the work."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteStore(ReviewQueries):
    """An open SQLite database. Use `open_store(cfg)` (or `await SqliteStore.open(path)`)."""

    Q = Q

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.lock = asyncio.Lock()
        self.retry_s = TRANSIENT_RETRY_S

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

    async def wait_for_work(self, timeout: float) -> bool:
        """SQLite has no notifications: an idle daemon polls every `timeout` seconds."""
        await asyncio.sleep(timeout)
        return False

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
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error (including cancellation).

        BEGIN IMMEDIATE takes the write lock, so lock contention shows up there (and only
        there, in WAL mode): it is retried, the transaction's body runs once."""
        async with self.lock:
            try:
                await self._retrying(lambda: self.conn.execute("BEGIN IMMEDIATE"))
                yield self.conn
                # A COMMIT that fails (SQLITE_FULL on a full disk) leaves the transaction
                # open: it is rolled back below, or every later BEGIN would fail.
                await asyncio.shield(self.conn.execute("COMMIT"))
            except BaseException:
                await asyncio.shield(self._rollback())
                raise

    async def _rollback(self) -> None:
        """ROLLBACK whatever is open. A BEGIN cancelled while waiting still runs on
        aiosqlite's thread, which runs requests in order: this ROLLBACK comes after it.
        Nothing open (SQLite rolled back itself) is fine; no error here hides the cause."""
        with contextlib.suppress(sqlite3.Error):
            await self.conn.execute("ROLLBACK")

    async def _retrying(self, fn: Any) -> Any:
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

    async def _all(self, sql: str, params: Any = ()) -> list[aiosqlite.Row]:
        async def read() -> list[aiosqlite.Row]:
            cur = await self.conn.execute(sql, params)
            return list(await cur.fetchall())

        async with self.lock:
            result: list[aiosqlite.Row] = await self._retrying(read)
            return result

    async def _write(self, sql: str, params: Any = ()) -> list[aiosqlite.Row]:
        async with self._transaction() as conn:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall())

    async def _many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        async with self._transaction() as conn:
            await conn.executemany(sql, rows)
