"""The SPARQL queries facequeue sends to Wikidata, as text (no I/O here).

They use WDQS's data model: truthy `wdt:` statements, `wikibase:sitelinks` on the entity
(how many Wikipedias have an article: a good proxy for fame), `rdfs:label` and
`skos:altLabel` per language. The prefixes are declared by `sparql.PROLOGUE`.
"""

from __future__ import annotations

import re

from facequeue.errors import WikidataError
from facequeue.intake.sparql import is_language, literal

HUMAN = "Q5"
COUNTRY_TYPES = ("Q6256", "Q3624078")  # country, sovereign state
OCCUPATION_ROOTS = ("Q12737077", "Q28640")  # occupation, profession


def qid(value: str) -> str:
    """The Q-id at the end of an entity IRI (or a bare Q-id); WikidataError otherwise."""
    found = value.rsplit("/", 1)[-1]
    if not re.fullmatch(r"Q\d+", found):
        raise WikidataError(f"unexpected entity in a Wikidata answer: {value[:80]!r}")
    return found


def _values(qids: tuple[str, ...]) -> str:
    return " ".join(f"wd:{qid(q)}" for q in qids)


def country_query(name: str | None = None, country_qid: str | None = None) -> str:
    """Countries whose English label or alias is `name` (or the one item `country_qid`).
    byLabel = 1 when the label itself matched: a label beats an alias ("Georgia")."""
    if country_qid is not None:
        match = f"VALUES ?country {{ wd:{qid(country_qid)} }}\n  BIND(1 AS ?exact)"
    else:
        match = (
            f"{{ ?country rdfs:label ?l BIND(1 AS ?exact) }}\n"
            f"  UNION {{ ?country skos:altLabel ?l BIND(0 AS ?exact) }}\n"
            f'  FILTER(LANG(?l) = "en" && LCASE(STR(?l)) = {literal((name or "").casefold())})'
        )
    return f"""SELECT ?country (SAMPLE(?name) AS ?label) (MAX(?sitelinks) AS ?links)
       (MAX(?exact) AS ?byLabel) (GROUP_CONCAT(DISTINCT ?code; separator=" ") AS ?langs) WHERE {{
  {match}
  FILTER EXISTS {{ VALUES ?type {{ {_values(COUNTRY_TYPES)} }} ?country wdt:P31 ?type }}
  OPTIONAL {{ ?country wikibase:sitelinks ?sitelinks }}
  OPTIONAL {{ ?country rdfs:label ?name FILTER(LANG(?name) = "en") }}
  OPTIONAL {{ ?country wdt:P37 ?language . ?language wdt:P424 ?code }}
}}
GROUP BY ?country
ORDER BY DESC(?byLabel) DESC(?links) ?country
LIMIT 10"""


def occupation_query(name: str) -> str:
    """Occupations labelled `name`: used as someone's P106 and an instance or subclass of
    occupation/profession, so a same-named concept ("actor" of the actor model) never wins."""
    variants = dict.fromkeys([name, name.lower(), name[:1].upper() + name[1:].lower()])
    values = " ".join(literal(v, "en") for v in variants)
    return f"""SELECT ?occupation (SAMPLE(?name) AS ?label) (MAX(?sitelinks) AS ?links) WHERE {{
  VALUES ?text {{ {values} }}
  {{ ?occupation rdfs:label ?text }} UNION {{ ?occupation skos:altLabel ?text }}
  FILTER EXISTS {{
    VALUES ?root {{ {_values(OCCUPATION_ROOTS)} }}
    ?occupation (wdt:P279*/wdt:P31/wdt:P279*)|wdt:P279+ ?root
  }}
  FILTER EXISTS {{ ?someone wdt:P106 ?occupation }}
  OPTIONAL {{ ?occupation wikibase:sitelinks ?sitelinks }}
  OPTIONAL {{ ?occupation rdfs:label ?name FILTER(LANG(?name) = "en") }}
}}
GROUP BY ?occupation
ORDER BY DESC(?links) ?occupation
LIMIT 5"""


def label_languages(native: tuple[str, ...]) -> list[tuple[str, str]]:
    """(column, filter) per label tried, best first: en, mul, each native language, its
    variants (sr-el, sr-ec), then any label at all."""
    tries = [("l_en", 'LANG(?l_en) = "en"'), ("l_mul", 'LANG(?l_mul) = "mul"')]
    for i, code in enumerate(c for c in dict.fromkeys(native) if is_language(c)):
        tries.append((f"l_n{i}", f"LANG(?l_n{i}) = {literal(code)}"))
        tries.append((f"l_v{i}", f"LANGMATCHES(LANG(?l_v{i}), {literal(code)})"))
    return tries


def people_query(country_qid: str, occupation_qid: str, limit: int, native: tuple[str, ...]) -> str:
    """The `limit` most-linked humans with the citizenship and the occupation (or a subclass
    of it). The ranking and the cut happen in a sub-select over (person, sitelinks) only;
    labels and portraits are fetched for the chosen few, so the cost of the expensive part
    is bounded by `limit`, not by how many people the country has."""
    tries = label_languages(native)
    optionals = "\n  ".join(
        f"OPTIONAL {{ ?person rdfs:label ?{col} FILTER({flt}) }}" for col, flt in tries
    )
    none_found = " && ".join(f"!BOUND(?{col})" for col, _ in tries)
    columns = " ".join(f"(SAMPLE(?{col}) AS ?{col}_)" for col, _ in tries)
    return f"""SELECT ?person ?links {columns}
       (SAMPLE(?l_any) AS ?l_any_) (SAMPLE(?img) AS ?image) WHERE {{
  {{
    SELECT DISTINCT ?person ?links WHERE {{
      ?occ wdt:P279* wd:{qid(occupation_qid)} .
      ?person wdt:P106 ?occ ;
              wdt:P27 wd:{qid(country_qid)} ;
              wdt:P31 wd:{HUMAN} ;
              wikibase:sitelinks ?links .
    }}
    ORDER BY DESC(?links) ?person
    LIMIT {int(limit)}
  }}
  {optionals}
  OPTIONAL {{ ?person rdfs:label ?l_any FILTER({none_found}) }}
  OPTIONAL {{ ?person wdt:P18 ?img }}
}}
GROUP BY ?person ?links
ORDER BY DESC(?links) ?person"""


def old_people_query(
    country_qid: str, occupation_qid: str, limit: int, langs: tuple[str, ...]
) -> str:
    """The query before issue 13 (labels, portraits and groups for every match, then the
    cut), kept only as the baseline of bench/wikidata_query.py."""
    native = ", ".join(literal(code) for code in langs if is_language(code))
    native_clause = (
        f"OPTIONAL {{ ?person rdfs:label ?nat FILTER(LANG(?nat) IN ({native})) }}" if native else ""
    )
    return f"""SELECT ?person (SAMPLE(?en) AS ?enLabel) (SAMPLE(?mul) AS ?mulLabel)
       (SAMPLE(?nat) AS ?nativeLabel) (MAX(?sitelinks) AS ?links) (SAMPLE(?img) AS ?image) WHERE {{
  ?person wdt:P27 wd:{qid(country_qid)} ;
          wdt:P31 wd:Q5 ;
          wdt:P106 ?occ ;
          wikibase:sitelinks ?sitelinks .
  ?occ wdt:P279* wd:{qid(occupation_qid)} .
  OPTIONAL {{ ?person wdt:P18 ?img }}
  OPTIONAL {{ ?person rdfs:label ?en FILTER(LANG(?en) = "en") }}
  OPTIONAL {{ ?person rdfs:label ?mul FILTER(LANG(?mul) = "mul") }}
  {native_clause}
}}
GROUP BY ?person
ORDER BY DESC(?links)
LIMIT {int(limit)}"""


def match_query(
    keyed_names: list[tuple[int, str]],
    country_qid: str,
    occupation_qid: str | None,
    langs: tuple[str, ...],
) -> str:
    """Humans labelled (or aliased) with each keyed name, and whether each one has the
    citizenship and an occupation within `occupation_qid`'s subclass tree."""
    rows = []
    for key, text in keyed_names:
        for lang in dict.fromkeys(("en", "mul") + langs):
            if is_language(lang):
                rows.append(f"({int(key)} {literal(text, lang)})")
    in_occupation = (
        f"EXISTS {{ ?person wdt:P106/wdt:P279* wd:{qid(occupation_qid)} }}"
        if occupation_qid
        else "true"
    )
    return f"""SELECT ?key ?person ?citizen ?inOccupation (MAX(?sitelinks) AS ?links)
       (SAMPLE(?img) AS ?image) WHERE {{
  VALUES (?key ?text) {{ {" ".join(rows)} }}
  {{ ?person rdfs:label ?text }} UNION {{ ?person skos:altLabel ?text }}
  ?person wdt:P31 wd:{HUMAN} .
  OPTIONAL {{ ?person wikibase:sitelinks ?sitelinks }}
  OPTIONAL {{ ?person wdt:P18 ?img }}
  BIND(EXISTS {{ ?person wdt:P27 wd:{qid(country_qid)} }} AS ?citizen)
  BIND({in_occupation} AS ?inOccupation)
}}
GROUP BY ?key ?person ?citizen ?inOccupation"""
