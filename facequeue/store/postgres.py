"""The PostgreSQL backend of the store, for N daemons on N hosts sharing one queue.

The domain methods are sqlbase.SqlStore's, as for SQLite; this module supplies the connection,
migrations and primitives. Statements live in postgres.sql under the names of queries.sql;
migrations in migrations/postgres/ mirror the SQLite ones number for number. A psycopg pool in
autocommit mode: every statement is its own transaction unless `_transaction()` groups them.
Claims are one UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING *, so
concurrent daemons never wait on each other's rows. A trigger NOTIFYs `facequeue_work` when a
person becomes claimable; `wait_for_work` sleeps on it instead of the poll interval. A lost
connection is retried with backoff (every statement is safe to repeat: writes are guarded by
the lease owner, inserts by unique keys; a claim whose answer was lost leaves an orphan lease
that the daemon's heartbeat releases).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from facequeue.errors import StoreError
from facequeue.store.migrate import migration_files
from facequeue.store.review import ReviewQueries
from facequeue.store.sqlbase import load_queries

PACKAGE_DIR = Path(__file__).resolve().parent
PG_MIGRATIONS_DIR = PACKAGE_DIR / "migrations" / "postgres"
CHANNEL = "facequeue_work"
MIGRATION_LOCK = 0x66616365  # advisory lock: one migrator at a time across hosts
RETRY_FOR_S = 60.0  # how long a statement keeps retrying a lost connection
CONNECT_TIMEOUT_S = 10

log = structlog.get_logger("facequeue.store.postgres")


def _to_psycopg(sql: str) -> str:
    """:name -> %(name)s (psycopg's named style); `::type` casts and literal % kept."""
    sql = sql.replace("%", "%%")
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql)


PQ = {name: _to_psycopg(sql) for name, sql in load_queries(PACKAGE_DIR / "postgres.sql").items()}


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
    """A connection inside `_transaction()`: execute(sql, params) -> cursor (as aiosqlite's)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Any = None) -> psycopg.AsyncCursor:
        return await self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Any]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(sql, list(rows))


class PgStore(ReviewQueries):
    """An open PostgreSQL database. Use `open_store(cfg)` (or `await PgStore.open(url)`)."""

    Q = PQ

    def __init__(self, pool: AsyncConnectionPool, url: str) -> None:
        self.pool = pool
        self.url = url
        self.path = safe_url(url)
        self._work = asyncio.Event()
        self._listener: asyncio.Task | None = None

    # -- set-up --------------------------------------------------------------------------
    @classmethod
    async def open(cls, url: str, migrate: bool = True, max_size: int = 8) -> PgStore:
        try:  # one direct connection first: libpq's own words for a wrong host or password
            probe = await psycopg.AsyncConnection.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
            await probe.close()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open database {safe_url(url)}: {_first_line(exc)}") from None
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
            await pool.open(wait=True, timeout=RETRY_FOR_S)
        except (psycopg.Error, OSError, PoolTimeout) as exc:
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

    @property
    def location(self) -> str:
        return self.path

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

    async def integrity_problems(self) -> list[str]:
        """The server checks its own pages; a failing query is what there is to report."""
        try:
            rows = await self._all(self.Q["doctor_quick_check"])
        except (psycopg.Error, StoreError) as exc:
            return [_first_line(exc)]
        return [r[0] for r in rows if r[0] != "ok"]

    # -- helpers -----------------------------------------------------------------------
    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Tx]:
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
                    return cast(list[Row], await cur.fetchall()) if cur.description else []
            except psycopg.OperationalError as exc:
                if waited >= RETRY_FOR_S:
                    raise StoreError(f"database {self.path}: {_first_line(exc)}") from None
                log.warning("database_retry", error=_first_line(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)

    async def _all(self, sql: str, params: Any = ()) -> list[Row]:
        return await self._run(sql, params)

    async def _write(self, sql: str, params: Any = ()) -> list[Row]:
        return await self._run(sql, params)  # autocommit: one statement, one transaction

    async def _many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        await self._run(sql, rows, many=True)

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
