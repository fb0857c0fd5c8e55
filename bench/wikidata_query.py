"""The Wikidata people query: the new one (rank and cut in a sub-select, then labels and
portraits for the chosen few) against the query before issue 13 (labels, portraits and
groups for every match, then the cut), in the same run, on a real SPARQL engine (pyoxigraph)
loaded with a generated Wikidata-shaped world.

The world: a country with N matching people (actors in a subclass chain, some with two
occupations, labels in en/sr/sr-el/mul, a portrait for half) and as many people of other
countries. For each size it prints the median time of each query for --count people and
the ratio; the new query's cost should barely move with N, the old one's grows with it.

Usage: python bench/wikidata_query.py [--people 12000] [--count 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pyoxigraph as ox

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from wikidata_endpoint import Entity, human, store_of  # noqa: E402
from wikidata_world import (  # noqa: E402
    ACTOR,
    FILM_ACTOR,
    SERBIA,
    TV_ACTOR,
    countries,
    languages,
    occupations,
)

from facequeue.intake.sparql import PROLOGUE  # noqa: E402
from facequeue.intake.wikidata_queries import old_people_query, people_query  # noqa: E402

OTHER = "Q224"
# Famous people have labels in dozens of languages (Novak Djokovic: 150+).
LABEL_LANGS = tuple(
    "de fr es it ru pl hu tr nl pt sv fi da nb cs sk sl hr bs mk bg uk el ro ca eu gl ga cy "
    "lt lv et sq ar he fa hi ja ko zh".split()
)


def world(n: int) -> ox.Store:
    entities: list[Entity] = languages() + countries() + occupations()
    kinds = (ACTOR, FILM_ACTOR, TV_ACTOR)
    for i in range(2 * n):
        citizen = SERBIA if i % 2 == 0 else OTHER
        occs = (kinds[i % 3],) if i % 5 else (kinds[i % 3], kinds[(i + 1) % 3])
        name = f"Person {i}"
        labels = {"en": name, "sr": f"Особа {i}", "sr-el": f"Osoba {i}", "mul": name}
        labels.update({lang: f"{name} ({lang})" for lang in LABEL_LANGS})
        image = f"Person {i}.jpg" if i % 2 else None
        entities.append(human(f"Q{10_000_000 + i}", labels, citizen, occs, i % 997, image))
    return store_of(entities)


def run(store: ox.Store, query: str) -> tuple[float, int]:
    """Seconds to answer, as a SPARQL endpoint would (results serialised as JSON)."""
    start = time.perf_counter()
    results = store.query(PROLOGUE + query)
    assert isinstance(results, ox.QuerySolutions)
    body = results.serialize(format=ox.QueryResultsFormat.JSON)
    elapsed = time.perf_counter() - start
    return elapsed, body.count(b'"person":')


def measure(store: ox.Store, query: str, repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        elapsed, rows = run(store, query)
        times.append(elapsed)
    return statistics.median(times), rows


def floor_query(country: str, occupation: str) -> str:
    """What any correct query must do: find every match (counted, nothing fetched)."""
    return f"""SELECT (COUNT(*) AS ?person) WHERE {{
  ?occ wdt:P279* wd:{occupation} .
  ?person wdt:P106 ?occ ; wdt:P27 wd:{country} ; wdt:P31 wd:Q5 ; wikibase:sitelinks ?links .
}}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=12_000, help="matching people (largest)")
    parser.add_argument("--count", type=int, default=20, help="--count of add-country")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    limit = args.count + max(5, args.count // 2)  # what Wikidata.people asks for
    print(f"people query for --count {args.count} (LIMIT {limit}), median of {args.repeat} runs")
    print("floor: finding and counting the matches, which any query must do; 'over floor' is")
    print("the rest (labels, portraits, grouping): it grows with N for the old query only.")
    print(
        f"{'matching':>9} {'floor s':>8} {'old s':>8} {'new s':>8} {'old/new':>8}"
        f" {'old over floor':>15} {'new over floor':>15}"
    )
    for n in sorted({max(args.people // 8, 100), max(args.people // 2, 100), args.people}):
        store = world(n)
        floor_s, _ = measure(store, floor_query(SERBIA, ACTOR), args.repeat)
        old_s, old_rows = measure(
            store, old_people_query(SERBIA, ACTOR, limit, ("sr",)), args.repeat
        )
        new_s, new_rows = measure(store, people_query(SERBIA, ACTOR, limit, ("sr",)), args.repeat)
        assert old_rows == new_rows == limit, (old_rows, new_rows)
        print(
            f"{n:>9} {floor_s:>8.3f} {old_s:>8.3f} {new_s:>8.3f} {old_s / new_s:>7.1f}x"
            f" {old_s - floor_s:>14.3f}s {new_s - floor_s:>14.3f}s"
        )
        del store


if __name__ == "__main__":
    main()
