"""The states, stages and reasons the database stores, as one set of names.

StrEnum members are their strings, so rows, logs and JSON keep the readable values the sqlite3
views show. tests/test_records.py holds them against the CHECK constraints of the migrations.
"""

from __future__ import annotations

from enum import StrEnum


class PersonState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PROMOTED = "promoted"  # at rest from here on
    INSUFFICIENT = "insufficient"
    NO_CONSENSUS = "no_consensus"
    FAILED = "failed"


AT_REST = frozenset(
    {PersonState.PROMOTED, PersonState.INSUFFICIENT, PersonState.NO_CONSENSUS, PersonState.FAILED}
)


class Stage(StrEnum):
    """A person's next stage to run, in pipeline order; DONE once at rest."""

    SEARCH = "search"
    DOWNLOAD = "download"
    ANALYZE = "analyze"
    CURATE = "curate"
    PROMOTE = "promote"
    DONE = "done"


class ImageState(StrEnum):
    PENDING = "pending"
    DOWNLOADED = "downloaded"
    ANALYZED = "analyzed"
    ACCEPTED = "accepted"  # at rest
    REJECTED = "rejected"  # at rest, always with a reason


class CurationReason(StrEnum):
    """Why curation rejects an analyzed image. (Download rejections carry the downloader's
    own reasons, e.g. `too_small`, `http_404`, `not_an_image`.)"""

    UNREADABLE = "unreadable"
    ANALYSIS_ERROR = "analysis_error"  # the analysis raised on this image
    ANALYSIS_CRASHED = "analysis_crashed"  # its worker died twice on it (e.g. OOM-killed)
    ANALYSIS_TIMEOUT = "analysis_timeout"  # longer than analysis.image_timeout_s
    NO_FACE = "no_face"
    MULTI_FACE = "multi_face"
    AMBIGUOUS_FACES = "ambiguous_faces"  # several faces could be the person
    TOO_SMALL = "too_small"
    BLURRY = "blurry"
    NO_EMBEDDING = "no_embedding"
    DUPLICATE = "duplicate"
    NO_CONSENSUS = "no_consensus"
    NOT_SAME_PERSON = "not_same_person"
    OVER_CAP = "over_cap"
