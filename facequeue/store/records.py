"""Typed records that cross the store boundary (in and out), one per row shape.

Every backend returns these, never its own row type, so callers cannot tell SQLite from
another database. Records are frozen: to change a row, call a store method.
A record lists the columns it needs; a column added by a migration stays invisible until a
field is added here (`from_row` ignores extra columns, so a new column breaks nothing).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

R = TypeVar("R")


class RowLike(Protocol):
    """A database row that can be read by column name (sqlite3.Row, asyncpg.Record, dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


def from_row(cls: type[R], row: RowLike) -> R:
    """Build record `cls` from a row that has (at least) its columns."""
    return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]


# -------------------------------------------------------------------------- people


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


@dataclass(frozen=True)
class Person:
    """A row of `people`."""

    id: int
    name: str
    slug: str
    country: str
    occupation: str | None
    search_name: str | None
    source: str
    wikidata_id: str | None
    portrait_url: str | None
    cross_check: str | None
    state: str
    stage: str
    state_reason: str | None
    attempts: int
    lease_owner: str | None
    lease_until: str | None
    run_after: str | None
    last_error: str | None
    created_at: str
    updated_at: str
    finished_at: str | None
    folder: str | None = None  # its own folder under faces/, candidates/, gallery/ (0004)


@dataclass(frozen=True)
class Progress:
    """A row of the `person_progress` view."""

    person_id: int
    person: str
    slug: str
    country: str
    occupation: str | None
    stage: str
    state: str
    attempts: int
    images: int
    accepted: int
    rejected: int
    in_progress: int
    state_reason: str | None
    last_error: str | None
    run_after: str | None
    updated_at: str


@dataclass(frozen=True)
class ReasonCount:
    """How many images of a person ended in (state, reason)."""

    state: str
    reason: str
    images: int


@dataclass(frozen=True)
class Failure:
    """A person parked as failed, with the last error."""

    id: int
    name: str
    country: str
    stage: str
    attempts: int
    last_error: str | None
    updated_at: str


@dataclass(frozen=True)
class DaemonLiveness:
    """A daemon not known to have stopped, with what tells whether it is dead."""

    id: str
    pid: int
    host: str
    boot_id: str | None
    age_s: float  # seconds since its last heartbeat


@dataclass(frozen=True)
class DaemonInfo:
    """A live daemon process (row of `daemons`)."""

    id: str
    pid: int
    host: str
    started_at: str
    heartbeat_at: str
    in_flight: int


# -------------------------------------------------------------------------- images


@dataclass(frozen=True)
class NewImage:
    """A search result to be downloaded."""

    person_id: int
    provider: str
    rank: int
    url: str
    thumbnail_url: str | None = None
    page_url: str | None = None
    title: str | None = None
    license: str | None = None
    author: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Image:
    """A row of `images`."""

    id: int
    person_id: int
    provider: str
    rank: int
    url: str
    thumbnail_url: str | None
    page_url: str | None
    title: str | None
    license: str | None
    author: str | None
    state: str
    reason: str | None
    detail: str | None
    sha256: str | None
    raw_path: str | None
    final_url: str | None
    content_type: str | None
    bytes: int | None
    width: int | None
    height: int | None
    format: str | None
    analysis_status: str | None
    faces_json: str | None
    face_count: int | None
    blur: float | None
    brightness: float | None
    contrast: float | None
    embedding: builtins.bytes | None  # (`bytes` is a column name here)
    phash: str | None
    timings_json: str | None
    face_path: str | None
    is_reference: int
    distance: float | None
    quality: float | None
    crop_path: str | None
    created_at: str
    updated_at: str
    face_values_json: str | None = None  # 0010: per embedded face (see vision/stored.py)
    face_vectors: builtins.bytes | None = None
    face_index: int | None = None  # the face curation kept


@dataclass(frozen=True)
class Downloaded:
    """What the download stage records for an image it stored."""

    sha256: str
    raw_path: str
    final_url: str | None
    content_type: str | None
    bytes: int
    width: int | None
    height: int | None
    format: str | None


@dataclass(frozen=True)
class Analyzed:
    """What the analyze stage records for an image (once per image)."""

    analysis_status: str
    detail: str | None
    faces_json: str
    face_count: int
    blur: float | None
    brightness: float | None
    contrast: float | None
    embedding: bytes | None
    phash: str | None
    timings_json: str
    face_path: str | None
    face_values_json: str | None = None  # per embedded face (migration 0010)
    face_vectors: bytes | None = None


@dataclass(frozen=True)
class Curated:
    """Curation's verdict on one image."""

    id: int
    state: str
    reason: str | None
    detail: str | None
    is_reference: int
    distance: float | None
    quality: float | None
    crop_path: str | None
    face_index: int | None = None  # the face kept (index into faces_json)
    embedding: bytes | None = None  # that face's embedding; None keeps the stored one


@dataclass(frozen=True)
class AcceptedCrop:
    """An accepted image with its crop, as `facequeue stats --db` reads it."""

    person_id: int
    person: str
    country: str
    crop_path: str | None
    image_id: int


# -------------------------------------------------------------------------- gallery


@dataclass(frozen=True)
class GalleryCandidate:
    """An accepted image that promotion may copy into the gallery."""

    id: int
    crop_path: str | None
    embedding: bytes | None
    is_reference: int
    distance: float | None


@dataclass(frozen=True)
class GalleryEntry:
    """One promoted identity (row of `gallery_people`, without the self-test)."""

    person_id: int
    folder: str
    images: int
    model: str
    metric: str
    threshold: float


@dataclass(frozen=True)
class GalleryFile:
    """One gallery image (row of `gallery_images`); paths relative to data_dir."""

    image_id: int
    rel_path: str
    sha256: str
    embedding: bytes
    is_reference: int


@dataclass(frozen=True)
class GalleryIdentity:
    person_id: int
    name: str
    country: str
    folder: str


@dataclass(frozen=True)
class GalleryEmbedding:
    person_id: int
    path: str
    embedding: bytes


@dataclass(frozen=True)
class SelfTest:
    """Leave-one-out result of one identity against the whole gallery."""

    person_id: int
    images: int
    top1: float
    misses: int
    own_distance: float | None
    nearest_other_person_id: int | None
    nearest_other_distance: float | None
    margin: float | None
    flagged: bool
    flag_reason: str | None


@dataclass(frozen=True)
class GallerySummary:
    """A row of the `gallery_summary` view."""

    person_id: int
    person: str
    country: str
    folder: str
    images: int
    self_test_top1: float | None
    margin: float | None
    own_distance: float | None
    nearest_other_distance: float | None
    nearest_other: str | None
    flagged: int
    flag_reason: str | None
    promoted_at: str
    tested_at: str | None


# -------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ReportPerson(Progress):
    """A person's progress, identity and gallery self-test, for the HTML report."""

    name: str = ""
    portrait_url: str | None = None
    wikidata_id: str | None = None
    finished_at: str | None = None
    gallery_folder: str | None = None
    gallery_images: int | None = None
    self_test_top1: float | None = None
    margin: float | None = None
    own_distance: float | None = None
    nearest_other_distance: float | None = None
    nearest_other: str | None = None
    flagged: int | None = None
    flag_reason: str | None = None


@dataclass(frozen=True)
class ReportImage(Image):
    """An image with the path of its gallery copy (if promoted) and a reviewer's decision."""

    gallery_path: str | None = None
    review: str | None = None  # 'reject' | 'accept' (image_reviews), None when not reviewed
    review_note: str | None = None


@dataclass(frozen=True)
class ImageTotals:
    images: int
    accepted: int
    rejected: int
    in_progress: int


@dataclass(frozen=True)
class RejectReason:
    reason: str
    images: int


# review + serve records live in review_records.py (this module's length); imported from
# here like every other record
from facequeue.store.review_records import GalleryImageRef as GalleryImageRef  # noqa: E402
from facequeue.store.review_records import GalleryRow as GalleryRow  # noqa: E402
from facequeue.store.review_records import Review as Review  # noqa: E402
from facequeue.store.review_records import ReviewTarget as ReviewTarget  # noqa: E402
