"""Search providers against local servers speaking the RapidAPI and MediaWiki wire formats."""

from __future__ import annotations

import aiohttp
import pytest
from servers import FakeRapidApi, fake_services

from facequeue.config import load_config
from facequeue.errors import ConfigError, PermanentStageError, ProviderError
from facequeue.stages.download import Downloader, make_session
from facequeue.stages.search import (
    FolderProvider,
    PersonQuery,
    RapidApiProvider,
    SearchResult,
    WikimediaProvider,
    make_provider,
    query_text,
)

pytestmark = pytest.mark.timeout(60)

SHARON = PersonQuery(
    name="Ariel Sharon", slug="ariel-sharon", country="Israel", occupation="politician"
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEQUEUE_CONFIG", raising=False)
    monkeypatch.setenv("RAPIDAPI_KEY", FakeRapidApi.key)


def make_cfg(tmp_path, svc=None, **sections):
    opts: dict = {
        "search": {"retries": 2, "retry_backoff_s": 0.01},
        "download": {"allow_private_addresses": True, "retry_backoff_s": 0.01},
    }
    if svc is not None:
        opts["rapidapi"] = {"base_url": svc.rapidapi_url}
        opts["wikimedia"] = {"api_url": svc.wikimedia_url}
    for key, value in sections.items():
        opts[key] = {**opts.get(key, {}), **value}
    return load_config(None, data_dir=tmp_path / "data", **opts)


@pytest.fixture
async def svc(testdata_dir):
    async with fake_services(testdata_dir) as services:
        yield services


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def test_query_text(tmp_path):
    cfg = make_cfg(tmp_path)
    assert query_text(cfg, SHARON) == "Ariel Sharon politician"
    assert query_text(cfg, PersonQuery("Ариэль Шарон", "ariel-sharon", "IL")) == "Ариэль Шарон"
    assert query_text(cfg, PersonQuery("X", "x", "RS", "actor", search_name="Y Z")) == "Y Z actor"
    cfg = make_cfg(tmp_path, search={"query_template": "{name} ({occupation}) {country}"})
    assert query_text(cfg, PersonQuery("Ana Ivić", "ana-ivic", "Serbia")) == "Ana Ivić Serbia"
    with pytest.raises(ConfigError, match="query_template"):
        query_text(make_cfg(tmp_path, search={"query_template": "{name} {job}"}), SHARON)


async def test_rapidapi_wire_format(svc, session, tmp_path):
    cfg = make_cfg(tmp_path, svc, search={"provider": "rapidapi"})
    provider = make_provider(cfg, session)
    assert isinstance(provider, RapidApiProvider) and provider.name == "rapidapi"
    results = await provider.search(SHARON)
    assert [r.rank for r in results] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(r, SearchResult) and r.provider == "rapidapi" for r in results)
    first = results[0]
    assert first.url == svc.images.face_url("people/Ariel_Sharon/1.jpg")  # full size, not thumbnail
    assert (
        first.thumbnail_url.endswith("?thumb=1") and first.page_url == "https://example.org/page/1"
    )
    assert (first.title, first.width, first.height) == ("result 1", 1024, 768)
    sent = svc.rapidapi.requests[-1]
    assert sent == {
        "query": "Ariel Sharon politician",
        "limit": "100",
        "size": "1024x768_and_more",
        "type": "face",
        "region": "us",
    }
    assert svc.rapidapi.user_agents[-1] == cfg.user_agent


async def test_rapidapi_tolerant_parsing_and_cap(svc, session, tmp_path):
    svc.rapidapi.results["Many"] = [
        {"url": f"http://h/{i}.jpg", "width": "n/a"} for i in range(90)
    ] + [
        {"thumbnail_url": "http://h/thumb-only.jpg"},
        {"title": "no url"},
        "junk",
        {"url": "http://h/0.jpg"},
    ]
    svc.rapidapi.results["Few"] = [
        {"thumbnail_url": "http://h/t.jpg"},
        {"title": "x"},
        7,
        {"url": "http://h/a.jpg"},
        {"url": "http://h/a.jpg"},
    ]
    cfg = make_cfg(tmp_path, svc, search={"max_results": 70})
    provider = RapidApiProvider(cfg, session)
    many = await provider.search(PersonQuery("Many", "many", "US"))
    assert len(many) == 70 and many[-1].rank == 70 and many[0].width is None
    few = await provider.search(PersonQuery("Few", "few", "US"))
    assert [(r.rank, r.url) for r in few] == [(1, "http://h/t.jpg"), (2, "http://h/a.jpg")]
    assert await provider.search(PersonQuery("Nobody Known", "nobody", "US")) == []


async def test_rapidapi_failures(svc, session, tmp_path, monkeypatch, capsys):
    cfg = make_cfg(tmp_path, svc)
    provider = RapidApiProvider(cfg, session)
    svc.rapidapi.fail_times = 2  # 500, 500, then OK: retried
    assert len(await provider.search(SHARON)) == 6
    svc.rapidapi.fail_times = 5
    with pytest.raises(ProviderError, match="HTTP 500.*3 attempts"):
        await provider.search(SHARON)
    svc.rapidapi.fail_times = 0
    svc.rapidapi.malformed = True
    with pytest.raises(ProviderError, match="malformed JSON"):
        await provider.search(SHARON)
    monkeypatch.setenv("RAPIDAPI_KEY", "wrong-secret-key")
    with pytest.raises(PermanentStageError, match="HTTP 403") as err:
        await provider.search(SHARON)
    assert "wrong-secret-key" not in str(err.value)
    monkeypatch.delenv("RAPIDAPI_KEY")
    calls = len(svc.rapidapi.requests)
    with pytest.raises(PermanentStageError, match="RAPIDAPI_KEY"):
        await provider.search(SHARON)
    assert len(svc.rapidapi.requests) == calls
    out = capsys.readouterr()
    assert FakeRapidApi.key not in out.out + out.err and "wrong-secret-key" not in out.out + out.err


async def test_rapidapi_unreachable(session, tmp_path):
    cfg = make_cfg(
        tmp_path, rapidapi={"base_url": "http://127.0.0.1:9", "timeout_s": 2}, search={"retries": 1}
    )
    with pytest.raises(ProviderError, match="cannot connect.*2 attempts"):
        await RapidApiProvider(cfg, session).search(SHARON)


async def test_wikimedia_default_provider(svc, session, tmp_path):
    cfg = make_cfg(tmp_path, svc)
    provider = make_provider(cfg, session)
    assert isinstance(provider, WikimediaProvider) and provider.name == "wikimedia"
    results = await provider.search(SHARON)
    assert [r.url for r in results] == [
        svc.images.face_url(f"people/Ariel_Sharon/{i}.jpg") for i in range(1, 7)
    ]
    r = results[0]
    assert (r.provider, r.rank, r.license, r.author, r.mime) == (
        "wikimedia",
        1,
        "CC BY-SA 4.0",
        "Photographer & 0",
        "image/jpeg",
    )
    assert r.title.startswith("File:") and r.page_url.startswith("https://commons.example/wiki/")
    assert r.thumbnail_url.endswith("?width=1280") and (r.width, r.height) == (250, 250)
    sent = svc.mediawiki.requests[-1]
    assert sent["generator"] == "search" and sent["gsrnamespace"] == "6"
    assert sent["gsrsearch"] == "Ariel Sharon politician filetype:bitmap"
    assert set(sent["iiprop"].split("|")) >= {"url", "size", "mime", "extmetadata"}
    assert "facequeue" in svc.mediawiki.user_agents[-1]


async def test_wikimedia_continuation_cap_and_filters(svc, session, tmp_path):
    urls = [f"http://h/{i}.jpg" for i in range(120)]
    svc.mediawiki.results["Crowd"] = urls
    cfg = make_cfg(tmp_path, svc, search={"max_results": 70})
    results = await WikimediaProvider(cfg, session).search(PersonQuery("Crowd", "crowd", "US"))
    assert [r.url for r in results] == urls[:70] and results[-1].rank == 70
    assert [q.get("gsroffset") for q in svc.mediawiki.requests] == [None, "50"]
    svc.mediawiki.results["Odd"] = [
        {
            "pageid": 1,
            "title": "File:A.svg",
            "imageinfo": [{"url": "http://h/a.svg", "mime": "image/svg+xml"}],
        },
        {
            "pageid": 2,
            "title": "File:B.pdf",
            "imageinfo": [{"url": "http://h/b.pdf", "mime": "application/pdf"}],
        },
        {
            "pageid": 3,
            "title": "File:C.jpg",
            "imageinfo": [{"url": "http://h/c.jpg", "mime": "image/jpeg"}],
        },
        {"pageid": 4, "title": "File:D.jpg"},
    ]
    odd = await WikimediaProvider(cfg, session).search(PersonQuery("Odd", "odd", "US"))
    assert [(r.rank, r.url, r.license, r.author) for r in odd] == [
        (1, "http://h/c.jpg", None, None)
    ]


async def test_wikimedia_errors(svc, session, tmp_path):
    cfg = make_cfg(
        tmp_path, svc, wikimedia={"api_url": svc.wikimedia_url.replace("api.php", "nope.php")}
    )
    with pytest.raises(PermanentStageError, match="HTTP 404"):
        await WikimediaProvider(cfg, session).search(SHARON)
    cfg = make_cfg(tmp_path, svc)
    svc.mediawiki.malformed = True
    with pytest.raises(ProviderError, match="malformed"):
        await WikimediaProvider(cfg, session).search(SHARON)


async def test_folder_provider(tmp_path):
    root = tmp_path / "photos"
    (root / "ariel-sharon").mkdir(parents=True)
    for name in ("b.jpg", "a.png", ".hidden.jpg", "notes.json"):
        (root / "ariel-sharon" / name).write_bytes(b"x")
    (root / "Tony_Blair").mkdir()
    (root / "Tony_Blair" / "1.jpg").write_bytes(b"x")
    cfg = make_cfg(tmp_path, search={"provider": "folder"}, folder={"root": str(root)})
    provider = make_provider(cfg, None)
    assert isinstance(provider, FolderProvider)
    results = await provider.search(SHARON)
    assert [(r.rank, r.url, r.provider) for r in results] == [
        (1, str(root / "ariel-sharon" / "a.png"), "folder"),
        (2, str(root / "ariel-sharon" / "b.jpg"), "folder"),
    ]
    blair = await provider.search(PersonQuery("Tony Blair", "tony-blair-2", "UK"))
    assert [r.url for r in blair] == [str(root / "Tony_Blair" / "1.jpg")]
    assert await provider.search(PersonQuery("../photos", "..", "UK")) == []
    assert await provider.search(PersonQuery("Nobody", "nobody", "UK")) == []
    cfg = make_cfg(
        tmp_path, search={"provider": "folder"}, folder={"root": str(tmp_path / "missing")}
    )
    assert await make_provider(cfg, None).search(SHARON) == []


async def test_folder_provider_then_ingest(testdata_dir, tmp_path):
    cfg = make_cfg(
        tmp_path, search={"provider": "folder"}, folder={"root": str(testdata_dir / "people")}
    )
    results = await make_provider(cfg, None).search(
        PersonQuery("Eileen Collins", "eileen-collins", "US")
    )
    assert len(results) == 1
    async with Downloader(cfg) as dl:
        out = await dl.ingest_file(results[0].url, cfg.raw_dir)
    assert out.ok and out.format == "png" and out.url == results[0].url


async def test_search_then_download_end_to_end(svc, tmp_path):
    cfg = make_cfg(tmp_path, svc)
    async with make_session(cfg) as session:
        results = await make_provider(cfg, session).search(
            PersonQuery("Tony Blair", "tony-blair", "UK")
        )
        dl = Downloader(cfg, session)
        outcomes = [await dl.fetch(r.url, cfg.raw_dir) for r in results]
    assert len(outcomes) == 6 and all(o.ok for o in outcomes)
    assert len({o.path for o in outcomes}) == 6


async def test_configured_endpoints_are_not_subject_to_the_download_guard(svc, tmp_path):
    """The guard covers downloads only: a search API on a local name still works."""
    local = svc.rapidapi_url.replace("127.0.0.1", "localhost")
    cfg = make_cfg(
        tmp_path,
        svc,
        search={"provider": "rapidapi"},
        rapidapi={"base_url": local},
        download={"allow_private_addresses": False},
    )
    async with make_session(cfg) as session:
        results = await make_provider(cfg, session).search(SHARON)
        async with Downloader(cfg, session) as dl:
            out = await dl.fetch(results[0].url.replace("127.0.0.1", "localhost"), cfg.raw_dir)
    assert len(results) == 6 and out.reason == "private_address"
