"""add-country against a local OpenAI-compatible server and a local SPARQL endpoint.

The real `openai.AsyncOpenAI` (base_url -> 127.0.0.1) talks to tests/fake_services.py; aiohttp
talks to a real SPARQL engine (tests/wikidata_endpoint.py, pyoxigraph) loaded with
tests/wikidata_world.py; the database is a real SQLite file.
"""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner
from fake_services import (
    CelebrityLlm,
    Content,
    Delay,
    FakeOpenAI,
    Raw,
    Status,
    schema_name,
    user_json,
)
from wikidata_endpoint import WikidataEndpoint
from wikidata_world import serbia_world

from facequeue.cli import main
from facequeue.config import load_config
from facequeue.errors import ConfigError, InputError, LlmError, WikidataError
from facequeue.intake import country

INVENTED = "Marko Izmišljenović"
ABROAD = "Goran Ivanišević"
ACTORS = ["Љубиша Самарџић", "Miloš Biković", INVENTED, "Dragan Nikolić", "Vesna Petrović"]
ATHLETES = ["Novak Đoković", "Ana Ivanović", ABROAD]


def world_llm() -> CelebrityLlm:
    return CelebrityLlm(
        people={
            ("serbia", "actor"): ACTORS,
            ("serbia", "athlete"): ATHLETES,
            ("serbia", "musician"): ["Đorđe Balašević", "Љубиша Самарџић"],
        },
        invented={INVENTED},
        foreign={ABROAD},
        countries={"serbia": "Serbia", "republic of serbia": "Serbia"},
    )


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray ./facequeue.toml
    monkeypatch.delenv("FACEQUEUE_CONFIG", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
async def llm_server():
    async with FakeOpenAI(world_llm()) as server:
        yield server


@pytest.fixture
async def wd_server():
    async with WikidataEndpoint(serbia_world()) as server:
        yield server


def make_cfg(
    tmp_path,
    llm_url="http://127.0.0.1:9/v1",
    wd_url="http://127.0.0.1:9/sparql",
    cross_check=True,
    **llm,
):
    return load_config(
        None,
        data_dir=str(tmp_path / "data"),
        llm={
            "base_url": llm_url,
            "model": "test-model",
            "timeout_s": 5,
            "max_retries": 2,
            "retry_backoff_s": 0.01,
            **llm,
        },
        wikidata={
            "sparql_url": wd_url,
            "cross_check": cross_check,
            "timeout_s": 5,
            "max_retries": 1,
            "retry_backoff_s": 0.01,
        },
        names={"occupations": ["actor", "athlete"], "count": 10},
    )


def people(cfg) -> list[dict]:
    if not cfg.db_path.exists():
        return []
    with sqlite3.connect(cfg.db_path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM people ORDER BY id")]


async def test_two_passes_drop_invented_and_foreign_names(tmp_path, llm_server, wd_server):
    cfg = make_cfg(tmp_path, llm_server.base_url, wd_server.url)
    plan, result = await country.add_country(cfg, "serbia", source="llm")
    rows = {r["name"]: r for r in people(cfg)}
    assert set(rows) == {
        "Љубиша Самарџић",
        "Miloš Biković",
        "Dragan Nikolić",
        "Novak Đoković",
        "Ana Ivanović",
    }
    # the LLM drops the invented and the foreign name; Wikidata knows no Vesna Petrović
    assert {d.name for d in plan.dropped} == {INVENTED, ABROAD, "Vesna Petrović"}
    assert len(result.added) == 5
    # two structured-output passes per occupation; pass 2 judges exactly pass 1's names
    kinds = [schema_name(b) for b in llm_server.requests]
    assert sorted(kinds) == ["name_verdicts"] * 2 + ["people_list"] * 2
    for body in llm_server.requests:
        assert body["model"] == "test-model"
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["strict"] is True
    verdict_asks = [user_json(b) for b in llm_server.requests if schema_name(b) == "name_verdicts"]
    assert sorted(n for a in verdict_asks for n in a["names"]) == sorted(ACTORS + ATHLETES)
    # stored spelling, slug, search name, source, cross-check, Wikidata id + portrait
    lj = rows["Љубиша Самарџић"]
    assert (lj["slug"], lj["search_name"], lj["country"]) == (
        "Ljubisa_Samardzic",
        "Ljubiša Samardžić",
        "Serbia",
    )
    assert lj["source"] == "llm:test-model" and lj["state"] == "queued" and lj["created_at"]
    assert lj["cross_check"] == "confirmed:Q1336513" and lj["wikidata_id"] == "Q1336513"
    assert lj["portrait_url"] == (
        "https://commons.wikimedia.org/wiki/Special:FilePath/Ljubisa%20Samardzic.jpg"
    )
    nole = rows["Novak Đoković"]
    assert (nole["slug"], nole["cross_check"], nole["occupation"]) == (
        "Novak_Djokovic",
        "confirmed:Q5812",
        "athlete",
    )
    assert rows["Miloš Biković"]["slug"] == "Milos_Bikovic"
    assert rows["Dragan Nikolić"]["cross_check"] == "confirmed:Q7000002"  # by its mul label


async def test_duplicates_across_runs_and_sources(tmp_path, llm_server, wd_server):
    cfg = make_cfg(tmp_path, llm_server.base_url, wd_server.url)
    _, first = await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    _, again = await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert len(first.added) == 3 and again.added == [] and len(again.skipped) == 3
    # Wikidata names the same people (same Q ids, other spellings): still no duplicates
    plan, wd = await country.add_country(cfg, "Serbia", ["actor"], source="wikidata")
    assert {p.name for p in wd.skipped} >= {"Ljubiša Samardžić", "Miloš Biković"}
    assert len(people(cfg)) == 3 + len(wd.added)
    assert len({(r["slug"], r["country"]) for r in people(cfg)}) == len(people(cfg))
    # Wikidata knows Samardžić only as an actor: not queued as a musician by default...
    plan, res = await country.add_country(cfg, "Serbia", ["musician"], source="llm", dry_run=True)
    assert [p.name for p in plan.people] == ["Đorđe Balašević"]
    assert [d.name for d in plan.dropped] == ["Љубиша Самарџић"]
    assert "another occupation (Q1336513)" in plan.dropped[0].reason
    # ...and kept, a person named under two occupations is still queued once
    plan, res = await country.add_country(
        cfg, "Serbia", ["musician"], source="llm", dry_run=True, keep_unverified=True
    )
    assert [p.name for p in plan.people] == ["Đorđe Balašević", "Љубиша Самарџић"]
    assert [p.name for p in res.skipped] == ["Љубиша Самарџић"]


@pytest.mark.parametrize(
    "bad",
    [
        Content("{not json at all"),
        Content('{"country_recognized": true, "country_name": "Serbia", "people": [{"na'),
        Content('{"country_recognized": true, "people": "nope"}'),
        Content(None, refusal="I can't help with that."),
        Content('{"country_recognized": true, "country_name": "Serbia", "people": [', "length"),
        Raw(b"<html>502 Bad Gateway</html>", "text/html"),
        Status(429, headers={"Retry-After": "0"}),
        Status(503),
        Delay(3, then={}),  # longer than timeout_s
    ],
    ids=["garbage", "truncated", "schema", "refusal", "length", "html", "429", "503", "timeout"],
)
async def test_bad_answer_then_good_one(tmp_path, llm_server, wd_server, bad):
    cfg = make_cfg(tmp_path, llm_server.base_url, wd_server.url, timeout_s=0.5)
    llm_server.script.append(bad)
    _, result = await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert len(result.added) == 3
    assert len(llm_server.requests) == 3  # the bad answer, then both passes


async def test_permanent_500_queues_nothing(tmp_path, llm_server, wd_server):
    cfg = make_cfg(tmp_path, llm_server.base_url, wd_server.url, max_retries=2)
    llm_server.responder = lambda body: Status(500)
    with pytest.raises(LlmError, match=r"after 3 attempt\(s\): HTTP 500"):
        await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert len(llm_server.requests) == 3
    assert people(cfg) == []


async def test_failure_in_one_occupation_queues_nothing(tmp_path, llm_server, wd_server):
    cfg = make_cfg(tmp_path, llm_server.base_url, wd_server.url, concurrency=1, max_retries=1)
    good = world_llm()
    llm_server.responder = lambda body: (
        Content("garbage") if "athlete" in str(user_json(body)) else good(body)
    )
    with pytest.raises(LlmError, match="athlete"):
        await country.add_country(cfg, "Serbia", ["actor", "athlete"], source="llm")
    assert people(cfg) == []


async def test_client_errors_are_not_retried(tmp_path, llm_server, wd_server):
    cfg = make_cfg(tmp_path, llm_server.base_url, wd_server.url)
    llm_server.script.append(Status(401))
    with pytest.raises(LlmError, match="OPENAI_API_KEY"):
        await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    llm_server.script.append(Status(404, {"error": {"message": "model not found"}}))
    with pytest.raises(LlmError, match="HTTP 404"):
        await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert len(llm_server.requests) == 2 and people(cfg) == []


async def test_api_key(tmp_path, llm_server, wd_server, monkeypatch):
    cfg = make_cfg(tmp_path, "https://api.openai.com/v1", wd_server.url)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        await country.add_country(cfg, "Serbia", source="llm")
    assert wd_server.requests == []
    # a local server without auth works without a key; a set key is sent as a bearer token
    cfg = make_cfg(tmp_path, llm_server.base_url, wd_server.url)
    await country.add_country(cfg, "Serbia", ["actor"], source="llm", dry_run=True)
    assert llm_server.headers[-1]["Authorization"] == "Bearer no-key-needed"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    llm_server.responder = lambda body: Status(500)
    with pytest.raises(LlmError) as err:
        await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert llm_server.headers[-1]["Authorization"] == "Bearer sk-test-secret"
    assert "sk-test-secret" not in str(err.value)


async def test_wikidata_unreachable_still_queues_llm_names(tmp_path, llm_server):
    cfg = make_cfg(tmp_path, llm_server.base_url)  # SPARQL URL: a closed port
    plan, result = await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert len(result.added) == 4
    assert {r["cross_check"] for r in people(cfg)} == {"unreachable"}
    assert any("cross-check skipped" in n for n in plan.notes)
    # cross_check off: nothing asked of Wikidata, nothing recorded
    cfg = make_cfg(tmp_path / "b", llm_server.base_url, cross_check=False)
    await country.add_country(cfg, "Serbia", ["actor"], source="llm")
    assert {r["cross_check"] for r in people(cfg)} == {None}


async def test_wikidata_source(tmp_path, wd_server):
    cfg = make_cfg(tmp_path, wd_url=wd_server.url)
    plan, result = await country.add_country(
        cfg, "Republic of Serbia", ["athlete", "actor"], count=2, source="wikidata"
    )
    rows = people(cfg)
    assert [(r["name"], r["occupation"]) for r in rows] == [
        ("Novak Djokovic", "athlete"),
        ("Ana Ivanovic", "athlete"),
        ("Miloš Biković", "actor"),
        ("Ljubiša Samardžić", "actor"),
    ]  # by sitelinks, 2 each
    nole = rows[0]
    assert (nole["wikidata_id"], nole["source"], nole["country"], nole["slug"]) == (
        "Q5812",
        "wikidata",
        "Serbia",
        "Novak_Djokovic",
    )
    assert nole["portrait_url"].startswith("https://commons.wikimedia.org/wiki/Special:FilePath/")
    assert "Goran Ivanišević" not in {r["name"] for r in rows}  # Croatian: not queued
    for req in wd_server.requests:
        assert req["headers"]["Accept"] == "application/sparql-results+json"
        assert req["headers"]["User-Agent"].startswith("facequeue/")


async def test_wikidata_retries_then_fails_clearly(tmp_path, wd_server):
    cfg = make_cfg(tmp_path, wd_url=wd_server.url)
    wd_server.script.append(Raw(b'{"head": {"vars": []}, "results": {"bind'))
    _, result = await country.add_country(cfg, "Serbia", ["actor"], count=1, source="wikidata")
    assert len(result.added) == 1
    wd_server.script.extend([Status(502), Status(500)])
    with pytest.raises(WikidataError, match="after 2 attempt"):
        await country.add_country(cfg, "Serbia", ["athlete"], count=1, source="wikidata")
    assert len(people(cfg)) == 1


@pytest.mark.parametrize("source", ["llm", "wikidata"])
async def test_bad_input_is_a_clear_error_and_queues_nothing(
    tmp_path, llm_server, wd_server, source
):
    cfg = make_cfg(tmp_path, llm_server.base_url, wd_server.url)
    with pytest.raises(InputError, match="country name is empty"):
        await country.add_country(cfg, "   ", source=source)
    with pytest.raises(InputError, match="no occupations"):
        await country.add_country(cfg, "Serbia", [" ", ""], source=source)
    assert llm_server.requests == [] and wd_server.requests == []
    with pytest.raises(InputError, match="unknown country 'Atlantis'"):
        await country.add_country(cfg, "Atlantis", source=source)
    assert people(cfg) == []


async def test_unknown_country_from_the_llm_alone(tmp_path, llm_server):
    cfg = make_cfg(tmp_path, llm_server.base_url, cross_check=False)
    with pytest.raises(InputError, match="unknown country 'Atlantis'"):
        await country.add_country(cfg, "Atlantis", source="llm")
    assert people(cfg) == []


async def test_unknown_occupation_on_wikidata(tmp_path, wd_server):
    cfg = make_cfg(tmp_path, wd_url=wd_server.url)
    with pytest.raises(InputError, match="unknown occupation 'wizard'"):
        await country.add_country(cfg, "Serbia", ["actor", "wizard"], source="wikidata")
    assert people(cfg) == []


def write_config(tmp_path, llm_url, wd_url) -> str:
    path = tmp_path / "facequeue.toml"
    path.write_text(
        f"""
data_dir = "data"
[names]
occupations = ["actor"]
count = 5
[llm]
base_url = "{llm_url}"
model = "test-model"
max_retries = 1
retry_backoff_s = 0.01
[wikidata]
sparql_url = "{wd_url}"
max_retries = 0
""",
        encoding="utf-8",
    )
    return str(path)


async def test_cli_dry_run_then_queue(tmp_path, llm_server, wd_server):
    config = write_config(tmp_path, llm_server.base_url, wd_server.url)
    runner = CliRunner()
    # the CLI runs its own event loop: call it from a worker thread
    import asyncio

    res = await asyncio.to_thread(
        runner.invoke, main, ["--config", config, "add-country", "Serbia", "--dry-run"]
    )
    assert res.exit_code == 0, res.output
    assert "Ljubisa_Samardzic" in res.output and "would queue 3 people" in res.output
    assert INVENTED in res.output  # listed under "Not queued"
    cfg = load_config(config)
    assert people(cfg) == []
    res = await asyncio.to_thread(
        runner.invoke,
        main,
        [
            "--config",
            config,
            "add-country",
            "Serbia",
            "--occupation",
            "athlete",
            "--occupation",
            "actor",
            "--count",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "queued 4 people" in res.output
    assert len(people(cfg)) == 4
    res = await asyncio.to_thread(
        runner.invoke,
        main,
        [
            "--config",
            config,
            "add-country",
            "Serbia",
            "--source",
            "wikidata",
            "--occupation",
            "athlete",
            "--count",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "already queued" in res.output and "queued 0 people" in res.output
    res = await asyncio.to_thread(runner.invoke, main, ["--config", config, "add-country", ""])
    assert isinstance(res.exception, InputError)
