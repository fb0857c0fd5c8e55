"""Names from Wikidata's SPARQL endpoint (no key), and the cross-check of LLM names.

People are humans (P31 Q5) with the country's citizenship (P27) and the occupation (P106,
or a subclass of it), ranked by their number of sitelinks. Country and occupation are
resolved from their English labels; a label two countries share is an error that lists
both (choose with a Q-id). The portrait (P18) is kept: the analysis stage anchors reference
selection on it, so it is only ever taken from a person Wikidata identifies unambiguously.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import structlog

from facequeue.config import Config
from facequeue.errors import InputError, WikidataError
from facequeue.intake import wikidata_queries as wq
from facequeue.intake.names import (
    NO_PROGRESS,
    Found,
    Plan,
    Progress,
    build_plan,
    gather_all,
    search_name,
    transliterate,
)
from facequeue.intake.sparql import OnRetry, Sparql

log = structlog.get_logger("facequeue.intake.wikidata")

CROSS_CHECK_CHUNK = 40
CONCURRENCY = 3  # WDQS allows a few parallel queries per client
MORE_ROUNDS = 3  # how often a shortfall of named people asks for a longer list
QID = re.compile(r"[Qq]\d+")


@dataclass(frozen=True)
class Item:
    qid: str
    label: str
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class WikiPerson:
    qid: str
    name: str
    sitelinks: int
    portrait_url: str | None


@dataclass(frozen=True)
class Check:
    """A cross-check result: `result` is stored in people.cross_check."""

    result: str  # confirmed:Q… | ambiguous:Q…,Q… | other_occupation:Q… | other_country:Q…
    #              | not_found | unreachable
    wikidata_id: str | None = None
    portrait_url: str | None = None

    @property
    def contradicted(self) -> bool:
        """Wikidata places the name elsewhere or does not know it."""
        return self.result.split(":", 1)[0] in ("other_occupation", "other_country", "not_found")


def is_qid(text: str) -> bool:
    return bool(QID.fullmatch(text.strip()))


def _portrait(value: str | None) -> str | None:
    if not value:
        return None
    return "https://" + value[len("http://") :] if value.startswith("http://") else value


def _int(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def _truthy(value: str | None) -> bool:
    return value in ("true", "1")


class Wikidata:
    """`async with Wikidata(cfg) as wd: await wd.resolve_country("Serbia")`."""

    def __init__(self, cfg: Config, on_retry: OnRetry | None = None) -> None:
        self.cfg = cfg
        self.sparql = Sparql(cfg, on_retry)

    async def __aenter__(self) -> Wikidata:
        await self.sparql.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sparql.__aexit__(*exc)

    async def resolve_country(self, name: str, country_qid: str | None = None) -> Item:
        """The country labelled `name` (or the item `country_qid`, which must be a country).
        InputError when none matches, or when several do (listed with their Q-ids)."""
        if country_qid is None and is_qid(name):
            name, country_qid = "", name
        if country_qid is not None:
            country_qid = country_qid.strip().upper()
            if not is_qid(country_qid):
                raise InputError(f"--country takes a Wikidata Q-id like Q403 (got {country_qid!r})")
            rows = await self.sparql.select(wq.country_query(country_qid=country_qid), "country")
            if not rows:
                raise InputError(f"{country_qid} is not a country on Wikidata")
        else:
            rows = await self.sparql.select(wq.country_query(name), "country")
        rows = [r for r in rows if r.get("country")]
        if not rows:
            raise InputError(f"unknown country {name!r}: Wikidata has no country of that name")
        best = [r for r in rows if _int(r.get("byLabel")) == 1] or rows
        if len(best) > 1:
            listed = "; ".join(f"{r.get('label') or '?'} ({wq.qid(r['country'])})" for r in best)
            raise InputError(
                f"{name!r} names {len(best)} countries on Wikidata: {listed}; "
                f"choose one with --country {wq.qid(best[0]['country'])}"
            )
        row = best[0]
        langs = tuple(sorted(set(row.get("langs", "").split())))
        return Item(wq.qid(row["country"]), row.get("label") or name, langs)

    async def resolve_occupation(self, name: str) -> Item:
        rows = await self.sparql.select(wq.occupation_query(name), f"occupation ({name})")
        for row in rows:
            if row.get("occupation"):
                return Item(wq.qid(row["occupation"]), row.get("label") or name)
        raise InputError(f"unknown occupation {name!r}: Wikidata has no occupation of that name")

    async def people(self, country: Item, occupation: Item, count: int) -> list[WikiPerson]:
        """The `count` most-linked people with a usable name. A person with no label in
        English, mul or the country's languages is named by any label it has; one with no
        label at all is skipped, and a longer list is asked for to fill the place."""
        limit = count + max(5, count // 2)
        for _ in range(MORE_ROUNDS):
            rows = await self.sparql.select(
                wq.people_query(country.qid, occupation.qid, limit, country.languages),
                f"people ({occupation.label})",
            )
            found = [p for p in map(_person, rows) if p is not None]
            if len(found) >= count or len(rows) < limit:
                break
            limit *= 2
        found.sort(key=lambda p: -p.sitelinks)
        return found[:count]

    async def cross_check(
        self, asked: list[tuple[str, str]], country: Item, occupations: dict[str, Item | None]
    ) -> dict[tuple[str, str], Check]:
        """A Check per (name, occupation) an LLM gave. A name fits a Wikidata human with the
        same label or alias, the country's citizenship and an occupation within the asked
        one's subclass tree; exactly one fit is `confirmed`, several are `ambiguous` (no id,
        no portrait: a namesake's photo would anchor the wrong face)."""
        out: dict[tuple[str, str], Check] = {}
        for occ_name in dict.fromkeys(o for _, o in asked):
            names = list(dict.fromkeys(n for n, o in asked if o == occ_name))
            occupation = occupations.get(occ_name)
            for start in range(0, len(names), CROSS_CHECK_CHUNK):
                chunk = names[start : start + CROSS_CHECK_CHUNK]
                checks = await self._check_chunk(chunk, country, occupation)
                out.update(
                    {(name, occ_name): check for name, check in zip(chunk, checks, strict=True)}
                )
        return out

    async def _check_chunk(
        self, chunk: list[str], country: Item, occupation: Item | None
    ) -> list[Check]:
        keyed = []
        for key, name in enumerate(chunk):
            variants = {
                name,
                search_name(name, country.label),
                " ".join(transliterate(name, country.label).split()),
            }
            keyed += [(key, v) for v in sorted(variants)]
        query = wq.match_query(
            keyed, country.qid, occupation.qid if occupation else None, country.languages
        )
        try:
            rows = await self.sparql.select(query, "cross-check")
        except WikidataError as exc:
            log.warning("wikidata_cross_check_unreachable", error=str(exc))
            return [Check("unreachable") for _ in chunk]
        candidates: dict[int, dict[str, tuple[bool, bool, int, str | None]]] = {}
        for row in rows:
            try:
                key, person = int(row["key"]), wq.qid(row["person"])
            except (KeyError, ValueError, WikidataError):
                continue
            candidates.setdefault(key, {})[person] = (
                _truthy(row.get("citizen")),
                _truthy(row.get("inOccupation")),
                _int(row.get("links")),
                _portrait(row.get("image")),
            )
        return [_judge(candidates.get(key, {})) for key in range(len(chunk))]


def _judge(candidates: dict[str, tuple[bool, bool, int, str | None]]) -> Check:
    """One name's Check from its candidates {qid: (citizen, in_occupation, links, image)}."""
    ranked = sorted(candidates.items(), key=lambda kv: (-kv[1][2], kv[0]))
    fits = [(q, c) for q, c in ranked if c[0] and c[1]]
    if len(fits) == 1:
        qid, (_, _, _, image) = fits[0]
        return Check(f"confirmed:{qid}", qid, image)
    if fits:
        return Check("ambiguous:" + ",".join(q for q, _ in fits))
    citizens = [q for q, c in ranked if c[0]]
    if citizens:
        return Check(f"other_occupation:{citizens[0]}")
    if ranked:
        return Check(f"other_country:{ranked[0][0]}")
    return Check("not_found")


def _person(row: dict[str, str]) -> WikiPerson | None:
    """A person row of people_query; None when it has no label at all."""
    native = sorted(
        (k for k in row if re.fullmatch(r"l_[nv]\d+_", k)),
        key=lambda k: (int(k[3:-1]), k[2] != "n"),  # sr, then sr-el/sr-ec, then the next
    )
    columns = ["l_en_", "l_mul_", *native, "l_any_"]
    name = next((row[c].strip() for c in columns if row.get(c, "").strip()), None)
    if not row.get("person") or not name:
        return None
    return WikiPerson(
        wq.qid(row["person"]), name, _int(row.get("links")), _portrait(row.get("image"))
    )


async def plan_country(
    cfg: Config,
    country: str,
    occupations: list[str],
    count: int,
    country_qid: str | None = None,
    progress: Progress = NO_PROGRESS,
) -> Plan:
    """The `--source wikidata` plan: the most-linked people per occupation."""

    async def one(occ: str) -> tuple[Item, list[WikiPerson]]:
        progress.step(occ, "resolving the occupation on Wikidata")
        item = await wd.resolve_occupation(occ)
        progress.step(occ, f"asking Wikidata for {count} people ({item.qid})")
        people = await wd.people(place, item, count)
        progress.done(occ, f"{len(people)} of {count} found")
        return item, people

    async with Wikidata(cfg, progress.retry) as wd:
        place = await wd.resolve_country(country, country_qid)
        lists = await gather_all([one(o) for o in occupations], CONCURRENCY)
    found = [
        Found(p.name, occ, p.qid, p.portrait_url, None)
        for occ, (_, people) in zip(occupations, lists, strict=True)
        for p in people
    ]
    plan = build_plan(place.label, "wikidata", found)
    plan.country_qid = place.qid
    for occ, (_, people) in zip(occupations, lists, strict=True):
        plan.asked[occ] = count
        if len(people) < count:
            plan.notes.append(
                f"shortfall: Wikidata lists only {len(people)} {occ} people in "
                f"{place.label} (asked for {count})"
            )
    return plan
