"""The PostgreSQL backend: the same domain methods as the SQLite store, for N daemons on N hosts.

Statements live in postgres.sql under the names of queries.sql; migrations in
migrations/postgres/ mirror the SQLite ones number for number. A psycopg pool in autocommit
mode: every statement is its own transaction unless `transaction()` groups them. Claims are
one UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING *, so concurrent
daemons never wait on each other's rows. A trigger NOTIFYs `facequeue_work` when a person
becomes claimable; `wait_for_work` sleeps on it instead of the poll interval. A lost
connection is retried with backoff (every statement is safe to repeat: writes are guarded by
the lease owner, inserts by unique keys).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from facequeue.errors import LeaseLost, StoreError
from facequeue.store.sqlite import AddResult, NewPerson, _load_queries, migration_files
from facequeue.store.sqlite import Q as SQLITE_Q

PACKAGE_DIR = Path(__file__).resolve().parent
PG_MIGRATIONS_DIR = PACKAGE_DIR / "migrations" / "postgres"
CHANNEL = "facequeue_work"
MIGRATION_LOCK = 0x66616365  # advisory lock: one migrator at a time across hosts
RETRY_FOR_S = 60.0  # how long a statement keeps retrying a lost connection

log = structlog.get_logger("facequeue.store.postgres")


def _to_psycopg(sql: str) -> str:
    """:name -> %(name)s (psycopg's named style); `::type` casts and literal % kept."""
    sql = sql.replace("%", "%%")
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql)


PQ = {name: _to_psycopg(sql) for name, sql in _load_queries(PACKAGE_DIR / "postgres.sql").items()}
# Until every caller uses domain methods, SQL text of queries.sql maps to its PostgreSQL twin.
_BY_SQLITE_TEXT = {text: PQ[name] for name, text in SQLITE_Q.items() if name in PQ}


class Row:
    """A result row read by index or by column name, like sqlite3.Row (dict(row) works)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: Sequence[str], values: Sequence[Any]) -> None:
        self._names = names
        self._values = tuple(bytes(v) if isinstance(v, memoryview) else v for v in values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self._values[key]
        try:
            return self._values[self._names.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


class _BoolAsInt(psycopg.adapt.Dumper):
    """Flags are INTEGER 0/1 columns on both backends; SQLite takes Python bools for them."""

    oid = psycopg.postgres.types["int4"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


async def _configure(conn: psycopg.AsyncConnection) -> None:
    conn.adapters.register_dumper(bool, _BoolAsInt)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [c.name for c in cursor.description or ()]
    return lambda values: Row(names, values)


def safe_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class _Tx:
    """A connection inside `transaction()`: execute(sql, params) -> cursor (as aiosqlite's)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Any = None) -> psycopg.AsyncCursor:
        return await self.conn.execute(_BY_SQLITE_TEXT.get(sql, sql), params)

    async def executemany(self, sql: str, rows: Iterable[Any]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(_BY_SQLITE_TEXT.get(sql, sql), list(rows))


class PgStore:
    """An open PostgreSQL database. Use `await PgStore.open(url)`."""

    backend = "postgresql"

    def __init__(self, pool: AsyncConnectionPool, url: str) -> None:
        self.pool = pool
        self.url = url
        self.path = safe_url(url)
        self._work = asyncio.Event()
        self._listener: asyncio.Task | None = None

    # -- set-up --------------------------------------------------------------------------
    @classmethod
    async def open(cls, url: str, migrate: bool = True, max_size: int = 8) -> PgStore:
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "row_factory": _row_factory},
            configure=_configure,
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=RETRY_FOR_S,
        )
        try:
            await pool.open(wait=True, timeout=15)
        except (psycopg.Error, OSError) as exc:
            await pool.close()
            raise StoreError(f"cannot open database {safe_url(url)}: {_first_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - the pool reports a failed connect as PoolTimeout
            await pool.close()
            raise StoreError(f"cannot open database {safe_url(url)}: {_first_line(exc)}") from None
        store = cls(pool, url)
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
        return store

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self.pool.close()

    async def migrate(self, migrations_dir: Path = PG_MIGRATIONS_DIR) -> list[str]:
        """Apply pending migrations in order; each with its record in one transaction.
        An advisory lock keeps two daemons starting at once from racing."""
        applied_now: list[str] = []
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT "
                    "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"
                )
                for version, name, path in migration_files(migrations_dir):
                    if await self._apply(conn, version, name, path):
                        applied_now.append(f"{version:04d}_{name}")
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        return applied_now

    @staticmethod
    async def _apply(conn: psycopg.AsyncConnection, version: int, name: str, path: Path) -> bool:
        try:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (version,)
                )
                if await cur.fetchone():
                    return False
                await conn.execute(path.read_text(encoding="utf-8").encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )
        except psycopg.Error as exc:
            raise StoreError(f"migration postgres/{path.name} failed: {_first_line(exc)}") from None
        return True

    async def applied_migrations(self) -> list[tuple[int, str, str]]:
        exists = await self._one("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists or not exists[0]:
            return []
        rows = await self._all(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # -- helpers -----------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        """One transaction on one pooled connection, rolled back on any error."""
        async with self.pool.connection() as conn, conn.transaction():
            yield _Tx(conn)

    async def _run(self, sql: str, params: Any, many: bool = False) -> list[Row]:
        """One statement (or one executemany in one transaction); retried with backoff
        while the server is unreachable."""
        delay, waited = 0.1, 0.0
        while True:
            try:
                async with self.pool.connection() as conn:
                    if many:
                        async with conn.transaction(), conn.cursor() as cur:
                            await cur.executemany(sql, params)
                        return []
                    cur = await conn.execute(sql, params)
                    return list(await cur.fetchall()) if cur.description else []
            except psycopg.OperationalError as exc:
                if waited >= RETRY_FOR_S:
                    raise StoreError(f"database {self.path}: {_first_line(exc)}") from None
                log.warning("database_retry", error=_first_line(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)

    async def _all(self, sql: str, params: Any = None) -> list[Row]:
        return await self._run(sql, params)

    async def _one(self, sql: str, params: Any = None) -> Row | None:
        rows = await self._run(sql, params)
        return rows[0] if rows else None

    async def _q(self, name: str, **params: Any) -> list[Row]:
        return await self._run(PQ[name], params)

    async def query(self, name: str, **params: Any) -> list[Row]:
        """Run a named read query from postgres.sql."""
        return await self._q(name, **params)

    async def execute(self, name: str, **params: Any) -> list[Row]:
        """Run a named write statement in its own transaction."""
        return await self._q(name, **params)

    # -- waiting for work ------------------------------------------------------------------
    async def wait_for_work(self, timeout: float) -> bool:
        """Return True when a person may have become claimable (NOTIFY), False after
        `timeout` (delayed retries and expired leases are found by that poll)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="pg-listen")
        try:
            await asyncio.wait_for(self._work.wait(), timeout)
        except TimeoutError:
            return False
        self._work.clear()
        return True

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._work.set()  # anything added while we were not listening
                    delay = 0.1
                    async for _ in conn.notifies():
                        self._work.set()
            except psycopg.OperationalError as exc:
                log.warning("listen_reconnect", error=_first_line(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- people --------------------------------------------------------------------------
    async def add_people(self, people: Iterable[NewPerson]) -> AddResult:
        """Insert all new people in one transaction; existing ones are skipped."""
        added: list[int] = []
        skipped: list[NewPerson] = []
        async with self.transaction() as tx:
            for person in people:
                params = person.__dict__
                cur = await tx.execute(PQ["person_exists"], params)
                if await cur.fetchone():
                    skipped.append(person)
                    continue
                cur = await tx.execute(PQ["insert_person"], params)
                row = await cur.fetchone()
                if row is None:
                    skipped.append(person)
                else:
                    added.append(row[0])
        return AddResult(added, skipped)

    async def claim(self, owner: str, lease_s: float) -> dict | None:
        rows = await self._q("claim_person", owner=owner, lease_s=float(lease_s))
        return dict(rows[0]) if rows else None

    async def reclaim_expired(self) -> list[dict]:
        return [dict(r) for r in await self._q("reclaim_expired")]

    async def renew_leases(self, owner: str, lease_s: float) -> list[int]:
        return [r[0] for r in await self._q("renew_leases", owner=owner, lease_s=float(lease_s))]

    async def still_own(self, person_id: int, owner: str) -> bool:
        return bool(await self._q("still_own", id=person_id, owner=owner))

    async def claim_specific(self, person_id: int, owner: str, lease_s: float) -> dict | None:
        rows = await self._q("claim_specific", id=person_id, owner=owner, lease_s=float(lease_s))
        return dict(rows[0]) if rows else None

    async def advance_stage(self, person_id: int, owner: str, stage: str) -> None:
        if not await self._q("advance_stage", id=person_id, owner=owner, stage=stage):
            raise LeaseLost(f"lease on person {person_id} was lost before stage {stage}")

    async def finish(self, person_id: int, owner: str, state: str, reason: str | None) -> None:
        rows = await self._q("finish_person", id=person_id, owner=owner, state=state, reason=reason)
        if not rows:
            raise LeaseLost(f"lease on person {person_id} was lost before it finished")

    async def fail_attempt(
        self, person_id: int, owner: str, error: str, max_attempts: int, delay_s: float
    ) -> tuple[str, int] | None:
        rows = await self._q(
            "fail_attempt",
            id=person_id,
            owner=owner,
            error=error[:2000],
            max_attempts=max_attempts,
            delay_s=float(delay_s),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def fail_permanently(self, person_id: int, owner: str, error: str) -> None:
        await self._q("fail_permanently", id=person_id, owner=owner, error=error[:2000])

    async def release(self, person_id: int, owner: str) -> None:
        await self._q("release_person", id=person_id, owner=owner)

    async def release_owner(self, owner: str) -> None:
        await self._q("release_owner", owner=owner)

    async def retry_failed(self, person_id: int | None = None) -> list[int]:
        return [r[0] for r in await self._q("retry_failed", id=person_id)]

    async def requeue(self, person_id: int, stage: str) -> None:
        await self._q("requeue_person", id=person_id, stage=stage)

    async def get_person(self, person_id: int) -> dict | None:
        rows = await self._q("get_person", id=person_id)
        return dict(rows[0]) if rows else None

    async def find_people(self, ref: str) -> list[dict]:
        return [dict(r) for r in await self._q("find_people", ref=ref)]

    async def people_at_rest(self) -> list[dict]:
        return [dict(r) for r in await self._q("people_at_rest")]

    async def delete_person(self, person_id: int) -> None:
        await self._q("delete_person", id=person_id)

    async def claimable_count(self) -> int:
        return (await self._q("claimable_count"))[0][0]

    async def next_run_after(self) -> str | None:
        return (await self._q("next_run_after"))[0][0]

    # -- daemons -------------------------------------------------------------------------
    async def register_daemon(self, daemon_id: str, pid: int, host: str) -> None:
        await self._q("prune_daemons")
        await self._q("register_daemon", id=daemon_id, pid=pid, host=host)

    async def beat_daemon(self, daemon_id: str, in_flight: int) -> None:
        await self._q("beat_daemon", id=daemon_id, in_flight=in_flight)

    async def stop_daemon(self, daemon_id: str) -> None:
        await self._q("stop_daemon", id=daemon_id)

    async def live_daemons(self, stale_s: float) -> list[dict]:
        return [dict(r) for r in await self._q("live_daemons", stale_s=float(stale_s))]

    # -- status --------------------------------------------------------------------------
    async def queue_summary(self) -> dict[str, int]:
        return {r[0]: r[1] for r in await self._q("queue_summary")}

    async def progress(self, limit: int = 50) -> list[dict]:
        return [dict(r) for r in await self._q("person_progress_all", limit=limit)]

    async def progress_of(self, person_id: int) -> dict | None:
        rows = await self._q("person_progress_one", id=person_id)
        return dict(rows[0]) if rows else None

    async def image_reasons(self, person_id: int) -> list[dict]:
        return [dict(r) for r in await self._q("image_reasons", id=person_id)]

    async def recent_failures(self, limit: int = 10) -> list[dict]:
        return [dict(r) for r in await self._q("recent_failures", limit=limit)]

    # -- images --------------------------------------------------------------------------
    async def insert_images(self, rows: list[dict]) -> None:
        await self._run(PQ["insert_image"], rows, many=True)

    async def images_of(self, person_id: int, state: str | None = None) -> list[dict]:
        if state is None:
            rows = await self._q("images_of_person", person_id=person_id)
        else:
            rows = await self._q("images_in_state", person_id=person_id, state=state)
        return [dict(r) for r in rows]

    async def update_image(self, statement: str, **params: Any) -> None:
        if not statement.startswith("image_"):
            raise ValueError(statement)
        await self._q(statement, **params)

    async def update_images(self, statement: str, rows: list[dict]) -> None:
        if not statement.startswith("image_"):
            raise ValueError(statement)
        await self._run(PQ[statement], rows, many=True)

    async def other_users_of_raw(self, raw_path: str, person_id: int) -> int:
        rows = await self._q("other_users_of_raw", raw_path=raw_path, person_id=person_id)
        return rows[0][0]

    async def forget_raw_paths(self, image_ids: list[int]) -> None:
        await self._run(PQ["forget_raw_path"], [{"id": i} for i in image_ids], many=True)

    async def referenced_paths(self) -> set[str]:
        raws = await self._q("all_raw_paths")
        crops = await self._q("all_crop_paths")
        return {r[0] for r in raws} | {r[0] for r in crops}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
