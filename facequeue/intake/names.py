"""People's names: slugs by real transliteration, search spellings, and `add-country` planning.

Transliteration is done by libraries (anyascii for every script, cyrtranslit for Serbian,
Montenegrin and Macedonian Cyrillic); the only hand-written rules are the national
conventions those libraries lack, listed in `_CONVENTIONS`. A letter is never dropped:
"Novak Đoković" -> "Novak_Djokovic", "Љубиша Самарџић" -> "Ljubisa_Samardzic".

Where the names come from is `llm.py` (two passes) and `wikidata.py` (SPARQL); this module
turns what they found into a `Plan` of new people; `country.py` queues it.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import cyrtranslit
import structlog
from anyascii import anyascii

from facequeue.errors import InputError
from facequeue.store import NewPerson

log = structlog.get_logger("facequeue.intake.names")

MAX_SLUG = 100
T = TypeVar("T")

# -- transliteration -------------------------------------------------------------------

# Countries whose Cyrillic goes through cyrtranslit (language code), lower-case names.
_CYRTRANSLIT_BY_COUNTRY = {
    "serbia": "sr",
    "republic of serbia": "sr",
    "kosovo": "sr",
    "republika srpska": "sr",
    "bosnia and herzegovina": "sr",
    "bosnia": "sr",
    "yugoslavia": "sr",
    "montenegro": "me",
    "north macedonia": "mk",
    "macedonia": "mk",
    "republic of north macedonia": "mk",
}
_GERMAN_SPEAKING = {"germany", "austria", "switzerland", "liechtenstein"}
_VIETNAM = {"vietnam", "viet nam", "socialist republic of vietnam"}

# National conventions anyascii lacks (it maps Đ->D, Ǵ->G, ä->a), applied to Latin text.
_SOUTH_SLAVIC = {"Đ": "Dj", "đ": "dj"}  # Đoković -> Djokovic (not "Dokovic")
_MACEDONIAN = {"Ǵ": "Gj", "ǵ": "gj", "Ḱ": "Kj", "ḱ": "kj"}
_GERMAN = {"Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ä": "ae", "ö": "oe", "ü": "ue"}

_SERBIAN_ONLY_CYRILLIC = set("ЂђЋћЏџЉљЊњЈј")
_MACEDONIAN_ONLY_CYRILLIC = set("ЃѓЌќЅѕ")
_APOSTROPHES = "'\u2019\u02bc\u2018`\u00b4"
_JOINERS = set("-\u2010\u2011\u2012\u2013\u2014" + _APOSTROPHES)
# Vietnamese marks (horn, hook above, dot below): Đ there is plain D ("Đặng" -> "Dang").
_VIETNAMESE_MARKS = {"\u031b", "\u0309", "\u0323"}
_VIETNAMESE_LETTERS = set("ăâêôơưĂÂÊÔƠƯ")  # absent from the South Slavic Latin alphabets


def _key(country: str | None) -> str:
    return " ".join((country or "").casefold().split())


def clean_name(name: str) -> str:
    """A name as given, in NFC with collapsed whitespace.

    InputError if it has no letter or digit."""
    if not isinstance(name, str):
        raise InputError(f"a name must be text, got {type(name).__name__}")
    text = " ".join(unicodedata.normalize("NFC", name).split())
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    if not any(unicodedata.category(c)[0] in "LN" for c in text):
        raise InputError(f"name {name!r} has no letters or digits")
    return text


def _cyrillic_language(text: str, country: str | None) -> str | None:
    """cyrtranslit language for a name's Cyrillic, from the country or from its letters."""
    if not any("\u0400" <= c <= "\u052f" for c in text):
        return None
    by_country = _CYRTRANSLIT_BY_COUNTRY.get(_key(country))
    if by_country:
        return by_country
    letters = set(text)
    if letters & _MACEDONIAN_ONLY_CYRILLIC:
        return "mk"
    if letters & _SERBIAN_ONLY_CYRILLIC:
        return "sr"
    return None  # Russian, Ukrainian, Bulgarian...: anyascii's conventions are right


def _is_vietnamese(text: str, country: str | None) -> bool:
    if _key(country) in _VIETNAM:
        return True
    if set(unicodedata.normalize("NFD", text)) & _VIETNAMESE_MARKS:
        return True
    if any(
        sum(unicodedata.combining(m) > 0 for m in unicodedata.normalize("NFD", c)) > 1 for c in text
    ):
        return True  # stacked marks (ễ, ấ): Vietnamese tone on a modified vowel
    return bool(set(text) & _VIETNAMESE_LETTERS)


def _latin_with_diacritics(text: str, country: str | None) -> str:
    """Serbian/Montenegrin/Macedonian Cyrillic to their official Latin alphabets."""
    lang = _cyrillic_language(text, country)
    if lang:
        text = unicodedata.normalize("NFC", cyrtranslit.to_latin(text, lang))
        if lang == "mk":
            text = "".join(_MACEDONIAN.get(c, c) for c in text)
    return text


def transliterate(name: str, country: str | None = None) -> str:
    """ASCII spelling of a name, by anyascii plus the national conventions it lacks."""
    text = _latin_with_diacritics(clean_name(name), country)
    rules: dict[str, str] = dict(_MACEDONIAN)
    if not _is_vietnamese(text, country):
        rules.update(_SOUTH_SLAVIC)
    if _key(country) in _GERMAN_SPEAKING:
        rules.update(_GERMAN)
    text = "".join(rules.get(c, c) for c in text)
    return anyascii(text)


def slugify(name: str, country: str | None = None) -> str:
    """Folder-safe ASCII slug: letters, digits, '-' inside words, words joined by '_'.

    "Novak Đoković" -> "Novak_Djokovic"; "Љубиша Самарџић" -> "Ljubisa_Samardzic".
    At most 100 characters, never empty (InputError), never a path separator or "..".
    """
    original = clean_name(name)
    # Symbols, emoji, slashes, dots... separate words; they are not transliterated into text.
    kept = "".join(
        c if (unicodedata.category(c)[0] in "LNM" or c in _JOINERS) else " " for c in original
    )
    ascii_text = transliterate(kept, country) if kept.strip() else ""
    ascii_text = re.sub(f"[{re.escape(_APOSTROPHES)}]", "", ascii_text)  # O'Brien -> OBrien
    words = []
    for raw in re.split(r"[^A-Za-z0-9-]+", ascii_text):
        word = re.sub(r"-{2,}", "-", raw).strip("-")
        if word:
            words.append(word)
    if not words:
        raise InputError(f"name {name!r} gives an empty slug")
    slug = words[0][:MAX_SLUG].rstrip("-")
    for word in words[1:]:
        if len(slug) + 1 + len(word) > MAX_SLUG:
            break
        slug += "_" + word
    return slug


def search_name(name: str, country: str | None = None) -> str:
    """The best spelling for an image search.

    Serbian, Montenegrin and Macedonian Cyrillic names are searched in their official Latin
    alphabet with diacritics ("Љубиша Самарџић" -> "Ljubiša Samardžić"), as the press writes
    them; every other name is searched as given (search engines know diacritics and scripts).
    """
    return _latin_with_diacritics(clean_name(name), country)


# -- planning add-country --------------------------------------------------------------


@dataclass(frozen=True)
class Dropped:
    """A name not queued, and why (the validation pass, a bad name, a duplicate)."""

    name: str
    occupation: str
    reason: str


@dataclass
class Plan:
    country: str  # canonical spelling stored in people.country
    source: str  # "llm:<model>" or "wikidata"
    people: list[NewPerson] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Found:
    """One person an outside source named for (country, occupation)."""

    name: str
    occupation: str
    wikidata_id: str | None = None
    portrait_url: str | None = None
    cross_check: str | None = None


def clean_occupations(occupations: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for occ in occupations:
        text = " ".join(str(occ).split())
        if text and text.casefold() not in seen:
            seen[text.casefold()] = text
    if not seen:
        raise InputError("no occupations: pass --occupation or set names.occupations in the config")
    return list(seen.values())


def clean_country(country: str) -> str:
    text = " ".join((country or "").split())
    if not text:
        raise InputError("the country name is empty")
    if not any(unicodedata.category(c)[0] == "L" for c in text):
        raise InputError(f"{country!r} is not a country name")
    return text


async def gather_all(coros: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Run at most `limit` at once; on the first error cancel the rest and raise it."""
    sem = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[T]) -> T:
        async with sem:
            return await coro

    tasks = [asyncio.ensure_future(one(c)) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def build_plan(
    country: str, source: str, found: list[Found], dropped: list[Dropped] | None = None
) -> Plan:
    """Slugs and search names for everyone found; duplicates within the batch dropped."""
    plan = Plan(country=country, source=source, dropped=list(dropped or []))
    slugs: set[str] = set()
    qids: set[str] = set()
    for item in found:
        try:
            name = clean_name(item.name)
            slug = slugify(name, country)
        except InputError as exc:
            plan.dropped.append(Dropped(item.name, item.occupation, f"bad name: {exc}"))
            continue
        if slug.casefold() in slugs or (item.wikidata_id and item.wikidata_id in qids):
            plan.dropped.append(Dropped(name, item.occupation, "named twice in this run"))
            continue
        slugs.add(slug.casefold())
        if item.wikidata_id:
            qids.add(item.wikidata_id)
        plan.people.append(
            NewPerson(
                name=name,
                slug=slug,
                country=country,
                occupation=item.occupation,
                source=source,
                search_name=search_name(name, country),
                wikidata_id=item.wikidata_id,
                portrait_url=item.portrait_url,
                cross_check=item.cross_check,
            )
        )
    return plan


def with_cross_checks(
    found: list[Found], checks: dict[str, tuple[str, str | None, str | None]]
) -> list[Found]:
    """Attach cross-check results {name: (result, wikidata_id, portrait_url)}."""
    out = []
    for item in found:
        result, qid, portrait = checks.get(item.name, ("not_found", None, None))
        out.append(replace(item, cross_check=result, wikidata_id=qid, portrait_url=portrait))
    return out
