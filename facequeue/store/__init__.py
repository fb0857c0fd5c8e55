"""The database: the only code that talks SQL (SQLite today; the seam for other backends)."""

from facequeue.store.review import GalleryRow, Review, ReviewTarget
from facequeue.store.sqlite import (
    MIGRATIONS_DIR,
    AddResult,
    NewPerson,
    Q,
    Store,
    migration_files,
    open_store,
)

__all__ = [
    "GalleryRow",
    "Review",
    "ReviewTarget",
    "MIGRATIONS_DIR",
    "Q",
    "AddResult",
    "NewPerson",
    "Store",
    "migration_files",
    "open_store",
]
