"""The database: the only code that talks to it. SQLite by default, PostgreSQL when
`database_url` is set (many daemons on many machines); both implement the same boundary.

Callers use `open_store(cfg)`, the `Store` protocol (base.py) and the records (records.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from facequeue.config import Config
from facequeue.store.base import Store
from facequeue.store.migrate import MIGRATIONS_DIR, migration_files
from facequeue.store.records import (
    AcceptedCrop,
    AddResult,
    Analyzed,
    Curated,
    DaemonInfo,
    DaemonLiveness,
    Downloaded,
    Failure,
    GalleryCandidate,
    GalleryEmbedding,
    GalleryEntry,
    GalleryFile,
    GalleryIdentity,
    GalleryImageRef,
    GalleryRow,
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
    Review,
    ReviewTarget,
    SelfTest,
)
from facequeue.store.sqlite import SqliteStore
from facequeue.store.states import AT_REST, CurationReason, ImageState, PersonState, Stage

if TYPE_CHECKING:  # copy.py loads psycopg: only imported when copy-db runs
    from facequeue.store.copy import CopyResult


async def connect(cfg: Config, migrate: bool = True) -> Store:
    """Open the configured database (the caller closes it); migrate unless told not to."""
    if cfg.database_url:
        from facequeue.store.postgres import PgStore  # psycopg only loaded when used

        return await PgStore.open(cfg.database_url, migrate=migrate)
    return await SqliteStore.open(cfg.db_path, migrate=migrate)


async def copy_db(cfg: Config, target_url: str) -> CopyResult:
    """Copy the configured database into the empty database at `target_url` (copy.py)."""
    from facequeue.store.copy import copy_database, open_source, open_target

    source = await open_source(cfg)
    try:
        target = await open_target(target_url)
        try:
            return await copy_database(source, target)
        finally:
            await target.close()
    finally:
        await source.close()


def backend_migrations(cfg: Config) -> list[tuple[int, str, Path]]:
    """The migration files of the configured backend."""
    if cfg.database_url:
        from facequeue.store.postgres import PG_MIGRATIONS_DIR

        return migration_files(PG_MIGRATIONS_DIR)
    return migration_files()


_PG_DISK_FULL = "53100"  # SQLSTATE disk_full


def database_disk_full(exc: BaseException) -> bool:
    """A write the database refused because its disk is full (SQLite's SQLITE_FULL,
    PostgreSQL's disk_full): not a verdict on the work, worth doing again once there is room."""
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_FULL
    return getattr(exc, "sqlstate", None) == _PG_DISK_FULL


@asynccontextmanager
async def open_store(cfg: Config, migrate: bool = True) -> AsyncIterator[Store]:
    store = await connect(cfg, migrate=migrate)
    try:
        yield store
    finally:
        await store.close()


__all__ = [
    "AT_REST",
    "MIGRATIONS_DIR",
    "AcceptedCrop",
    "AddResult",
    "Analyzed",
    "Curated",
    "CurationReason",
    "DaemonInfo",
    "DaemonLiveness",
    "Downloaded",
    "Failure",
    "GalleryCandidate",
    "GalleryEmbedding",
    "GalleryEntry",
    "GalleryFile",
    "GalleryIdentity",
    "GalleryImageRef",
    "GalleryRow",
    "GallerySummary",
    "Image",
    "ImageState",
    "ImageTotals",
    "NewImage",
    "NewPerson",
    "Person",
    "PersonState",
    "Progress",
    "ReasonCount",
    "RejectReason",
    "ReportImage",
    "ReportPerson",
    "Review",
    "ReviewTarget",
    "SelfTest",
    "SqliteStore",
    "Stage",
    "Store",
    "backend_migrations",
    "connect",
    "copy_db",
    "database_disk_full",
    "migration_files",
    "open_store",
]
