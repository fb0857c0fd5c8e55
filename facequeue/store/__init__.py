"""The database: the only code that talks SQL. SQLite (default) or PostgreSQL (database_url)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from facequeue.config import Config
from facequeue.store.sqlite import (
    MIGRATIONS_DIR,
    AddResult,
    NewPerson,
    Q,
    Store,
    migration_files,
)


async def connect(cfg: Config, migrate: bool = True) -> Store:
    """Open the configured backend. The PostgreSQL store has the same domain methods."""
    if cfg.database_url:
        from facequeue.store.postgres import PgStore

        return cast(Store, await PgStore.open(cfg.database_url, migrate=migrate))
    return await Store.open(cfg.db_path, migrate=migrate)


def backend_migrations(cfg: Config) -> list:
    """The migration files of the configured backend."""
    if cfg.database_url:
        from facequeue.store.postgres import PG_MIGRATIONS_DIR

        return migration_files(PG_MIGRATIONS_DIR)
    return migration_files()


@asynccontextmanager
async def open_store(cfg: Config, migrate: bool = True) -> AsyncIterator[Store]:
    store = await connect(cfg, migrate=migrate)
    try:
        yield store
    finally:
        await store.close()


__all__ = [
    "MIGRATIONS_DIR",
    "Q",
    "AddResult",
    "NewPerson",
    "Store",
    "backend_migrations",
    "connect",
    "migration_files",
    "open_store",
]
