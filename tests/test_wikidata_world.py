"""Issue 13: add-country against a real SPARQL 1.1 engine loaded with a Wikidata-shaped world.

Each numbered item of the issue has its tests here: namesakes (1), shortfalls (2), names
Wikidata contradicts (3), portable queries and error reasons (4), timeouts (5), country and
occupation ambiguity (6). The terminal UX (7) is in tests/test_add_country_terminal.py.
"""

from __future__ import annotations

import sqlite3

import aiohttp
import pytest
from fake_services import CelebrityLlm, FakeOpenAI, Status
from wikidata_endpoint import WikidataEndpoint, timeout_500, timeout_504
from wikidata_world import (
    ACTOR,
    ACTOR_MODEL,
    CONGO_BRAZZAVILLE,
    CONGO_KINSHASA,
    JOVANOVIC_ACTOR,
    JOVANOVIC_FOOTBALLER,
    NO_LABEL_ACTOR,
    PETROVIC_1,
    PETROVIC_2,
    SERBIA,
    serbia_world,
)

from facequeue.config import load_config
from facequeue.errors import InputError, WikidataError, WikidataTimeout
from facequeue.intake import country
from facequeue.intake.sparql import PROLOGUE, Sparql
from facequeue.intake.wikidata import Wikidata

JOVANOVIC = "Dragan Jovanović"


def llm_world() -> CelebrityLlm:
    return CelebrityLlm(
        people={
            ("serbia", "actor"): [JOVANOVIC, "Milan Petrović", "Miloš Biković", "Vesna Petrović"],
            ("serbia", "athlete"): [JOVANOVIC, "Goran Ivanišević", "Novak Đoković"],
        },
        countries={"serbia": "Serbia"},
    )


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEQUEUE_CONFIG", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
async def strict_wd():
    """A plain SPARQL 1.1 endpoint: no predeclared prefixes."""
    async with WikidataEndpoint(serbia_world(), strict=True) as server:
        yield server


@pytest.fixture
async def llm():
    async with FakeOpenAI(llm_world()) as server:
        yield server


def make_cfg(tmp_path, wd_url, llm_url="http://127.0.0.1:9/v1", max_retries=3):
    return load_config(
        None,
        data_dir=str(tmp_path / "data"),
        llm={"base_url": llm_url, "model": "m", "max_retries": 0},
        wikidata={
            "sparql_url": wd_url,
            "timeout_s": 5,
            "max_retries": max_retries,
            "retry_backoff_s": 0.01,
        },
    )


def rows(cfg) -> dict[str, dict]:
    with sqlite3.connect(cfg.db_path) as conn:
        conn.row_factory = sqlite3.Row
        return {r["slug"]: dict(r) for r in conn.execute("SELECT * FROM people ORDER BY id")}


# -- 1. namesakes -----------------------------------------------------------------------


async def test_namesakes_are_told_apart_by_occupation(tmp_path, strict_wd, llm):
    cfg = make_cfg(tmp_path, strict_wd.url, llm.base_url)
    plan, result = await country.add_country(cfg, "Serbia", ["actor", "athlete"], source="llm")
    people = rows(cfg)
    actor = people["Dragan_Jovanovic"]
    assert (actor["occupation"], actor["wikidata_id"]) == ("actor", JOVANOVIC_ACTOR)
    assert actor["portrait_url"].endswith("Dragan%20Jovanovic%20actor.jpg")
    assert actor["cross_check"] == f"confirmed:{JOVANOVIC_ACTOR}"
    # the footballer of the same name is another person, queued under his own slug
    footballer = people[f"Dragan_Jovanovic_{JOVANOVIC_FOOTBALLER}"]
    assert (footballer["occupation"], footballer["wikidata_id"]) == (
        "athlete",
        JOVANOVIC_FOOTBALLER,
    )
    assert footballer["portrait_url"].endswith("Dragan%20Jovanovic%20footballer.jpg")
    assert footballer["name"] == JOVANOVIC  # the name as given is kept
    # two Serbian actors named Milan Petrović: no id, no portrait, marked ambiguous
    petrovic = people["Milan_Petrovic"]
    assert petrovic["wikidata_id"] is None and petrovic["portrait_url"] is None
    assert petrovic["cross_check"] == f"ambiguous:{PETROVIC_1},{PETROVIC_2}"
    assert petrovic["state"] == "queued"


async def test_the_other_namesake_can_be_added_later(tmp_path, strict_wd, llm):
    cfg = make_cfg(tmp_path, strict_wd.url, llm.base_url)
    await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert rows(cfg)["Dragan_Jovanovic"]["wikidata_id"] == JOVANOVIC_ACTOR
    plan, result = await country.add_country(cfg, "Serbia", ["athlete"], source="llm")
    assert JOVANOVIC not in {p.name for p in result.skipped}  # not "already queued"
    assert rows(cfg)[f"Dragan_Jovanovic_{JOVANOVIC_FOOTBALLER}"]["wikidata_id"] == (
        JOVANOVIC_FOOTBALLER
    )
    # the same from Wikidata itself: the footballer's id is not the actor's row
    plan, result = await country.add_country(
        cfg, "Serbia", ["athlete"], count=5, source="wikidata", dry_run=True
    )
    jovanovic = next(p for p in plan.people if p.wikidata_id == JOVANOVIC_FOOTBALLER)
    assert jovanovic in result.skipped  # queued once, by id, in the run before


# -- 2. shortfalls ----------------------------------------------------------------------


async def test_count_is_met_when_wikidata_has_enough(tmp_path, strict_wd):
    cfg = make_cfg(tmp_path, strict_wd.url)
    plan, result = await country.add_country(cfg, "Serbia", ["actor"], count=5, source="wikidata")
    got = [(p.name, p.wikidata_id) for p in plan.people]
    assert len(result.added) == 5
    assert NO_LABEL_ACTOR not in {q for _, q in got}  # no label at all: cannot be named
    assert [n for n, _ in got] == [
        "Miloš Biković",
        "Ljubiša Samardžić",
        "Зоран Радмиловић",  # only a Serbian (Cyrillic) label: kept as written
        "Dragan Nikolić",  # only a mul label
        "Velimir Živojinović",  # only an sr-el label
    ]
    assert rows(cfg)["Zoran_Radmilovic"]["search_name"] == "Zoran Radmilović"
    assert not any("shortfall" in n for n in plan.notes)
    # a label in an unrelated language is a name too
    plan, _ = await country.add_country(
        cfg, "Serbia", ["actor"], count=6, source="wikidata", dry_run=True
    )
    assert plan.people[-1].name == "Mira Stupica"


async def test_a_real_shortfall_is_said(tmp_path, strict_wd):
    cfg = make_cfg(tmp_path, strict_wd.url)
    plan, result = await country.add_country(cfg, "Serbia", ["actor"], count=12, source="wikidata")
    assert len(plan.people) == 9  # ten Serbian actors, one without any label
    assert "shortfall: Wikidata lists only 9 actor people in Serbia (asked for 12)" in plan.notes
    assert plan.asked == {"actor": 12}


# -- 3. names Wikidata contradicts ------------------------------------------------------


async def test_contradicted_names_are_not_queued_by_default(tmp_path, strict_wd, llm):
    cfg = make_cfg(tmp_path, strict_wd.url, llm.base_url)
    plan, _ = await country.add_country(cfg, "Serbia", ["actor", "athlete"], source="llm")
    reasons = {d.name: d.reason for d in plan.dropped}
    assert reasons["Goran Ivanišević"] == (
        "Wikidata places Goran Ivanišević in another country (Q7000004)"
    )
    assert reasons["Vesna Petrović"] == "Wikidata knows no person named Vesna Petrović"
    assert {"Goran_Ivanisevic", "Vesna_Petrovic"}.isdisjoint(rows(cfg))
    assert any("--keep-unverified" in n for n in plan.notes)


async def test_keep_unverified_queues_them_flagged(tmp_path, strict_wd, llm):
    cfg = make_cfg(tmp_path, strict_wd.url, llm.base_url)
    plan, _ = await country.add_country(
        cfg, "Serbia", ["actor", "athlete"], source="llm", keep_unverified=True
    )
    people = rows(cfg)
    assert people["Goran_Ivanisevic"]["cross_check"] == "other_country:Q7000004"
    assert people["Vesna_Petrovic"]["cross_check"] == "not_found"
    for slug in ("Goran_Ivanisevic", "Vesna_Petrovic"):
        assert people[slug]["wikidata_id"] is None and people[slug]["portrait_url"] is None
    assert plan.dropped == []


async def test_unreachable_wikidata_queues_flagged_and_says_so(tmp_path, llm):
    cfg = make_cfg(tmp_path, "http://127.0.0.1:9/sparql", llm.base_url, max_retries=0)
    plan, result = await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert len(result.added) == 4
    assert {r["cross_check"] for r in rows(cfg).values()} == {"unreachable"}
    assert {r["portrait_url"] for r in rows(cfg).values()} == {None}
    assert any(n.startswith("Wikidata cross-check skipped") for n in plan.notes)


# -- 4. portable queries, the endpoint's reason -----------------------------------------


async def test_strict_endpoint_refuses_undeclared_prefixes_and_ours_pass(tmp_path, strict_wd):
    old_style = "SELECT ?p WHERE { ?p wdt:P27 wd:Q403 } LIMIT 1"  # leans on WDQS's prefixes
    async with aiohttp.ClientSession() as http:
        async with http.post(strict_wd.url, data={"query": old_style}) as resp:
            assert resp.status == 400
        async with http.post(strict_wd.url, data={"query": PROLOGUE + old_style}) as resp:
            assert resp.status == 200
    cfg = make_cfg(tmp_path, strict_wd.url, max_retries=0)
    await country.add_country(cfg, "Serbia", ["actor", "athlete"], count=2, source="wikidata")
    assert len(rows(cfg)) == 4
    for request in strict_wd.requests[2:]:
        assert request["query"].startswith(PROLOGUE)


@pytest.mark.parametrize("strict", [False, True], ids=["wdqs-style", "plain"])
async def test_a_refused_query_shows_the_reason_not_the_query(tmp_path, strict):
    async with WikidataEndpoint(serbia_world(), strict=strict) as wd:
        cfg = make_cfg(tmp_path, wd.url)
        async with Sparql(cfg) as sparql:
            with pytest.raises(WikidataError) as err:
                await sparql.select("SELECT ?x WHERE { ?x wdt:P31 NOT_A_TERM }", "broken")
    message = str(err.value)
    assert "refused the broken query: HTTP 400" in message
    assert "queryStr" not in message and "PREFIX" not in message
    if not strict:
        assert "MalformedQueryException: error at" in message
    assert len(wd.requests) == 1  # a refused query is not retried


# -- 5. timeouts ------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [timeout_500, timeout_504], ids=["500-timeout", "504"])
async def test_a_timeout_is_retried_once_then_said(tmp_path, strict_wd, reply):
    cfg = make_cfg(tmp_path, strict_wd.url, max_retries=4)
    strict_wd.script.extend([reply(), reply(), reply()])
    with pytest.raises(WikidataTimeout) as err:
        await country.add_country(cfg, "Serbia", ["actor"], source="wikidata")
    assert len(strict_wd.requests) == 2  # once more, not four times more
    assert "timed out" in str(err.value) and "--count" in str(err.value)
    # one timeout, then an answer: fine
    strict_wd.script.clear()
    strict_wd.script.append(reply())
    _, result = await country.add_country(cfg, "Serbia", ["actor"], count=2, source="wikidata")
    assert len(result.added) == 2


async def test_other_server_errors_keep_their_retries(tmp_path, strict_wd):
    cfg = make_cfg(tmp_path, strict_wd.url, max_retries=3)
    strict_wd.script.extend([Status(503), Status(502), Status(500)])
    _, result = await country.add_country(cfg, "Serbia", ["actor"], count=1, source="wikidata")
    assert len(result.added) == 1 and len(strict_wd.requests) >= 4


async def test_people_are_ranked_and_cut_before_labels_are_fetched(strict_wd, tmp_path):
    """The sub-select ranks (person, sitelinks) and cuts; labels come after (bench/ measures)."""
    cfg = make_cfg(tmp_path, strict_wd.url)
    async with Wikidata(cfg) as wd:
        place = await wd.resolve_country("Serbia")
        actor = await wd.resolve_occupation("actor")
        await wd.people(place, actor, 2)
    query = strict_wd.requests[-1]["query"]
    inner = query[query.index("SELECT DISTINCT ?person ?links") : query.index("LIMIT 7")]
    assert "rdfs:label" not in inner and "P18" not in inner
    assert query.index("LIMIT 7") < query.index("rdfs:label")


# -- 6. ambiguity said, not hidden ------------------------------------------------------


async def test_two_countries_of_one_name_are_listed(tmp_path, strict_wd):
    cfg = make_cfg(tmp_path, strict_wd.url)
    with pytest.raises(InputError) as err:
        await country.add_country(cfg, "Congo", ["musician"], source="wikidata")
    message = str(err.value)
    assert f"Democratic Republic of the Congo ({CONGO_KINSHASA})" in message
    assert f"Republic of the Congo ({CONGO_BRAZZAVILLE})" in message
    assert "--country Q974" in message
    assert not cfg.db_path.exists()
    plan, result = await country.add_country(
        cfg, "Congo", ["musician"], source="wikidata", country_qid="Q974"
    )
    assert plan.country == "Democratic Republic of the Congo"
    assert [p.name for p in plan.people] == ["Papa Wemba"]
    plan, _ = await country.add_country(cfg, "Q971", ["musician"], source="wikidata")
    assert [p.name for p in plan.people] == ["Roga Roga"]
    with pytest.raises(InputError, match="Q5812 is not a country"):
        await country.add_country(cfg, "x", ["musician"], source="wikidata", country_qid="Q5812")


async def test_decoys_never_win(tmp_path, strict_wd):
    cfg = make_cfg(tmp_path, strict_wd.url)
    async with Wikidata(cfg) as wd:
        assert (await wd.resolve_country("serbia")).qid == SERBIA  # not the film "Serbia"
        assert (await wd.resolve_occupation("Actor")).qid == ACTOR  # not the actor model
        assert (await wd.resolve_occupation("actress")).qid == ACTOR
        with pytest.raises(InputError, match="unknown occupation 'mathematical model'"):
            await wd.resolve_occupation("mathematical model")
    assert ACTOR_MODEL != ACTOR


async def test_subclass_chain_and_cycle(tmp_path, strict_wd):
    cfg = make_cfg(tmp_path, strict_wd.url)
    async with Wikidata(cfg) as wd:
        place = await wd.resolve_country("Serbia")
        performer = await wd.resolve_occupation("performer")  # performer ⊂ artist ⊂ performer
        found = await wd.people(place, performer, 30)
        actors = [p.name for p in await wd.people(place, await wd.resolve_occupation("actor"), 30)]
    names = [p.name for p in found]
    assert len(found) == len({p.qid for p in found}) == 11  # 9 named actors, 2 more; once each
    assert {"Jelena Umetnik", "Branka Izvođač", "Ljubiša Samardžić"} <= set(names)
    assert "Jelena Umetnik" not in actors and "Branka Izvođač" not in actors
    assert "Ljubiša Samardžić" in actors  # film actor ⊂ actor


async def test_cli_keep_unverified_and_country_flags(tmp_path, strict_wd, llm):
    import asyncio

    from click.testing import CliRunner

    from facequeue.cli import main

    config = tmp_path / "facequeue.toml"
    config.write_text(
        f'data_dir = "data"\n[llm]\nbase_url = "{llm.base_url}"\nmodel = "m"\n'
        f'[wikidata]\nsparql_url = "{strict_wd.url}"\n',
        encoding="utf-8",
    )
    base = ["--config", str(config), "add-country", "--occupation", "athlete", "--dry-run"]
    runner = CliRunner()
    res = await asyncio.to_thread(runner.invoke, main, [*base, "--country", "Republic of Serbia"])
    assert res.exit_code == 0, res.output
    assert "Goran Ivanišević" in res.output.split("Not queued")[1]  # listed, with the reason
    assert "places Goran Ivanišević in another country" in res.output
    res = await asyncio.to_thread(
        runner.invoke, main, [*base, "--country", "Q403", "--keep-unverified"]
    )
    assert res.exit_code == 0, res.output
    assert "Not queued" not in res.output and "other_country:Q7000004" in res.output
    res = await asyncio.to_thread(runner.invoke, main, base)
    assert res.exit_code == 2 and "COUNTRY or --country" in res.output
