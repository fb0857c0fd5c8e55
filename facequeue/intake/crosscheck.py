"""The Wikidata cross-check of names an LLM gave: who they are, and whether to queue them.

A name is matched on label, citizenship and occupation (see `Wikidata.cross_check`); a name
Wikidata contradicts (another country, another occupation, unknown) is shown under "not
queued" unless `keep_unverified`. Unreachable Wikidata changes nothing but the flag.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from facequeue.config import Config
from facequeue.errors import InputError, WikidataError
from facequeue.intake import wikidata
from facequeue.intake.names import Dropped, Found, Progress

log = structlog.get_logger("facequeue.intake.crosscheck")


async def resolve_place(
    cfg: Config, country: str, country_qid: str | None, progress: Progress
) -> tuple[wikidata.Item | None, str | None]:
    """(the country on Wikidata, or None and why it could not be asked)."""
    if not cfg.wikidata.cross_check and country_qid is None and not wikidata.is_qid(country):
        return None, None
    async with wikidata.Wikidata(cfg, progress.retry) as wd:
        try:
            return await wd.resolve_country(country, country_qid), None
        except WikidataError as exc:
            if country_qid is not None or wikidata.is_qid(country):
                raise  # a Q-id means nothing without Wikidata
            log.warning("wikidata_unreachable", error=str(exc))
            return None, str(exc)


REFUSALS = {
    "other_country": "Wikidata places {name} in another country ({qid})",
    "other_occupation": "Wikidata knows {name} in {country} only in another occupation ({qid})",
    "not_found": "Wikidata knows no person named {name}",
}


async def cross_check(
    cfg: Config,
    found: list[Found],
    place: wikidata.Item,
    keep_unverified: bool,
    progress: Progress,
) -> tuple[list[Found], list[Dropped], list[str]]:
    """(names to queue with their checks, names Wikidata contradicts, notes)."""
    notes: list[str] = []
    occupations: dict[str, wikidata.Item | None] = {}
    async with wikidata.Wikidata(cfg, progress.retry) as wd:
        for occ in dict.fromkeys(f.occupation for f in found):
            progress.step(occ, "cross-checking the names on Wikidata")
            try:
                occupations[occ] = await wd.resolve_occupation(occ)
            except InputError:
                occupations[occ] = None
                notes.append(f"Wikidata has no occupation {occ!r}: names matched without it")
        checks = await wd.cross_check([(f.name, f.occupation) for f in found], place, occupations)
    kept, refused = [], []
    for item in found:
        check = checks.get((item.name, item.occupation), wikidata.Check("not_found"))
        item = replace(
            item,
            cross_check=check.result,
            wikidata_id=check.wikidata_id,
            portrait_url=check.portrait_url,
        )
        if check.contradicted and not keep_unverified:
            kind, _, qid = check.result.partition(":")
            why = REFUSALS[kind].format(name=item.name, country=place.label, qid=qid)
            refused.append(Dropped(item.name, item.occupation, why))
        else:
            kept.append(item)
    for occ in occupations:
        progress.done(occ, f"{sum(k.occupation == occ for k in kept)} names confirmed or kept")
    if refused:
        notes.append(
            f"{len(refused)} name(s) Wikidata contradicts not queued: --keep-unverified queues them"
        )
    return kept, refused, notes
