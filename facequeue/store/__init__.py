"""The database: the only code that talks to it (SQLite today; the seam for other backends).

Callers use `open_store(cfg)`, the `Store` protocol (base.py) and the records (records.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from facequeue.config import Config
from facequeue.store.base import Store
from facequeue.store.migrate import MIGRATIONS_DIR, migration_files
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
)
from facequeue.store.sqlite import SqliteStore
from facequeue.store.states import AT_REST, CurationReason, ImageState, PersonState, Stage


async def connect(cfg: Config, migrate: bool = True) -> Store:
    """Open the configured database (the caller closes it); migrate unless told not to."""
    return await SqliteStore.open(cfg.db_path, migrate=migrate)


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
    "Downloaded",
    "Failure",
    "GalleryCandidate",
    "GalleryEmbedding",
    "GalleryEntry",
    "GalleryFile",
    "GalleryIdentity",
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
    "SelfTest",
    "SqliteStore",
    "Stage",
    "Store",
    "connect",
    "migration_files",
    "open_store",
]
