"""`facequeue copy-db`: every row of one database into an empty other one, ids preserved.

The way a user who outgrew one box moves the queue, images, embeddings and gallery to
PostgreSQL (or back to a SQLite file) without re-downloading anything: files stay where they
are in data_dir, and rows keep their ids, so every relative path and reference still holds.
Both sides are migrated to the latest schema first (the parity test keeps the two schemas
column-for-column equal), then the target is filled in one transaction: all or nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from facequeue.config import Config
from facequeue.errors import InputError, StoreError
from facequeue.store.postgres import PgStore, safe_url
from facequeue.store.sqlite import SqliteStore

# Parents before children (foreign keys); daemons are per-process and not copied, nor is
# gallery_changes (the target's triggers write its own as the gallery rows arrive).
TABLES: tuple[tuple[str, str], ...] = (
    ("people", "id"),
    ("images", "id"),
    ("image_reviews", "image_id"),
    ("gallery_people", "person_id"),
    ("gallery_images", "id"),
)
BATCH = 2000


@dataclass(frozen=True)
class CopyResult:
    """What copy-db copied: rows per table, and where to (a path or a URL without password)."""

    target: str
    rows: dict[str, int]


AnyStore = SqliteStore | PgStore


def target_kind(url: str) -> tuple[str, str]:
    """('postgresql', url) or ('sqlite', path) for a copy-db TARGET (URL or .db file)."""
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        return "postgresql", url
    if scheme == "sqlite":
        path = unquote(urlsplit(url).path)
        if not path:
            raise InputError(f"{url}: expected sqlite:///path/to/facequeue.db")
        return "sqlite", path
    if scheme == "" and url.strip():
        return "sqlite", url
    raise InputError(f"{url}: expected postgresql://user@host:port/db or a SQLite file path")


async def open_source(cfg: Config) -> AnyStore:
    """The configured database, migrated (copy-db copies the latest schema)."""
    if cfg.database_url:
        return await PgStore.open(cfg.database_url)
    return await SqliteStore.open(cfg.db_path)


async def open_target(url: str) -> AnyStore:
    kind, where = target_kind(url)
    if kind == "postgresql":
        return await PgStore.open(where, migrate=False)
    path = Path(where).expanduser()
    if path.is_dir():
        raise InputError(f"{path} is a folder: name the SQLite file to create")
    return await SqliteStore.open(path, migrate=False)


def _label(store: AnyStore) -> str:
    return store.path if isinstance(store, PgStore) else str(store.path)


async def _table_names(store: AnyStore) -> set[str]:
    if isinstance(store, PgStore):
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
    return {r[0] for r in await store._all(sql)}


async def row_counts(store: AnyStore) -> dict[str, int]:
    present = await _table_names(store)
    counts = {}
    for table, _ in TABLES:
        if table in present:
            counts[table] = (await store._all(f"SELECT COUNT(*) FROM {table}"))[0][0]
    return counts


async def _batches(store: AnyStore, table: str, key: str) -> AsyncIterator[list[Any]]:
    """Keyset pagination: memory stays flat on millions of rows."""
    mark = "%s" if isinstance(store, PgStore) else "?"
    last = None
    params: tuple[Any, ...]
    while True:
        if last is None:
            sql, params = f"SELECT * FROM {table} ORDER BY {key} LIMIT {BATCH}", ()
        else:
            sql = f"SELECT * FROM {table} WHERE {key} > {mark} ORDER BY {key} LIMIT {BATCH}"
            params = (last,)
        rows = await store._all(sql, params)
        if not rows:
            return
        yield rows
        last = rows[-1][key]


async def copy_database(source: AnyStore, target: AnyStore) -> CopyResult:
    """Copy every row of `source` into `target`, which must hold no rows."""
    filled = {t: n for t, n in (await row_counts(target)).items() if n}
    if filled:
        what = ", ".join(f"{n} {t}" for t, n in filled.items())
        raise InputError(
            f"target database {_label(target)} is not empty ({what}): "
            "copy-db only copies into an empty database"
        )
    await source.migrate()
    await target.migrate()
    src_v = [v for v, _, _ in await source.applied_migrations()]
    dst_v = [v for v, _, _ in await target.applied_migrations()]
    if src_v != dst_v:
        raise StoreError(f"schema versions differ: source {src_v}, target {dst_v}")
    mark = "%s" if isinstance(target, PgStore) else "?"
    copied: dict[str, int] = {}
    async with target._transaction() as tx:
        for table, key in TABLES:
            copied[table] = 0
            async for rows in _batches(source, table, key):
                cols = rows[0].keys()
                sql = (
                    f"INSERT INTO {table} ({', '.join(cols)}) "
                    f"VALUES ({', '.join([mark] * len(cols))})"
                )
                await tx.executemany(sql, [tuple(r) for r in rows])
                copied[table] += len(rows)
        if isinstance(target, PgStore):
            for table, key in TABLES:
                if key == "id":  # identity columns continue after the copied ids
                    await tx.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                    )
    return CopyResult(_label(target), copied)


__all__ = ["CopyResult", "copy_database", "open_target", "row_counts", "safe_url", "target_kind"]
