"""Names from Wikidata's SPARQL endpoint (no key), and the cross-check of LLM names.

People are humans (P31 Q5) with the country's citizenship (P27) and the occupation (P106,
or a subclass of it), ranked by their number of sitelinks (how many Wikipedias have an
article: a good proxy for fame). Country and occupation are resolved from their English
labels. The portrait (P18) is kept: the analysis stage anchors reference selection on it.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

import aiohttp
import structlog

from facequeue.config import Config
from facequeue.errors import InputError, WikidataError
from facequeue.intake.names import Found, Plan, build_plan, gather_all, search_name, transliterate
from facequeue.retry import next_delay, retry_after_seconds

log = structlog.get_logger("facequeue.intake.wikidata")

ENTITY = "http://www.wikidata.org/entity/"
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 120.0
CROSS_CHECK_CHUNK = 40
CONCURRENCY = 3  # WDQS allows a few parallel queries per client


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


def literal(text: str, lang: str | None = None) -> str:
    """A SPARQL string literal; quotes, backslashes and line breaks escaped."""
    body = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    if lang is not None:
        if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{1,8})*", lang):
            raise ValueError(f"bad language code {lang!r}")
        return f'"{body}"@{lang}'
    return f'"{body}"'


def _qid(value: str) -> str:
    qid = value.rsplit("/", 1)[-1]
    if not re.fullmatch(r"Q\d+", qid):
        raise WikidataError(f"unexpected entity in a Wikidata answer: {value[:80]!r}")
    return qid


def _portrait(value: str | None) -> str | None:
    if not value:
        return None
    return "https://" + value[len("http://") :] if value.startswith("http://") else value


def country_query(name: str) -> str:
    return f"""# facequeue: country_by_label
SELECT ?country ?label (MAX(?sitelinks) AS ?links)
       (GROUP_CONCAT(DISTINCT ?code; separator=" ") AS ?langs) WHERE {{
  BIND({literal(name.casefold())} AS ?wanted)
  VALUES ?type {{ wd:Q6256 wd:Q3624078 }}
  ?country wdt:P31 ?type .
  {{ ?country rdfs:label ?l }} UNION {{ ?country skos:altLabel ?l }}
  FILTER(LANG(?l) = "en" && LCASE(STR(?l)) = ?wanted)
  ?country wikibase:sitelinks ?sitelinks .
  OPTIONAL {{ ?country rdfs:label ?label FILTER(LANG(?label) = "en") }}
  OPTIONAL {{ ?country wdt:P37 ?language . ?language wdt:P424 ?code }}
}}
GROUP BY ?country ?label
ORDER BY DESC(?links)
LIMIT 5"""


def occupation_query(name: str) -> str:
    variants = dict.fromkeys([name, name.lower(), name[:1].upper() + name[1:].lower()])
    values = " ".join(literal(v, "en") for v in variants)
    return f"""# facequeue: occupation_by_label
SELECT ?occupation ?label ?links WHERE {{
  VALUES ?text {{ {values} }}
  {{ ?occupation rdfs:label ?text }} UNION {{ ?occupation skos:altLabel ?text }}
  FILTER EXISTS {{ ?someone wdt:P106 ?occupation }}
  ?occupation wikibase:sitelinks ?links .
  OPTIONAL {{ ?occupation rdfs:label ?label FILTER(LANG(?label) = "en") }}
}}
ORDER BY DESC(?links)
LIMIT 5"""


def people_query(country_qid: str, occupation_qid: str, limit: int, langs: tuple[str, ...]) -> str:
    native = ", ".join(literal(code) for code in langs if re.fullmatch(r"[a-z-]{2,12}", code))
    native_clause = (
        f"OPTIONAL {{ ?person rdfs:label ?nat FILTER(LANG(?nat) IN ({native})) }}" if native else ""
    )
    return f"""# facequeue: people_by_country_occupation
SELECT ?person (SAMPLE(?en) AS ?enLabel) (SAMPLE(?mul) AS ?mulLabel)
       (SAMPLE(?nat) AS ?nativeLabel) (MAX(?sitelinks) AS ?links) (SAMPLE(?img) AS ?image) WHERE {{
  ?person wdt:P27 wd:{_qid(country_qid)} ;
          wdt:P31 wd:Q5 ;
          wdt:P106 ?occ ;
          wikibase:sitelinks ?sitelinks .
  ?occ wdt:P279* wd:{_qid(occupation_qid)} .
  OPTIONAL {{ ?person wdt:P18 ?img }}
  OPTIONAL {{ ?person rdfs:label ?en FILTER(LANG(?en) = "en") }}
  OPTIONAL {{ ?person rdfs:label ?mul FILTER(LANG(?mul) = "mul") }}
  {native_clause}
}}
GROUP BY ?person
ORDER BY DESC(?links)
LIMIT {int(limit)}"""


def match_query(
    keyed_names: list[tuple[int, str]], country_qid: str, langs: tuple[str, ...]
) -> str:
    rows = []
    for key, text in keyed_names:
        for lang in dict.fromkeys(("en", "mul") + langs):
            if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{1,8})*", lang):
                rows.append(f"({key} {literal(text, lang)})")
    return f"""# facequeue: people_by_name
SELECT ?key ?person ?citizen (MAX(?sitelinks) AS ?links) (SAMPLE(?img) AS ?image) WHERE {{
  VALUES (?key ?text) {{ {" ".join(rows)} }}
  {{ ?person rdfs:label ?text }} UNION {{ ?person skos:altLabel ?text }}
  ?person wdt:P31 wd:Q5 ;
          wikibase:sitelinks ?sitelinks .
  OPTIONAL {{ ?person wdt:P18 ?img }}
  BIND(EXISTS {{ ?person wdt:P27 wd:{_qid(country_qid)} }} AS ?citizen)
}}
GROUP BY ?key ?person ?citizen"""


class Wikidata:
    """A SPARQL client: `async with Wikidata(cfg) as wd: await wd.resolve_country("Serbia")`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.url = cfg.wikidata.sparql_url
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Wikidata:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.wikidata.timeout_s),
            headers={
                "User-Agent": self.cfg.user_agent,
                "Accept": "application/sparql-results+json",
            },
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self.session is not None:
            await self.session.close()

    async def select(self, query: str) -> list[dict[str, str]]:
        """Run a SELECT; rows as {variable: value}. Retries 429/5xx/timeouts/garbage."""
        assert self.session is not None, "use `async with Wikidata(cfg)`"
        kind = query.split("\n", 1)[0].removeprefix("# facequeue: ")
        attempts = self.cfg.wikidata.max_retries + 1
        last = ""
        for attempt in range(attempts):
            retry_after = None
            try:
                async with self.session.post(self.url, data={"query": query}) as resp:
                    body = await resp.read()
                    if resp.status in RETRY_STATUS:
                        last = f"HTTP {resp.status}"
                        retry_after = retry_after_seconds(
                            resp.headers.get("Retry-After"), MAX_RETRY_AFTER_S
                        )
                    elif resp.status >= 400:
                        raise WikidataError(
                            f"{self.url} refused the {kind} query: HTTP {resp.status} "
                            f"{body[:200].decode('utf-8', 'replace')!r}"
                        )
                    else:
                        return _bindings(body)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}".rstrip(": ") or type(exc).__name__
                if isinstance(exc, asyncio.TimeoutError):
                    last = f"no answer within {self.cfg.wikidata.timeout_s:g} s"
            except _BadAnswer as exc:
                last = str(exc)
            if attempt + 1 < attempts:
                delay = next_delay(self.cfg.wikidata.retry_backoff_s, attempt, retry_after)
                log.warning(
                    "wikidata_retry",
                    query=kind,
                    attempt=attempt + 1,
                    error=last,
                    delay_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
        raise WikidataError(
            f"Wikidata ({self.url}) gave no usable answer to the {kind} query "
            f"after {attempts} attempt(s): {last}"
        )

    async def resolve_country(self, name: str) -> Item:
        rows = await self.select(country_query(name))
        for row in rows:
            if row.get("country"):
                langs = tuple(sorted(set(row.get("langs", "").split())))
                return Item(_qid(row["country"]), row.get("label") or name, langs)
        raise InputError(f"unknown country {name!r}: Wikidata has no country of that name")

    async def resolve_occupation(self, name: str) -> Item:
        rows = await self.select(occupation_query(name))
        for row in rows:
            if row.get("occupation"):
                return Item(_qid(row["occupation"]), row.get("label") or name)
        raise InputError(f"unknown occupation {name!r}: Wikidata has no occupation of that name")

    async def people(self, country: Item, occupation: Item, limit: int) -> list[WikiPerson]:
        rows = await self.select(
            people_query(country.qid, occupation.qid, limit, country.languages)
        )
        found = []
        for row in rows:
            name = row.get("enLabel") or row.get("mulLabel") or row.get("nativeLabel")
            if not row.get("person") or not name:
                continue
            found.append(
                WikiPerson(
                    _qid(row["person"]), name, _int(row.get("links")), _portrait(row.get("image"))
                )
            )
        found.sort(key=lambda p: -p.sitelinks)
        return found[:limit]

    async def cross_check(
        self, names: list[str], country: Item
    ) -> dict[str, tuple[str, str | None, str | None]]:
        """{name: (result, wikidata_id, portrait_url)}; result 'confirmed:Q…' (a human of
        that name and citizenship), 'other_country:Q…' (a human of that name, other
        citizenship), 'not_found', or 'unreachable' (the endpoint failed)."""
        out: dict[str, tuple[str, str | None, str | None]] = {}
        for start in range(0, len(names), CROSS_CHECK_CHUNK):
            chunk = names[start : start + CROSS_CHECK_CHUNK]
            keyed = []
            for key, name in enumerate(chunk):
                variants = {
                    name,
                    search_name(name, country.label),
                    " ".join(transliterate(name, country.label).split()),
                }
                keyed += [(key, v) for v in sorted(variants)]
            try:
                rows = await self.select(match_query(keyed, country.qid, country.languages))
            except WikidataError as exc:
                log.warning("wikidata_cross_check_unreachable", error=str(exc))
                out.update({n: ("unreachable", None, None) for n in chunk})
                continue
            best: dict[int, tuple[bool, int, str, str | None]] = {}
            for row in rows:
                try:
                    key = int(row["key"])
                    candidate = (
                        row.get("citizen") in ("true", "1"),
                        _int(row.get("links")),
                        _qid(row["person"]),
                        _portrait(row.get("image")),
                    )
                except (KeyError, ValueError, WikidataError):
                    continue
                if 0 <= key < len(chunk) and (key not in best or candidate[:2] > best[key][:2]):
                    best[key] = candidate
            for key, name in enumerate(chunk):
                if key not in best:
                    out[name] = ("not_found", None, None)
                elif best[key][0]:
                    out[name] = (f"confirmed:{best[key][2]}", best[key][2], best[key][3])
                else:
                    out[name] = (f"other_country:{best[key][2]}", None, None)
        return out


class _BadAnswer(Exception):
    pass


def _bindings(body: bytes) -> list[dict[str, str]]:
    try:
        data = json.loads(body)
        rows = data["results"]["bindings"]
        return [{var: cell["value"] for var, cell in row.items()} for row in rows]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _BadAnswer(
            f"not a SPARQL JSON result ({type(exc).__name__}: "
            f"{body[:80].decode('utf-8', 'replace')!r})"
        ) from None


def _int(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


async def plan_country(cfg: Config, country: str, occupations: list[str], count: int) -> Plan:
    """The `--source wikidata` plan: the most-linked people per occupation."""
    async with Wikidata(cfg) as wd:
        place = await wd.resolve_country(country)
        occ_items = await gather_all([wd.resolve_occupation(o) for o in occupations], CONCURRENCY)
        lists = await gather_all([wd.people(place, o, count) for o in occ_items], CONCURRENCY)
    found = [
        Found(p.name, occ, p.qid, p.portrait_url, None)
        for occ, people in zip(occupations, lists, strict=True)
        for p in people
    ]
    plan = build_plan(place.label, "wikidata", found)
    for occ, people in zip(occupations, lists, strict=True):
        if not people:
            plan.notes.append(f"Wikidata lists nobody for {occ!r} in {place.label}")
    return plan
