"""The store boundary: everything the rest of facequeue may ask of a database.

A backend (SQLite in sqlite.py; PostgreSQL next) implements this Protocol and speaks only in
the records of records.py. Callers annotate with `Store` and get one from `open_store(cfg)`;
nothing outside facequeue/store/ sees SQL, connections or transactions. Each write method is
one transaction: it lands whole or not at all. Timestamps are ISO-8601 UTC text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

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


class Store(Protocol):
    """An open database (see the module docstring). Raises StoreError for database trouble
    and LeaseLost when a lease-guarded write finds the lease gone."""

    # -- set-up --------------------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the database is, for messages (a path or a URL without password)."""
        ...

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction; names applied."""
        ...

    async def applied_migrations(self) -> list[tuple[int, str, str]]:
        """(version, name, applied_at) of every applied migration, in order."""
        ...

    async def integrity_problems(self) -> list[str]:
        """What the database's own integrity check reports (empty: sound)."""
        ...

    async def wait_for_work(self, timeout: float) -> bool:
        """Sleep until a person may have become claimable (True: notified, PostgreSQL's
        LISTEN/NOTIFY) or `timeout` seconds pass (False: the poll of backends without it)."""
        ...

    # -- people: the queue ---------------------------------------------------------------
    async def add_people(self, people: Iterable[NewPerson]) -> AddResult:
        """Insert the new ones in one transaction; same slug+country or Wikidata id: skip."""
        ...

    async def already_queued(self, people: Iterable[NewPerson]) -> list[NewPerson]:
        """Those of `people` that add_people would skip."""
        ...

    async def slug_holder(self, slug: str, country: str) -> tuple[bool, str | None]:
        """(is `slug` taken in `country`, the Wikidata id of the person holding it): a holder
        with another Wikidata id is a namesake, not the same person."""
        ...

    async def claim(self, owner: str, lease_s: float) -> Person | None:
        """Take the next claimable person (queued and due, or with an expired lease) for
        `owner` with a lease of `lease_s` seconds, atomically; None when nobody is due."""
        ...

    async def claim_specific(self, person_id: int, owner: str, lease_s: float) -> Person | None:
        """Claim this person unless someone else holds a live lease on them."""
        ...

    async def reclaim_expired(self) -> list[Person]:
        """Requeue running people whose lease has expired; returns them."""
        ...

    async def renew_leases(self, owner: str, lease_s: float, live_ids: Iterable[int]) -> list[int]:
        """Extend the leases `owner` holds on `live_ids` (the people it works on right now,
        and no others); returns the ids still held."""
        ...

    async def release_orphans(self, owner: str, live_ids: Iterable[int]) -> list[int]:
        """Requeue people `owner` holds a lease on but no longer works on; their ids."""
        ...

    async def still_own(self, person_id: int, owner: str) -> bool: ...

    async def advance_stage(self, person_id: int, owner: str, stage: str) -> None:
        """Record `stage` as the next to run; LeaseLost if `owner` lost the person."""
        ...

    async def finish(self, person_id: int, owner: str, state: str, reason: str | None) -> None:
        """Put the person at rest in `state` (promoted, insufficient, no_consensus)."""
        ...

    async def fail_attempt(
        self, person_id: int, owner: str, error: str, max_attempts: int, delay_s: float
    ) -> tuple[str, int] | None:
        """Count a failed attempt: queued again after `delay_s`, or failed at
        `max_attempts`. Returns (new state, attempts), None if the lease was lost."""
        ...

    async def fail_permanently(self, person_id: int, owner: str, error: str) -> None: ...

    async def release(self, person_id: int, owner: str) -> None:
        """Give a running person back to the queue (shutdown), due now."""
        ...

    async def release_owner(self, owner: str) -> None:
        """Release every person `owner` holds."""
        ...

    async def retry_failed(self, person_id: int | None = None) -> list[int]:
        """Requeue failed people and people waiting for a scheduled retry (or one of them)
        with attempts reset: claimable now; returns their ids."""
        ...

    async def requeue(self, person_id: int, stage: str) -> None:
        """Queue a person at rest again from `stage` (e.g. recurate), attempts reset."""
        ...

    async def get_person(self, person_id: int) -> Person | None: ...

    async def find_people(self, ref: str) -> list[Person]:
        """People whose id, slug or name (any case) is `ref`."""
        ...

    async def people_at_rest(self) -> list[Person]: ...

    async def delete_person(self, person_id: int) -> None:
        """The person's row and everything that hangs on it (images, gallery rows)."""
        ...

    async def claimable_count(self) -> int: ...

    async def next_run_after(self) -> str | None:
        """When the earliest queued person waiting for a retry becomes due."""
        ...

    # -- daemons -------------------------------------------------------------------------
    async def register_daemon(
        self, daemon_id: str, pid: int, host: str, boot_id: str | None = None
    ) -> None: ...

    async def other_daemons(self, daemon_id: str) -> list[DaemonLiveness]:
        """Daemons other than this one not known to have stopped, with heartbeat age."""
        ...

    async def take_over(self, daemon_id: str) -> list[int]:
        """A daemon known dead: mark it stopped, requeue the people it held (their ids)."""
        ...

    async def beat_daemon(self, daemon_id: str, in_flight: int) -> None: ...

    async def stop_daemon(self, daemon_id: str) -> None: ...

    async def live_daemons(self, stale_s: float) -> list[DaemonInfo]:
        """Daemons not stopped whose heartbeat is younger than `stale_s` seconds."""
        ...

    # -- status --------------------------------------------------------------------------
    async def queue_summary(self) -> dict[str, int]:
        """People per state."""
        ...

    async def progress(self, limit: int | None = 50) -> list[Progress]:
        """The person_progress view by person id; limit None = everyone."""
        ...

    async def progress_of(self, person_id: int) -> Progress | None: ...

    async def image_reasons(self, person_id: int) -> list[ReasonCount]: ...

    async def recent_failures(self, limit: int = 10) -> list[Failure]: ...

    # -- images --------------------------------------------------------------------------
    async def insert_images(self, images: Iterable[NewImage]) -> None:
        """New search results; an URL already listed for the person is skipped."""
        ...

    async def images_of(self, person_id: int, state: str | None = None) -> list[Image]:
        """A person's images by rank (only those in `state` if given)."""
        ...

    async def mark_downloaded(self, image_id: int, result: Downloaded) -> None: ...

    async def reject_image(self, image_id: int, reason: str, detail: str | None) -> None: ...

    async def record_analysis(self, image_id: int, result: Analyzed) -> None: ...

    async def record_curation(self, verdicts: Iterable[Curated]) -> None:
        """Curation's verdicts on a person's images, in one transaction."""
        ...

    async def other_users_of_raw(self, raw_path: str, person_id: int) -> int:
        """How many images of other people point at this raw file."""
        ...

    async def forget_raw_paths(self, image_ids: list[int]) -> None:
        """The raw originals of these images are being deleted: clear their paths."""
        ...

    async def image_back_to_pending(self, image_id: int) -> None:
        """A downloaded image whose raw file is gone is downloaded again."""
        ...

    async def referenced_paths(self) -> set[str]:
        """Every raw, face and crop path a row points at (relative to data_dir)."""
        ...

    async def accepted_crops(self) -> list[AcceptedCrop]: ...

    # -- gallery -------------------------------------------------------------------------
    async def gallery_candidates(self, person_id: int) -> list[GalleryCandidate]:
        """A person's accepted images, for promotion."""
        ...

    async def gallery_folder(self, person_id: int) -> str | None:
        """The person's gallery folder (relative to data_dir) if promoted."""
        ...

    async def save_gallery(self, entry: GalleryEntry, files: Sequence[GalleryFile]) -> None:
        """Upsert the identity and its images; its gallery rows not in `files` go."""
        ...

    async def remove_from_gallery(self, person_id: int) -> None: ...

    async def gallery_tested_against(self, person_id: int) -> list[int]:
        """Identities whose nearest other identity is `person_id`."""
        ...

    async def gallery_identities(self) -> list[GalleryIdentity]: ...

    async def gallery_embeddings(self) -> list[GalleryEmbedding]:
        """Every gallery embedding, ordered by person id then image."""
        ...

    async def save_self_tests(self, results: Iterable[SelfTest]) -> None: ...

    async def gallery_summary(self) -> list[GallerySummary]:
        """The gallery_summary view, flagged identities first."""
        ...

    async def gallery_paths(self) -> list[str]: ...

    # -- report --------------------------------------------------------------------------
    async def report_people(self) -> list[ReportPerson]: ...

    async def report_images(self, person_id: int) -> list[ReportImage]:
        """A person's images ordered by state, rank and id."""
        ...

    async def image_totals(self) -> ImageTotals: ...

    async def reject_reasons(self) -> list[RejectReason]:
        """Rejected images per reason, most frequent first."""
        ...

    # -- reviews (facequeue serve) -------------------------------------------------------
    async def review_target(self, image_id: int) -> ReviewTarget | None:
        """The image a reviewer decides on, or None when there is no such image."""
        ...

    async def set_review(self, target: ReviewTarget, decision: str, note: str | None) -> None:
        """Record or replace a decision ('reject' | 'accept'); 'clear' removes it."""
        ...

    async def reviews_of(self, person_id: int) -> dict[int, Review]:
        """Every reviewer decision on the person's images, by image id."""
        ...

    async def claim_for_recuration(
        self, person_id: int, owner: str, lease_s: float
    ) -> Person | None:
        """Lease a person that has been analysed and is not running, back at its curate stage;
        None when it is busy or not analysed yet."""
        ...

    # -- the gallery's version stamp (facequeue serve) ------------------------------------
    async def gallery_version(self) -> int:
        """Grows with every change to gallery rows (promotion, forget, recurate, review)."""
        ...

    async def gallery_changed_since(self, seq: int) -> list[int] | None:
        """People whose gallery rows changed after version `seq`; None when the change log
        no longer reaches back that far (read everything)."""
        ...

    async def gallery_person_ids(self) -> list[int]: ...

    async def gallery_rows_of(self, person_ids: list[int]) -> list[GalleryRow]:
        """Every gallery embedding of these people, with their identity."""
        ...

    async def gallery_images_of_person(self, person_id: int) -> list[GalleryImageRef]: ...

    # -- metrics and health (facequeue serve) ---------------------------------------------
    async def people_by_state(self) -> dict[str, int]: ...

    async def images_by_outcome(self) -> list[tuple[str, str, int]]:
        """(state, reason or '', images)."""
        ...

    async def heartbeat_age_s(self) -> float | None:
        """Seconds since the newest heartbeat of a daemon not stopped; None: no daemon."""
        ...

    async def ping(self) -> bool: ...
