"""Downloader against real local HTTP servers: good photos and misbehaving hosts."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
import time
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image
from servers import ImageHost, serve

from facequeue.config import load_config
from facequeue.stages.bodies import SPOOL_BYTES
from facequeue.stages.download import Downloader, check_image, make_session

pytestmark = pytest.mark.timeout(60)

JPEG = "people/Ariel_Sharon/1.jpg"
WEBP_AS_JPG = "people/deepface_person_03/3.jpg"
RGBA_PNG = "people/Lin-Manuel_Miranda/1.png"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEQUEUE_CONFIG", raising=False)


def make_cfg(tmp_path: Path, **download):
    opts = dict(
        allow_private_addresses=True,
        connect_timeout_s=1.0,
        read_timeout_s=0.5,
        total_timeout_s=2.0,
        retries=2,
        retry_backoff_s=0.01,
        retry_after_max_s=0.3,
        max_bytes=2_000_000,
    )
    opts.update(download)
    return load_config(None, data_dir=tmp_path / "data", download=opts)


@pytest.fixture
async def host(testdata_dir):
    h = ImageHost(testdata_dir, robots_txt="User-agent: *\nDisallow: /private/\n")
    async with serve(h.app) as url:
        h.base_url = url
        yield h


@pytest.fixture
async def dl(tmp_path):
    d = Downloader(make_cfg(tmp_path))
    yield d
    await d.close()


def stored_files(dest: Path) -> list[Path]:
    return sorted(p for p in dest.rglob("*") if p.is_file()) if dest.exists() else []


async def test_good_photo_is_stored_content_addressed(host, dl, tmp_path, testdata_dir):
    dest = tmp_path / "raw"
    out = await dl.fetch(host.face_url(JPEG), dest)
    body = (testdata_dir / JPEG).read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    assert out.ok and out.reason is None
    assert (out.sha256, out.format, out.width, out.height, out.size) == (
        sha,
        "jpeg",
        250,
        250,
        len(body),
    )
    assert out.path == dest / sha[:2] / f"{sha}.jpg"
    assert out.path.read_bytes() == body  # original bytes, not re-encoded
    assert out.final_url == out.url and out.content_type == "image/jpeg"
    assert stored_files(dest) == [out.path]
    assert not list(dl.cfg.tmp_dir.glob("*"))


async def test_format_from_content_not_name(host, dl, tmp_path):
    webp = await dl.fetch(host.face_url(WEBP_AS_JPG), tmp_path / "raw")
    png = await dl.fetch(host.face_url(RGBA_PNG), tmp_path / "raw")
    assert webp.ok and webp.format == "webp" and webp.path.suffix == ".webp"
    assert png.ok and png.format == "png" and png.path.suffix == ".png"


async def test_same_bytes_stored_once(host, dl, tmp_path):
    dest = tmp_path / "raw"
    a = await dl.fetch(host.face_url(JPEG), dest)
    b = await dl.fetch(host.url(f"redirect?to=/faces/{JPEG}"), dest)
    c = await dl.fetch(host.url("noai"), dest)  # same bytes but opted out: not stored
    assert a.ok and b.ok and a.sha256 == b.sha256 and a.path == b.path
    assert b.final_url == host.face_url(JPEG)
    assert not c.ok and c.reason == "x_robots_tag"
    assert stored_files(dest) == [a.path]
    n1, n2 = await asyncio.gather(
        dl.fetch(host.url("img/1.jpg"), dest), dl.fetch(host.url("img/2.jpg"), dest)
    )
    assert n1.ok and n2.ok and n1.sha256 != n2.sha256 and len(stored_files(dest)) == 3


@pytest.mark.parametrize(
    "path, reason, detail",
    [
        ("status/404", "http_404", "404"),
        ("status/403", "http_403", "403"),
        ("status/204", "http_error", "204"),
        ("html-as-image", "not_an_image", "HTML"),
        ("text", "not_an_image", "unrecognised"),
        ("truncated.jpg", "unreadable", "truncated"),
        ("bomb.png", "too_many_pixels", ""),
        ("tiny.png", "too_small", "20x20"),
        ("huge", "too_large", "Content-Length"),
        ("huge-chunked", "too_large", "body over"),
        ("loop/a", "too_many_redirects", "loop"),
        ("chain/9", "too_many_redirects", "more than 5"),
        ("noai", "x_robots_tag", "noai"),
        (f"private/{JPEG}", "robots_txt", "robots.txt"),
    ],
)
async def test_bad_cases_end_with_a_reason(host, dl, tmp_path, path, reason, detail):
    dest = tmp_path / "raw"
    started = time.monotonic()
    out = await dl.fetch(host.url(path), dest)
    assert (out.ok, out.reason) == (False, reason), out
    assert detail in out.detail and "\n" not in out.detail
    assert out.path is None and stored_files(dest) == []
    assert not list(dl.cfg.tmp_dir.glob("*"))  # no temp file left behind
    assert time.monotonic() - started < 5
    if reason.startswith("http_4"):
        assert host.hits[f"/{path}"] == 1  # no retry on 4xx other than 429


async def test_redirect_chain_within_limit(host, dl, tmp_path):
    out = await dl.fetch(host.url("chain/4"), tmp_path / "raw")
    assert out.ok and out.final_url == host.url("chain/0")


async def test_500_then_200_is_retried(host, dl, tmp_path):
    out = await dl.fetch(host.url("flaky/x?times=1"), tmp_path / "raw")
    assert out.ok and host.hits["/flaky/x"] == 2


async def test_429_honours_retry_after_capped(host, dl, tmp_path):
    started = time.monotonic()
    out = await dl.fetch(host.url("retry-after/a?times=1&after=5"), tmp_path / "raw")
    elapsed = time.monotonic() - started
    assert out.ok and host.hits["/retry-after/a"] == 2
    assert 0.3 <= elapsed < 2  # waited retry_after_max_s (0.3), not 5 s


async def test_429_forever_gives_up_after_retries(host, dl, tmp_path):
    out = await dl.fetch(host.url("retry-after/b?times=99&after=0"), tmp_path / "raw")
    assert out.reason == "http_429" and "3 attempts" in out.detail
    assert host.hits["/retry-after/b"] == 3  # 1 + retries (2)


@pytest.mark.parametrize("path", ["hang", "hang-headers", "slow"])
async def test_timeouts(host, tmp_path, path):
    async with Downloader(make_cfg(tmp_path, retries=1)) as dl:
        started = time.monotonic()
        out = await dl.fetch(host.url(path), tmp_path / "raw")
    assert out.reason == "timeout", out
    assert host.hits[f"/{path}"] == 2
    assert time.monotonic() - started < 6
    assert stored_files(tmp_path / "raw") == []


async def test_connection_refused(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Downloader(make_cfg(tmp_path, retries=1)) as dl:
        out = await dl.fetch(f"http://127.0.0.1:{port}/x.jpg", tmp_path / "raw")
    assert out.reason == "connection_error"


@pytest.mark.parametrize(
    "url, reason",
    [
        ("file:///etc/passwd", "bad_scheme"),
        ("ftp://example.org/a.jpg", "bad_scheme"),
        ("javascript:alert(1)", "bad_scheme"),
        ("http://[::1/a.jpg", "bad_url"),
        ("http:///nohost.jpg", "bad_url"),
    ],
)
async def test_bad_urls(dl, tmp_path, url, reason):
    out = await dl.fetch(url, tmp_path / "raw")
    assert out.reason == reason, out


async def test_private_addresses_refused_by_default(host, tmp_path):
    port = host.base_url.rsplit(":", 1)[1]
    cfg = make_cfg(tmp_path, allow_private_addresses=False)
    async with Downloader(cfg) as dl:  # owns a make_session() session: guarded resolver
        for url in (
            host.face_url(JPEG),
            f"http://localhost:{port}/faces/{JPEG}",
            f"http://[::ffff:127.0.0.1]:{port}/x",
            "http://10.1.2.3/x.jpg",
            "http://169.254.169.254/latest/meta-data/",
            "http://224.0.0.1/x",
        ):
            out = await dl.fetch(url, tmp_path / "raw")
            assert out.reason == "private_address", (url, out)
    assert sum(host.hits.values()) == 0


async def test_redirect_to_loopback_refused(testdata_dir, tmp_path):
    """A public-looking first hop (127.0.0.2, allow-listed) redirecting to 127.0.0.1."""
    inside, outside = ImageHost(testdata_dir), ImageHost(testdata_dir)
    try:
        ctx = serve(outside.app, host="127.0.0.2")
        outside.base_url = await ctx.__aenter__()
    except OSError:
        pytest.skip("cannot bind 127.0.0.2")
    try:
        async with serve(inside.app) as inside_url:
            cfg = make_cfg(
                tmp_path, allow_private_addresses=False, allowed_networks=["127.0.0.2/32"]
            )
            async with Downloader(cfg, make_session(cfg)) as dl:
                ok = await dl.fetch(outside.url("img/7.jpg"), tmp_path / "raw")
                bad = await dl.fetch(
                    outside.url(f"redirect?to={inside_url}/faces/{JPEG}"), tmp_path / "raw"
                )
                await dl.session.close()
    finally:
        await ctx.__aexit__(None, None, None)
    assert ok.ok
    assert bad.reason == "private_address" and bad.final_url.startswith(inside_url)
    assert sum(inside.hits.values()) == 0


async def test_switches_turn_opt_out_checks_off(host, tmp_path):
    cfg = make_cfg(tmp_path, honor_x_robots_tag=False, honor_robots_txt=False)
    async with Downloader(cfg) as dl:
        assert (await dl.fetch(host.url("noai"), tmp_path / "raw")).ok
        assert (await dl.fetch(host.url(f"private/{JPEG}"), tmp_path / "raw")).ok
    assert host.hits["/robots.txt"] == 0


async def test_robots_txt_cached_per_host_and_missing_means_allowed(
    host, dl, testdata_dir, tmp_path
):
    for i in range(5):
        assert (await dl.fetch(host.url(f"img/{i}.jpg"), tmp_path / "raw")).ok
    assert host.hits["/robots.txt"] == 1
    bare = ImageHost(testdata_dir)  # robots.txt -> 404
    async with serve(bare.app) as url:
        bare.base_url = url
        assert (await dl.fetch(bare.url(f"private/{JPEG}"), tmp_path / "raw")).ok
    assert bare.hits["/robots.txt"] == 1


async def test_x_robots_tag_parsing(tmp_path):
    dl = Downloader(make_cfg(tmp_path, x_robots_block=["noai", "noimageai", "none"]))
    assert dl._x_robots_blocked(["noindex, NoAI"]) == "noindex, NoAI"
    assert dl._x_robots_blocked(["googlebot: noimageai"]) is None  # for another bot
    assert dl._x_robots_blocked(["facequeue: noimageai"]) is not None
    assert dl._x_robots_blocked(["none"]) == "none"
    assert dl._x_robots_blocked(["noindex", "max-image-preview: large"]) is None


async def test_per_host_and_global_limits(testdata_dir, tmp_path):
    hosts = [ImageHost(testdata_dir, latency_s=0.05) for _ in range(3)]
    cfg = make_cfg(tmp_path, per_host=2, concurrency=4)
    async with serve(hosts[0].app) as u0, serve(hosts[1].app) as u1, serve(hosts[2].app) as u2:
        for h, u in zip(hosts, (u0, u1, u2), strict=True):
            h.base_url = u
        async with Downloader(cfg) as dl:
            outs = await asyncio.gather(
                *(dl.fetch(hosts[i % 3].url(f"img/{i}.jpg"), tmp_path / "raw") for i in range(30))
            )
            assert not dl._hosts  # per-host slots are dropped when idle
    assert all(o.ok for o in outs) and len({o.sha256 for o in outs}) == 30
    assert all(h.max_in_flight <= 2 for h in hosts)
    assert max(h.max_in_flight for h in hosts) == 2


async def test_ingest_file(dl, testdata_dir, tmp_path):
    dest = tmp_path / "raw"
    ok = await dl.ingest_file(testdata_dir / JPEG, dest)
    assert ok.ok and ok.path.read_bytes() == (testdata_dir / JPEG).read_bytes()
    assert ok.url == str(testdata_dir / JPEG) and ok.format == "jpeg"
    again = await dl.ingest_file(testdata_dir / JPEG, dest)
    assert again.path == ok.path and len(stored_files(dest)) == 1
    (tmp_path / "notes.jpg").write_text("<html>not an image</html>")
    assert (await dl.ingest_file(tmp_path / "notes.jpg", dest)).reason == "not_an_image"
    assert (await dl.ingest_file(tmp_path / "missing.jpg", dest)).reason == "missing_file"
    assert (await dl.ingest_file(tmp_path, dest)).reason == "not_a_file"


def test_check_image_exif_orientation_and_bomb(tmp_path):
    im = Image.new("RGB", (300, 120), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: shown as 120x300
    path = tmp_path / "rot.jpg"
    im.save(path, "JPEG", exif=exif)
    assert check_image(path, 50_000_000, 100)[2:] == ("jpeg", 120, 300)
    assert check_image(path, 50_000_000, 130)[0] == "too_small"
    big = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(big)  # under Pillow's own limit, over ours
    reason, detail, *_ = check_image(big, 1_000_000, 100)
    assert reason == "too_many_pixels" and "3000x3000" in detail


def test_truncated_png_rejected(tmp_path, testdata_dir):
    body = (testdata_dir / RGBA_PNG).read_bytes()
    path = tmp_path / "t.png"
    path.write_bytes(body[: len(body) // 2])
    assert check_image(path, 50_000_000, 100)[0] == "unreadable"
    buf = io.BytesIO()
    Image.open(testdata_dir / RGBA_PNG).save(buf, "WEBP")
    (tmp_path / "x.webp").write_bytes(buf.getvalue())
    assert check_image(tmp_path / "x.webp", 50_000_000, 100)[0] is None


async def test_cancelled_mid_body_leaves_no_file(host, tmp_path):
    """A daemon stopping mid-download: the half body was only in memory; no file anywhere."""
    async with Downloader(make_cfg(tmp_path, read_timeout_s=20, total_timeout_s=30)) as dl:
        task = asyncio.create_task(dl.fetch(host.url("hang"), tmp_path / "raw"))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if host.hits["/hang"]:
                break
        await asyncio.sleep(0.1)  # half a body received, the rest never comes
        assert host.hits["/hang"] == 1 and not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stored_files(tmp_path / "raw") == []
    assert not list(dl.cfg.tmp_dir.glob("*"))


async def test_slow_drip_cannot_hold_a_slot_past_the_deadline(host, tmp_path):
    """A server trickling bytes (never idle long enough for read_timeout_s, under
    total_timeout_s per attempt, retried) is cut off by download.deadline_s, slot freed."""
    cfg = make_cfg(tmp_path, read_timeout_s=5, total_timeout_s=30, retries=3, deadline_s=0.6)
    async with Downloader(cfg) as dl:
        out = await dl.fetch(host.url("slow"), tmp_path / "raw")
        assert not dl._hosts  # the per-host slot was given back
    assert out.reason == "deadline" and "deadline_s = 0.6" in out.detail, out
    assert host.hits["/slow"] == 1 and stored_files(tmp_path / "raw") == []
    assert not list(dl.cfg.tmp_dir.glob("*"))


async def test_deadline_covers_retries_and_back_off(host, tmp_path):
    cfg = make_cfg(tmp_path, retries=20, retry_backoff_s=0.2, deadline_s=1.0)
    async with Downloader(cfg) as dl:
        out = await dl.fetch(host.url("flaky/d?times=99"), tmp_path / "raw")
    assert out.reason == "deadline" and 1 <= host.hits["/flaky/d"] < 21


async def test_stored_files_made_durable_in_batches(host, tmp_path, monkeypatch):
    """One sync covers many files: no fsync per file, yet every fetch returns durable."""
    from facequeue.stages import durable

    calls: list[int] = []
    real = durable.sync_paths

    def counting(paths):
        calls.append(len(paths))
        real(paths)

    monkeypatch.setattr(durable, "sync_paths", counting)
    async with Downloader(make_cfg(tmp_path, per_host=16, concurrency=16)) as dl:
        outs = await asyncio.gather(
            *(dl.fetch(host.url(f"img/{i}.jpg"), tmp_path / "raw") for i in range(60))
        )
    assert all(o.ok and o.path.is_file() for o in outs)
    assert sum(calls) == 60 and len(calls) < 60


def test_cheap_check_leaves_pixel_decoding_to_the_worker(tmp_path, testdata_dir):
    """Structurally complete bytes with corrupt pixel data pass the download check (the
    analysis worker decodes and rejects them `unreadable`); what the header shows fails."""
    body = bytearray((testdata_dir / JPEG).read_bytes())
    sos = body.index(b"\xff\xda")
    for i in range(sos + 200, len(body) - 400, 7):  # scramble entropy-coded data
        body[i] = 0x00
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(bytes(body))
    assert check_image(corrupt, 50_000_000, 100)[0] is None
    (tmp_path / "cut.jpg").write_bytes(bytes(body[: sos + 500]))
    assert check_image(tmp_path / "cut.jpg", 50_000_000, 100)[0] == "unreadable"
    (tmp_path / "page.jpg").write_bytes(b"<!DOCTYPE html><html>404</html>")
    assert check_image(tmp_path / "page.jpg", 50_000_000, 100)[:2] == (
        "not_an_image",
        "HTML page, not an image",
    )


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: random pixels, a few MB for a few hundred px."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("chunked", [False, True])
async def test_large_body_spooled_to_disk_not_memory(tmp_path, chunked):
    """Bodies over SPOOL_BYTES go to a temp file as they arrive; stored the same way."""
    body = noise_png(800)  # ~1.9 MB > SPOOL_BYTES
    assert len(body) > SPOOL_BYTES

    async def image(request):
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        if not chunked:
            resp.content_length = len(body)
        await resp.prepare(request)
        for i in range(0, len(body), 256 * 1024):
            await resp.write(body[i : i + 256 * 1024])
        return resp

    app = web.Application()
    app.router.add_get("/big.png", image)
    async with serve(app) as url:
        async with Downloader(make_cfg(tmp_path, max_bytes=5_000_000)) as dl:
            out = await dl.fetch(f"{url}/big.png", tmp_path / "raw")
            small = await dl.fetch(f"{url}/big.png", tmp_path / "raw2")  # same bytes again
            cap = Downloader(make_cfg(tmp_path, max_bytes=1_500_000), dl.session)
            over = await cap.fetch(f"{url}/big.png", tmp_path / "raw3")
    assert out.ok and out.format == "png" and out.size == len(body), out
    assert out.sha256 == hashlib.sha256(body).hexdigest() and out.path.read_bytes() == body
    assert small.ok and small.sha256 == out.sha256
    assert over.reason == "too_large"
    assert not list(dl.cfg.tmp_dir.glob("*"))  # spool files renamed or removed


async def test_ingest_large_file_and_truncated_large_file(dl, tmp_path):
    body = noise_png(800)
    (tmp_path / "big.png").write_bytes(body)
    (tmp_path / "cut.png").write_bytes(body[: len(body) - 5000])
    cfg = make_cfg(tmp_path, max_bytes=5_000_000)
    async with Downloader(cfg) as big:
        ok = await big.ingest_file(tmp_path / "big.png", tmp_path / "raw")
        cut = await big.ingest_file(tmp_path / "cut.png", tmp_path / "raw")
    assert ok.ok and ok.path.read_bytes() == body and ok.sha256 == hashlib.sha256(body).hexdigest()
    assert cut.reason == "unreadable" and "IEND" in cut.detail
    assert not list(cfg.tmp_dir.glob("*"))


async def test_deadline_counts_from_the_first_slot_not_the_queue(host, tmp_path):
    """Waiting behind a busy host is not the fetch's fault: its deadline starts with a slot."""
    cfg = make_cfg(tmp_path, per_host=1, read_timeout_s=5, total_timeout_s=30, deadline_s=0.8)
    async with Downloader(cfg) as dl:
        slow = asyncio.create_task(dl.fetch(host.url("slow"), tmp_path / "raw"))
        for _ in range(100):  # the slow drip holds the host's only slot
            await asyncio.sleep(0.01)
            if host.hits["/slow"]:
                break
        queued = await dl.fetch(host.url("img/1.jpg"), tmp_path / "raw")
        assert (await slow).reason == "deadline"
    assert queued.ok, queued  # waited ~0.8 s for the slot, then had its own 0.8 s
