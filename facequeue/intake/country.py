"""`add-country`: ask a source (LLM or Wikidata) for the best-known people, then queue them.

The orchestration lives here, above `names` (slugs, plans) and the two sources, so the
import graph stays one-way: country -> llm, wikidata -> names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import structlog

from facequeue.config import Config
from facequeue.errors import InputError
from facequeue.intake import llm, wikidata
from facequeue.intake.names import Plan, clean_country, clean_occupations
from facequeue.store import AddResult, NewPerson, open_store

log = structlog.get_logger("facequeue.intake.country")


async def plan_country(
    cfg: Config,
    country: str,
    occupations: Iterable[str] | None = None,
    count: int | None = None,
    source: Literal["llm", "wikidata"] | None = None,
) -> Plan:
    """Ask the source for the best-known people of each occupation; nothing is stored."""

    country = clean_country(country)
    occs = clean_occupations(cfg.names.occupations if occupations is None else occupations)
    count = cfg.names.count if count is None else count
    if count < 1:
        raise InputError(f"--count must be at least 1 (got {count})")
    source = source or cfg.names.source
    if source == "wikidata":
        return await wikidata.plan_country(cfg, country, occs, count)
    if source == "llm":
        return await llm.plan_country(cfg, country, occs, count)
    raise InputError(f"unknown source {source!r}: use llm or wikidata")


async def add_country(
    cfg: Config,
    country: str,
    occupations: Iterable[str] | None = None,
    count: int | None = None,
    source: Literal["llm", "wikidata"] | None = None,
    dry_run: bool = False,
) -> tuple[Plan, AddResult]:
    """Plan, then queue everyone new in one transaction (dry_run: only report duplicates)."""
    plan = await plan_country(cfg, country, occupations, count, source)
    if dry_run:
        return plan, await existing(cfg, plan.people)
    async with open_store(cfg) as store:
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


async def existing(cfg: Config, people: list[NewPerson]) -> AddResult:
    """Which of `people` are already queued (reads the database only if it exists)."""
    if not cfg.db_path.exists():
        return AddResult([], [])
    async with open_store(cfg) as store:
        return AddResult([], await store.already_queued(people))
