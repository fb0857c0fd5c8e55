"""`add-country`: ask a source (LLM or Wikidata) for the best-known people, then queue them.

The orchestration lives here, above `names` (slugs, plans) and the two sources, so the
import graph stays one-way: country -> llm, wikidata -> names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Literal

import structlog

from facequeue.config import Config
from facequeue.errors import InputError
from facequeue.intake import wikidata
from facequeue.intake.names import (
    NO_PROGRESS,
    Plan,
    Progress,
    clean_country,
    clean_occupations,
    namesake_slug,
    namesakes,
)
from facequeue.store import AddResult, Store, open_store

log = structlog.get_logger("facequeue.intake.country")


async def plan_country(
    cfg: Config,
    country: str,
    occupations: Iterable[str] | None = None,
    count: int | None = None,
    source: Literal["llm", "wikidata"] | None = None,
    country_qid: str | None = None,
    keep_unverified: bool = False,
    progress: Progress = NO_PROGRESS,
) -> Plan:
    """Ask the source for the best-known people of each occupation; nothing is stored.

    `country` is a name or a Wikidata Q-id; `country_qid` picks one of several countries
    sharing a name. `keep_unverified` queues LLM names Wikidata contradicts."""

    country = clean_country(country or country_qid or "")
    occs = clean_occupations(cfg.names.occupations if occupations is None else occupations)
    count = cfg.names.count if count is None else count
    if count < 1:
        raise InputError(f"--count must be at least 1 (got {count})")
    source = source or cfg.names.source
    if source == "wikidata":
        return await wikidata.plan_country(cfg, country, occs, count, country_qid, progress)
    if source == "llm":
        # openai costs a second and ~40 MB to import: only the LLM source pays for it
        from facequeue.intake import llm

        return await llm.plan_country(
            cfg, country, occs, count, country_qid, keep_unverified, progress
        )
    raise InputError(f"unknown source {source!r}: use llm or wikidata")


async def add_country(
    cfg: Config,
    country: str,
    occupations: Iterable[str] | None = None,
    count: int | None = None,
    source: Literal["llm", "wikidata"] | None = None,
    dry_run: bool = False,
    country_qid: str | None = None,
    keep_unverified: bool = False,
    progress: Progress = NO_PROGRESS,
) -> tuple[Plan, AddResult]:
    """Plan, then queue everyone new in one transaction (dry_run: only report duplicates)."""
    plan = await plan_country(
        cfg, country, occupations, count, source, country_qid, keep_unverified, progress
    )
    if dry_run:
        return plan, await existing(cfg, plan)
    async with open_store(cfg) as store:
        await separate_namesakes(store, plan)
        result = await store.add_people(plan.people)
    log.info(
        "people_queued",
        country=plan.country,
        source=plan.source,
        added=len(result.added),
        skipped=len(result.skipped),
        dropped=len(plan.dropped),
    )
    return plan, result


async def separate_namesakes(store: Store, plan: Plan) -> None:
    """A person whose slug is held by someone with another Wikidata id is a namesake, not a
    duplicate: give them a slug of their own, so they can still be queued."""
    for i, person in enumerate(plan.people):
        if not person.wikidata_id:
            continue
        taken, holder = await store.slug_holder(person.slug, person.country)
        if taken and namesakes(holder, person.wikidata_id):
            plan.people[i] = replace(person, slug=namesake_slug(person.slug, person.wikidata_id))


async def existing(cfg: Config, plan: Plan) -> AddResult:
    """Which of the plan's people are already queued (reads the database only if it exists)."""
    if not cfg.database_url and not cfg.db_path.exists():
        return AddResult([], [])
    async with open_store(cfg) as store:
        await separate_namesakes(store, plan)
        return AddResult([], await store.already_queued(plan.people))
