"""Address guard (issue 12 item 5) against real servers on 127.0.0.1: the host aiohttp really
connects to is checked on every hop, for images, robots.txt and search calls alike."""

from __future__ import annotations

import contextlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from servers import ImageHost, serve

from facequeue.config import load_config
from facequeue.errors import ProviderError
from facequeue.stages.addresses import AddressPolicy, BlockedAddress, guard
from facequeue.stages.download import Downloader, make_session
from facequeue.stages.search import PersonQuery, RapidApiProvider

pytestmark = pytest.mark.timeout(60)

JPEG = "people/Ariel_Sharon/1.jpg"
KEY = "secret-rapidapi-key"
SHARON = PersonQuery(name="Ariel Sharon", slug="ariel-sharon", country="Israel")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEQUEUE_CONFIG", raising=False)
    monkeypatch.setenv("RAPIDAPI_KEY", KEY)


def make_cfg(tmp_path: Path, allowed: tuple[str, ...] = (), **sections):
    download = {
        "allow_private_addresses": False,
        "allowed_networks": list(allowed),
        "retries": 0,
        "connect_timeout_s": 2.0,
        "total_timeout_s": 5.0,
    }
    return load_config(
        None,
        data_dir=tmp_path / "data",
        download=download,
        search={"retries": 0, "retry_backoff_s": 0.01},
        **sections,
    )


def fullwidth(text: str) -> str:
    return text.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"})


@contextlib.asynccontextmanager
async def second_loopback(app: web.Application):
    """Serve on 127.0.0.2: an address the tests allow-list to stand for a public host."""
    try:
        ctx = serve(app, host="127.0.0.2")
        url = await ctx.__aenter__()
    except OSError:
        pytest.skip("cannot bind 127.0.0.2")
    try:
        yield url
    finally:
        await ctx.__aexit__(None, None, None)


@pytest.fixture
async def inside(testdata_dir):
    """The private target: an image host on 127.0.0.1 that must never be reached."""
    h = ImageHost(testdata_dir, robots_txt="User-agent: *\nAllow: /\n")
    async with serve(h.app) as url:
        h.base_url = url
        yield h


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


@pytest.mark.parametrize(
    "host",
    [
        fullwidth("127.0.0.1"),  # １２７.０.０.１
        "127\u30020\u30020\u30021",  # 127。0。0。1 (ideographic full stops)
        fullwidth("127") + "\uff0e0\uff610.1",  # full-width and halfwidth ideographic dots
        "LOCALHOST",
        "[::ffff:127.0.0.1]",
        "[::127.0.0.1]",  # IPv4-compatible
    ],
)
async def test_disguised_loopback_refused_without_any_request(inside, tmp_path, host):
    url = f"http://{host}:{port_of(inside.base_url)}/faces/{JPEG}"
    async with Downloader(make_cfg(tmp_path)) as dl:
        out = await dl.fetch(url, tmp_path / "raw")
    assert out.reason == "private_address", out
    assert sum(inside.hits.values()) == 0  # not even robots.txt


@pytest.mark.parametrize("disguise", ["fullwidth", "ideographic"])
async def test_redirect_location_disguised_loopback_refused(
    inside, testdata_dir, tmp_path, disguise
):
    port = port_of(inside.base_url)
    target = fullwidth("127.0.0.1") if disguise == "fullwidth" else "127\u30020\u30020\u30021"
    outside = ImageHost(testdata_dir)
    async with second_loopback(outside.app) as outside_url:
        outside.base_url = outside_url
        cfg = make_cfg(tmp_path, allowed=("127.0.0.2/32",))
        async with Downloader(cfg, make_session(cfg)) as dl:
            ok = await dl.fetch(outside.url("img/1.jpg"), tmp_path / "raw")
            location = f"http://{target}:{port}/faces/{JPEG}"
            out = await dl.fetch(outside.url(f"redirect?to={location}"), tmp_path / "raw")
            await dl.session.close()
    assert ok.ok, ok  # the allow-listed host itself works
    assert out.reason == "private_address", out
    assert sum(inside.hits.values()) == 0


async def test_robots_txt_never_fetched_from_a_refused_address(inside, tmp_path):
    """robots.txt of an allowed host redirects to a private address: not followed there."""
    robots_hops: list[str] = []

    async def robots(request: web.Request) -> web.Response:
        robots_hops.append(request.path)
        raise web.HTTPFound(
            f"http://{fullwidth('127.0.0.1')}:{port_of(inside.base_url)}/robots.txt"
        )

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=inside.photo, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/a.jpg", image)
    async with second_loopback(app) as outside_url:
        cfg = make_cfg(tmp_path, allowed=("127.0.0.2/32",))
        async with Downloader(cfg) as dl:
            out = await dl.fetch(f"{outside_url}/a.jpg", tmp_path / "raw")
    assert robots_hops == ["/robots.txt"]  # asked the allowed host
    assert out.ok  # unreachable robots.txt means allowed, as before
    assert inside.hits["/robots.txt"] == 0 and sum(inside.hits.values()) == 0


async def test_connector_checks_ip_literals_itself(inside, tmp_path):
    """Even a caller that skips the URL check cannot connect: the connector refuses."""
    cfg = make_cfg(tmp_path)
    async with make_session(cfg) as session:
        token = guard.set(AddressPolicy(False))
        try:
            with pytest.raises(aiohttp.ClientConnectorError) as err:
                await session.get(f"{inside.base_url}/faces/{JPEG}")
        finally:
            guard.reset(token)
        assert isinstance(err.value.os_error, BlockedAddress)
        async with session.get(f"{inside.base_url}/robots.txt") as resp:  # no guard: API call
            assert resp.status == 200
    assert inside.hits["/faces/" + JPEG] == 0


@pytest.mark.parametrize(
    "address, why",
    [
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("::169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::1", "private"),  # local-use NAT64
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
        ("2001:0:7f00:1::f7f7:f7f7", "loopback"),  # Teredo, server 127.0.0.1, client 8.8.8.8
    ],
)
def test_ipv6_transition_forms_judged_by_what_they_embed(address, why):
    policy = AddressPolicy(False)
    assert why in (policy.refuses(address) or "allowed"), policy.refuses(address)
    assert AddressPolicy(False, ["127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16"]).refuses(
        address
    ) in (None, "private (local NAT64)")


@pytest.mark.parametrize("address", ["2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8"])
def test_transition_forms_of_public_addresses_pass(address):
    assert AddressPolicy(False).refuses(address) is None


async def test_transition_form_url_refused_before_connecting(inside, tmp_path):
    async with Downloader(make_cfg(tmp_path)) as dl:
        for host in ("[2002:7f00:1::]", "[64:ff9b::7f00:1]", "[::ffff:7f00:1]"):
            out = await dl.fetch(f"http://{host}:{port_of(inside.base_url)}/x.jpg", tmp_path / "r")
            assert out.reason == "private_address", (host, out)


# ------------------------------------------------------------------ search calls


class Recorder:
    """A JSON search endpoint recording the headers it receives."""

    def __init__(self, image_url: str) -> None:
        self.seen: list[dict[str, str]] = []
        self.image_url = image_url
        self.app = web.Application()
        self.app.router.add_get("/search", self.search)

    async def search(self, request: web.Request) -> web.Response:
        self.seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"status": "OK", "data": [{"url": self.image_url}]})


def redirector(target: str) -> web.Application:
    async def search(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{target}/search?{request.query_string}")

    app = web.Application()
    app.router.add_get("/search", search)
    return app


async def test_api_key_never_sent_across_origins(tmp_path):
    other = Recorder("http://example.org/a.jpg")
    async with serve(other.app) as other_url, serve(redirector(other_url)) as api_url:
        cfg = make_cfg(
            tmp_path,
            allowed=("127.0.0.1/32",),  # the other origin is reachable, only the key matters
            rapidapi={"base_url": api_url},
        )
        async with aiohttp.ClientSession() as session:
            results = await RapidApiProvider(cfg, session).search(SHARON)
    assert [r.url for r in results] == ["http://example.org/a.jpg"]
    assert len(other.seen) == 1
    assert "x-rapidapi-key" not in other.seen[0] and "x-rapidapi-host" not in other.seen[0]
    assert KEY not in str(other.seen[0])


async def test_api_key_kept_on_same_origin_redirect(tmp_path):
    """A redirect within the configured origin still authenticates."""
    recorder = Recorder("http://example.org/a.jpg")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"/v2/search?{request.query_string}")

    app = web.Application()
    app.router.add_get("/search", moved)
    app.router.add_get("/v2/search", recorder.search)
    async with serve(app) as api_url:
        cfg = make_cfg(tmp_path, rapidapi={"base_url": api_url})
        async with aiohttp.ClientSession() as session:
            results = await RapidApiProvider(cfg, session).search(SHARON)
    assert len(results) == 1 and recorder.seen[0]["x-rapidapi-key"] == KEY


@pytest.mark.parametrize("disguise", [False, True])
async def test_search_redirect_to_private_address_refused(tmp_path, disguise):
    """The configured endpoint (trusted as configured) redirects to a loopback service."""
    victim = Recorder("http://example.org/a.jpg")
    async with serve(victim.app) as victim_url:
        target = victim_url
        if disguise:
            target = f"http://{fullwidth('127.0.0.1')}:{port_of(victim_url)}"
        async with second_loopback(redirector(target)) as api_url:
            cfg = make_cfg(tmp_path, rapidapi={"base_url": api_url})
            async with aiohttp.ClientSession() as session:
                with pytest.raises(ProviderError) as err:
                    await RapidApiProvider(cfg, session).search(SHARON)
    assert "refused" in str(err.value) and KEY not in str(err.value)
    assert victim.seen == []
