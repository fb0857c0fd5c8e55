"""Typed records of reviewer decisions and `facequeue serve` (records.py re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Review:
    """A reviewer's decision on one image (facequeue serve); sticky over curation."""

    image_id: int
    decision: str  # 'reject' | 'accept'
    note: str | None
    reviewed_at: str


@dataclass(frozen=True)
class ReviewTarget:
    """An image a reviewer decides on, with what its person is doing now."""

    image_id: int
    person_id: int
    state: str
    reason: str | None
    has_face: bool  # an analysed face crop and an embedding: it can be accepted
    person_state: str
    person_stage: str


@dataclass(frozen=True)
class GalleryRow:
    """One gallery embedding with its identity (what the server's in-memory index holds)."""

    person_id: int
    path: str
    embedding: bytes
    name: str
    country: str
    folder: str


@dataclass(frozen=True)
class GalleryImageRef:
    image_id: int
    path: str
    is_reference: int
