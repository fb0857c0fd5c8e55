"""Reusable local fake services on 127.0.0.1 (port 0): image search APIs and image hosts.

    from servers import fake_services
    async with fake_services(testdata_dir) as svc:
        cfg = load_config(None, data_dir=tmp_path,
                          rapidapi={"base_url": svc.rapidapi_url},
                          wikimedia={"api_url": svc.wikimedia_url},
                          download={"allow_private_addresses": True})
        # env RAPIDAPI_KEY=svc.rapidapi.key for the rapidapi provider

- `FakeRapidApi`: `GET /search` in the Real-Time Image Search wire format; checks
  `x-rapidapi-key`. A query is answered from `results` (query -> list of URLs or item dicts),
  else, when it starts with a corpus identity ("Ariel Sharon ..."), with that person's photos.
- `FakeMediaWiki`: `GET /w/api.php` (generator=search in the File namespace, imageinfo with
  extmetadata, formatversion=2, gsroffset continuation), answered the same way.
- `ImageHost`: the corpus under `/faces/<path>`, distinct generated JPEGs under `/img/<n>.jpg`,
  and misbehaving routes (see `ImageHost.__init__`). Counts hits and peak concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

DEFAULT_PHOTO = "people/Ariel_Sharon/1.jpg"
GB = 1024**3


@contextlib.asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run an aiohttp app on host:0; yield its base URL (no trailing slash)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def jpeg_with_comment(jpeg: bytes, comment: bytes) -> bytes:
    """Same picture, distinct bytes: a COM segment right after SOI."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A few hundred bytes of PNG whose header claims width x height (1-bit grey)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" * (1 + (width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(row * 4, 9))
        + chunk(b"IEND", b"")
    )


def small_png(side: int = 20) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 120, 80)).save(buf, "PNG")
    return buf.getvalue()


async def _until_gone(request: web.Request, seconds: float) -> None:
    """Sleep up to `seconds`, returning early once the client has gone."""
    for _ in range(int(seconds / 0.05)):
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.05)


class ImageHost:
    """Image host. Routes:
    /faces/<corpus path>   a corpus photo            /img/<n>.jpg    distinct JPEG n
    /noai                  photo + X-Robots-Tag: noai
    /status/<code>         that status               /html-as-image  HTML as image/jpeg
    /retry-after/<key>?times=1&after=1   429 + Retry-After `times` times, then a photo
    /flaky/<key>?times=1   500 `times` times, then a photo
    /truncated.jpg         60 % of a JPEG            /bomb.png       PNG header claiming 30000x30000
    /tiny.png              20x20 PNG                 /text           text/plain
    /huge                  1 GB of zeros, Content-Length set, streamed lazily
    /huge-chunked          the same without Content-Length
    /slow                  a photo trickled at ~2 KB/s          /hang   half a photo, then silence
    /hang-headers          never answers
    /loop/a <-> /loop/b    redirect loop             /chain/<n>      n redirects, then a photo
    /redirect?to=<url>     302 to url                /private/<corpus path>  (for robots.txt)
    /robots.txt            `robots_txt` if given, else 404
    /stats                 JSON: hits, max_in_flight
    """

    def __init__(
        self,
        testdata_dir: Path | None = None,
        *,
        latency_s: float = 0.0,
        robots_txt: str | None = None,
        photo: str = DEFAULT_PHOTO,
    ) -> None:
        self.testdata_dir = Path(testdata_dir) if testdata_dir else None
        self.latency_s = latency_s
        self.robots_txt = robots_txt
        self.photo = (
            (self.testdata_dir / photo).read_bytes() if self.testdata_dir else _fallback_jpeg()
        )
        self.hits: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.base_url = ""
        app = web.Application(middlewares=[self._count])
        r = app.router
        r.add_get("/robots.txt", self.robots)
        r.add_get("/stats", self.stats)
        r.add_get("/faces/{path:.+}", self.faces)
        r.add_get("/private/{path:.+}", self.faces)
        r.add_get("/img/{n:\\d+}.jpg", self.numbered)
        r.add_get("/noai", self.noai)
        r.add_get("/status/{code:\\d+}", self.status)
        r.add_get("/html-as-image", self.html_as_image)
        r.add_get("/retry-after/{key}", self.retry_after)
        r.add_get("/flaky/{key}", self.flaky)
        r.add_get("/truncated.jpg", self.truncated)
        r.add_get("/bomb.png", self.bomb)
        r.add_get("/tiny.png", self.tiny)
        r.add_get("/text", self.text)
        r.add_get("/huge", self.huge)
        r.add_get("/huge-chunked", self.huge)
        r.add_get("/slow", self.slow)
        r.add_get("/hang", self.hang)
        r.add_get("/hang-headers", self.hang_headers)
        r.add_get("/loop/{side}", self.loop)
        r.add_get("/chain/{n:\\d+}", self.chain)
        r.add_get("/redirect", self.redirect)
        self.app = app
        self._bomb = png_bomb()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def face_url(self, corpus_path: str) -> str:
        return self.url("faces/" + quote(corpus_path))

    @web.middleware
    async def _count(self, request: web.Request, handler):
        self.hits[request.path] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s and request.path not in ("/robots.txt", "/stats"):
                await asyncio.sleep(self.latency_s)
            return await handler(request)
        finally:
            self.in_flight -= 1

    def _image(self, body: bytes, **headers: str) -> web.Response:
        ctype = "image/png" if body[:4] == b"\x89PNG" else "image/jpeg"
        return web.Response(body=body, content_type=ctype, headers=headers)

    async def robots(self, request):
        if self.robots_txt is None:
            return web.Response(status=404, text="no robots.txt")
        return web.Response(text=self.robots_txt)

    async def stats(self, request):
        return web.json_response(
            {"hits": sum(self.hits.values()), "max_in_flight": self.max_in_flight}
        )

    async def faces(self, request):
        if self.testdata_dir is None:
            raise web.HTTPNotFound()
        root = self.testdata_dir.resolve()
        path = (root / request.match_info["path"]).resolve()
        if root not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        return self._image(path.read_bytes())

    async def numbered(self, request):
        return self._image(
            jpeg_with_comment(
                self.photo, f"facequeue test image {request.match_info['n']}".encode()
            )
        )

    async def noai(self, request):
        return self._image(self.photo, **{"X-Robots-Tag": "noai"})

    async def status(self, request):
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    async def html_as_image(self, request):
        return web.Response(
            body=b"<!DOCTYPE html><html><body>Not found</body></html>",
            headers={"Content-Type": "image/jpeg"},
        )

    async def retry_after(self, request):
        times, after = int(request.query.get("times", 1)), request.query.get("after", "1")
        if self.hits[request.path] <= times:
            return web.Response(status=429, text="slow down", headers={"Retry-After": after})
        return self._image(self.photo)

    async def flaky(self, request):
        if self.hits[request.path] <= int(request.query.get("times", 1)):
            return web.Response(status=500, text="oops")
        return self._image(self.photo)

    async def truncated(self, request):
        return self._image(self.photo[: len(self.photo) * 6 // 10])

    async def bomb(self, request):
        return self._image(self._bomb)

    async def tiny(self, request):
        return self._image(small_png(20))

    async def text(self, request):
        return web.Response(text="just some text, not an image")

    async def huge(self, request):
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        if request.path == "/huge":
            resp.content_length = GB
        await resp.prepare(request)
        block = b"\x00" * 65536
        with contextlib.suppress(ConnectionError, RuntimeError):
            for _ in range(GB // len(block)):
                if request.transport is None or request.transport.is_closing():
                    break
                await resp.write(block)
        return resp

    async def slow(self, request):
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = len(self.photo)
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError, RuntimeError):
            for i in range(0, len(self.photo), 100):
                if request.transport is None or request.transport.is_closing():
                    break
                await resp.write(self.photo[i : i + 100])
                await asyncio.sleep(0.05)
        return resp

    async def hang(self, request):
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = len(self.photo)
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write(self.photo[: len(self.photo) // 2])
            await _until_gone(request, 30)
        return resp

    async def hang_headers(self, request):
        await _until_gone(request, 30)
        return web.Response(status=504)

    async def loop(self, request):
        other = "b" if request.match_info["side"] == "a" else "a"
        raise web.HTTPFound(f"/loop/{other}")

    async def chain(self, request):
        n = int(request.match_info["n"])
        if n == 0:
            return self._image(self.photo)
        raise web.HTTPFound(f"/chain/{n - 1}")

    async def redirect(self, request):
        raise web.HTTPFound(request.query["to"])


def _fallback_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (240, 240), (90, 140, 200)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def corpus_people(testdata_dir: Path) -> dict[str, list[str]]:
    """'Ariel Sharon' -> ['people/Ariel_Sharon/1.jpg', ...] (sorted)."""
    out: dict[str, list[str]] = {}
    for folder in sorted((Path(testdata_dir) / "people").iterdir()):
        if folder.is_dir():
            out[folder.name.replace("_", " ")] = sorted(
                f"people/{folder.name}/{p.name}" for p in folder.iterdir() if p.is_file()
            )
    return out


class _SearchBackend:
    """Query -> image URLs: explicit `results`, else the corpus person the query starts with."""

    def __init__(
        self, images: ImageHost | None, testdata_dir: Path | None, results: dict[str, list] | None
    ) -> None:
        self.images = images
        self.results = dict(results or {})
        self.people = corpus_people(testdata_dir) if testdata_dir else {}
        self.queries: list[str] = []
        self.user_agents: list[str | None] = []
        self.fail_times = 0  # answer 500 this many times first
        self.status: int | None = None  # answer this status always (e.g. 403)
        self.malformed = False  # answer broken JSON

    def lookup(self, query: str) -> list:
        self.queries.append(query)
        if query in self.results:
            return self.results[query]
        lowered = query.casefold()
        for name in sorted(self.people, key=len, reverse=True):
            if lowered.startswith(name.casefold()) and self.images is not None:
                return [self.images.face_url(p) for p in self.people[name]]
        return []

    def misbehave(self) -> web.Response | None:
        if self.status is not None:
            return web.json_response({"message": "Invalid API key"}, status=self.status)
        if self.fail_times > 0:
            self.fail_times -= 1
            return web.Response(status=500, text="internal error")
        if self.malformed:
            return web.Response(text='{"status": "OK", "data": [', content_type="application/json")
        return None


class FakeRapidApi(_SearchBackend):
    key = "test-rapidapi-key"

    def __init__(self, images=None, testdata_dir=None, results=None) -> None:
        super().__init__(images, testdata_dir, results)
        self.requests: list[dict[str, str]] = []
        self.app = web.Application()
        self.app.router.add_get("/search", self.search)

    async def search(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        self.user_agents.append(request.headers.get("User-Agent"))
        if request.headers.get("x-rapidapi-key") != self.key:
            return web.json_response({"message": "You are not subscribed to this API."}, status=403)
        bad = self.misbehave()
        if bad is not None:
            return bad
        limit = int(request.query.get("limit", 100))
        data = []
        for i, item in enumerate(self.lookup(request.query.get("query", ""))[:limit]):
            if isinstance(item, str):
                item = {
                    "id": f"img{i}",
                    "title": f"result {i + 1}",
                    "url": item,
                    "width": 1024,
                    "height": 768,
                    "thumbnail_url": item + "?thumb=1",
                    "thumbnail_width": 200,
                    "thumbnail_height": 150,
                    "source": "Example",
                    "source_url": f"https://example.org/page/{i + 1}",
                }
            data.append(item)
        return web.json_response({"status": "OK", "request_id": "test-request", "data": data})


class FakeMediaWiki(_SearchBackend):
    def __init__(self, images=None, testdata_dir=None, results=None) -> None:
        super().__init__(images, testdata_dir, results)
        self.requests: list[dict[str, str]] = []
        self.app = web.Application()
        self.app.router.add_get("/w/api.php", self.api)

    async def api(self, request: web.Request) -> web.Response:
        q = request.query
        self.requests.append(dict(q))
        self.user_agents.append(request.headers.get("User-Agent"))
        bad = self.misbehave()
        if bad is not None:
            return bad
        if (
            q.get("action") != "query"
            or q.get("generator") != "search"
            or q.get("gsrnamespace") != "6"
        ):
            return web.json_response(
                {"error": {"code": "badparams", "info": "unsupported request"}}
            )
        query = " ".join(w for w in q.get("gsrsearch", "").split() if not w.startswith("filetype:"))
        offset, limit = int(q.get("gsroffset", 0)), int(q.get("gsrlimit", 10))
        hits = self.lookup(query)
        pages = []
        for i, item in enumerate(hits[offset : offset + limit], start=offset):
            if isinstance(item, str):
                name = item.rsplit("/", 1)[-1]
                mime = "image/png" if name.endswith(".png") else "image/jpeg"
                item = {
                    "pageid": 1000 + i,
                    "ns": 6,
                    "title": f"File:Test {i + 1} {name}",
                    "imageinfo": [
                        {
                            "url": item,
                            "descriptionurl": f"https://commons.example/wiki/File:{i + 1}",
                            "width": 250,
                            "height": 250,
                            "size": 13000,
                            "mime": mime,
                            "thumburl": item + "?width=1280",
                            "thumbwidth": 250,
                            "thumbheight": 250,
                            "extmetadata": {
                                "LicenseShortName": {
                                    "value": "CC BY-SA 4.0",
                                    "source": "commons-desc-page",
                                },
                                "Artist": {
                                    "value": f'<a href="//commons.example/wiki/User:P{i}">'
                                    f"Photographer &amp; {i}</a>",
                                    "source": "commons-desc-page",
                                },
                            },
                        }
                    ],
                }
            pages.append({**item, "index": i + 1})
        pages.sort(key=lambda p: -p.get("pageid", 0))  # like MediaWiki: not in rank order
        body: dict = {"batchcomplete": True, "query": {"pages": pages}}
        if offset + limit < len(hits):
            body["continue"] = {"gsroffset": offset + limit, "continue": "gsroffset||"}
        return web.Response(text=json.dumps(body), content_type="application/json")


@dataclass
class FakeServices:
    images: ImageHost
    rapidapi: FakeRapidApi
    mediawiki: FakeMediaWiki
    rapidapi_url: str = ""
    wikimedia_url: str = ""
    images_url: str = ""
    extra: dict = field(default_factory=dict)


@contextlib.asynccontextmanager
async def fake_services(
    testdata_dir: Path | None = None,
    *,
    results: dict[str, list] | None = None,
    latency_s: float = 0.0,
    robots_txt: str | None = None,
) -> AsyncIterator[FakeServices]:
    """Start an image host, a RapidAPI and a MediaWiki fake on 127.0.0.1; yield their URLs."""
    images = ImageHost(testdata_dir, latency_s=latency_s, robots_txt=robots_txt)
    rapid = FakeRapidApi(images, testdata_dir, results)
    wiki = FakeMediaWiki(images, testdata_dir, results)
    async with (
        serve(images.app) as img_url,
        serve(rapid.app) as rapid_url,
        serve(wiki.app) as wiki_url,
    ):
        images.base_url = img_url
        yield FakeServices(
            images,
            rapid,
            wiki,
            rapidapi_url=rapid_url,
            wikimedia_url=f"{wiki_url}/w/api.php",
            images_url=img_url,
        )
