"""Polite concurrent image downloader: limits, retries, SSRF guard, robots, content checks.

One aiohttp session per daemon (`make_session`). `Downloader.fetch` streams a URL to a temp
file under `cfg.tmp_dir` (size capped while streaming), checks the bytes are a real image,
then renames it atomically to content-addressed storage `dest_dir/<sha[:2]>/<sha>.<ext>`.
Every expected failure is a `DownloadOutcome` with a snake_case `reason`, never an exception.
"""

from __future__ import annotations

import asyncio  # noqa: E401
import contextlib
import contextvars
import errno
import hashlib
import ipaddress
import os
import random  # noqa: E401
import re
import shutil
import socket
import time
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import aiofiles
import aiohttp
import structlog
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from PIL import Image, UnidentifiedImageError

from facequeue.config import Config
from facequeue.retry import retry_after_seconds

log = structlog.get_logger()

CHUNK = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ROBOTS_TTL_S = 24 * 3600.0
ROBOTS_MAX_BYTES = 512 * 1024
ROBOTS_CACHE_SIZE = 4096
TMP_PREFIX = "dl-"
# Formats accepted (detected from content by Pillow) -> file extension. Never EPS & co.
FORMATS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
}
ACCEPT = "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8"
_XR_VALUED = {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}


@dataclass(frozen=True)
class DownloadOutcome:
    url: str
    ok: bool
    reason: str | None
    detail: str | None
    sha256: str | None
    path: Path | None
    final_url: str | None
    content_type: str | None
    size: int | None
    width: int | None
    height: int | None
    format: str | None


def _fail(
    url: str,
    reason: str | None,
    detail: str | None,
    final_url: str | None = None,
    content_type: str | None = None,
    size: int | None = None,
) -> DownloadOutcome:
    return DownloadOutcome(
        url, False, reason, detail, None, None, final_url, content_type, size, None, None, None
    )


# ---------------------------------------------------------------- address guard (SSRF)


class BlockedAddress(OSError):
    """A host resolved to an address the download policy refuses."""


class AddressPolicy:
    def __init__(self, allow_private: bool, allowed_networks: list[str] | tuple[str, ...] = ()):
        self.allow_private = allow_private
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def refuses(self, ip: str) -> str | None:
        """Why this address is refused ("loopback", "private"...), or None if allowed."""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return "unparsable"
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self.networks):
            return None
        if addr.is_multicast:
            return "multicast"
        if self.allow_private or addr.is_global:
            return None
        return next(
            (
                label.replace("_", "-")
                for label in ("loopback", "link_local", "private", "unspecified", "reserved")
                if getattr(addr, f"is_{label}")
            ),
            "non-global",
        )


# Set by Downloader.fetch for the duration of a download: the resolver checks addresses only
# then, so API calls to configured endpoints through the same session are not affected.
_guard: contextvars.ContextVar[AddressPolicy | None] = contextvars.ContextVar(
    "facequeue_download_guard", default=None
)


class GuardedResolver(AbstractResolver):
    """Wraps aiohttp's resolver; refuses a host if any of its addresses is refused."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ):
        infos = await self._inner.resolve(host, port, family)
        policy = _guard.get()
        if policy is not None:
            for info in infos:
                why = policy.refuses(info["host"])
                if why:
                    raise BlockedAddress(f"{host} resolves to {why} address {info['host']}")
        return infos

    async def close(self) -> None:
        await self._inner.close()


def make_session(cfg: Config) -> aiohttp.ClientSession:
    """The daemon's single HTTP session: connector limits, guarded resolver, User-Agent."""
    d = cfg.download
    # No DNS cache: every new connection is resolved, and so checked, in its own context.
    connector = aiohttp.TCPConnector(
        limit=d.concurrency,
        limit_per_host=d.per_host,
        resolver=GuardedResolver(),
        use_dns_cache=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=_timeout(cfg),
        headers={"User-Agent": cfg.user_agent},
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def _timeout(cfg: Config) -> aiohttp.ClientTimeout:
    d = cfg.download
    return aiohttp.ClientTimeout(
        total=d.total_timeout_s, sock_connect=d.connect_timeout_s, sock_read=d.read_timeout_s
    )


# ---------------------------------------------------------------- content checks (thread side)


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(512)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        return "empty body"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML page, not an image"
    return (
        "markup (HTML/XML/SVG), not a raster image"
        if text.startswith(b"<")
        else f"unrecognised data starting {head[:8].hex()}"
    )


def check_image(
    path: Path, max_pixels: int, min_side: int
) -> tuple[str | None, str, str | None, int | None, int | None]:
    """(reason or None, detail, format, width, height) for the file, by content only.

    Size comes from the header and is checked before anything is decoded; then the whole
    image is decoded (a truncated file fails here). Width/height are after EXIF orientation.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path, formats=_open_formats())
        except Image.DecompressionBombError as exc:
            return "too_many_pixels", f"decompression bomb: {exc}", None, None, None
        except UnidentifiedImageError:
            return "not_an_image", _sniff(path), None, None, None
        except Exception as exc:  # noqa: BLE001 - any parser failure is "unreadable"
            return "unreadable", f"header does not parse: {exc}", None, None, None
        with im:
            fmt = im.format or "?"
            w, h = im.size
            if w * h > max_pixels:
                return (
                    "too_many_pixels",
                    f"{w}x{h} = {w * h} pixels > {max_pixels}",
                    fmt.lower(),
                    w,
                    h,
                )
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block is not fatal
                orientation = 1
            if orientation in (5, 6, 7, 8):
                w, h = h, w
            if min(w, h) < min_side:
                return "too_small", f"{w}x{h} is below {min_side} px", fmt.lower(), w, h
            try:
                im.load()
            except Exception as exc:  # noqa: BLE001
                return "unreadable", f"{fmt} does not decode: {exc}", fmt.lower(), w, h
    return None, f"{fmt} {w}x{h}", fmt.lower(), w, h


def _open_formats() -> list[str]:
    Image.init()
    return [f for f in FORMATS if f in Image.OPEN]  # MPO comes out of the JPEG opener


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(tmp: Path, sha: str, dest_dir: Path, max_pixels: int, min_side: int):
    """Thread side: check the temp file, then move it into content-addressed storage."""
    reason, detail, fmt, w, h = check_image(tmp, max_pixels, min_side)
    if reason or not fmt:
        return reason, detail, fmt, w, h, None
    dest = dest_dir / sha[:2] / f"{sha}.{FORMATS[fmt.upper()]}"
    if dest.exists():
        return None, f"{detail}, already stored", fmt, w, h, dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    _fsync(tmp)
    try:
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        part = (
            dest.parent / f".{sha}.{uuid.uuid4().hex}.part"
        )  # other filesystem: copy, then rename
        try:
            shutil.copyfile(tmp, part)
            _fsync(part)
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        _fsync(dest.parent)
    return None, detail, fmt, w, h, dest


# ---------------------------------------------------------------- downloader


@dataclass
class _Step:
    kind: str  # ok | fail | retry | redirect
    reason: str | None = None
    detail: str | None = None
    delay: float | None = None
    location: str | None = None
    tmp: Path | None = None
    sha: str | None = None
    size: int | None = None
    content_type: str | None = None


class Downloader:
    def __init__(self, cfg: Config, session: aiohttp.ClientSession | None = None) -> None:
        self.cfg = cfg
        d = cfg.download
        self._session = session
        self._owns_session = session is None
        self._policy = AddressPolicy(d.allow_private_addresses, d.allowed_networks)
        self._timeout = _timeout(cfg)
        self._headers = {"User-Agent": cfg.user_agent, "Accept": ACCEPT}
        self._global = asyncio.Semaphore(d.concurrency)
        self._hosts: dict[str, list] = {}  # netloc -> [Semaphore, users]; dropped when unused
        self._robots: OrderedDict[str, tuple[float, RobotFileParser | None]] = OrderedDict()
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._ua_token = (cfg.user_agent.split("/")[0].split() or ["*"])[0].lower()
        self._block = {v.strip().lower() for v in d.x_robots_block}
        self._swept = False

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = make_session(self.cfg)
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- public

    async def fetch(self, url: str, dest_dir: Path) -> DownloadOutcome:
        token = _guard.set(self._policy)
        try:
            out = await self._fetch(url, Path(dest_dir))
        except Exception as exc:  # noqa: BLE001 - a bug must not take the batch down
            log.error("download_internal_error", url=url, error=f"{type(exc).__name__}: {exc}")
            return _fail(url, "internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            _guard.reset(token)
        if not out.ok:
            log.info("download_rejected", url=url, reason=out.reason, detail=out.detail)
        return out

    async def ingest_file(self, path: Path, dest_dir: Path) -> DownloadOutcome:
        """A local file (folder provider): same checks, copied into content-addressed storage."""
        src, url = Path(path), str(path)
        try:
            st = src.stat()
        except OSError as exc:
            return _fail(url, "missing_file", f"cannot read {src}: {exc.strerror}")
        if not src.is_file():
            return _fail(url, "not_a_file", f"{src} is not a regular file")
        if st.st_size > self.cfg.download.max_bytes:
            return _fail(
                url,
                "too_large",
                f"{st.st_size} bytes > {self.cfg.download.max_bytes}",
                size=st.st_size,
            )
        tmp = self._tmp_path()
        try:
            digest = hashlib.sha256()
            size = 0
            async with aiofiles.open(src, "rb") as fin, aiofiles.open(tmp, "wb") as fout:
                while chunk := await fin.read(CHUNK):
                    size += len(chunk)
                    digest.update(chunk)
                    await fout.write(chunk)
            step = _Step("ok", tmp=tmp, sha=digest.hexdigest(), size=size)
            return await self._store(url, url, step, Path(dest_dir))
        except OSError as exc:
            return _fail(url, "unreadable", f"cannot copy {src}: {exc.strerror or exc}")
        finally:
            tmp.unlink(missing_ok=True)

    # -- internals

    async def _fetch(self, url: str, dest_dir: Path) -> DownloadOutcome:
        d = self.cfg.download
        current, hops, attempt, seen = url, 0, 0, {url}
        while True:
            bad = self._check_url(current)
            if bad:
                return _fail(url, *bad, final_url=current)
            if d.honor_robots_txt and not await self._robots_allow(current):
                return _fail(
                    url,
                    "robots_txt",
                    f"robots.txt of {urlsplit(current).netloc} disallows this URL",
                    final_url=current,
                )
            step = await self._attempt(current)
            if step.kind == "redirect":
                hops += 1
                if step.location in seen:
                    return _fail(
                        url,
                        "too_many_redirects",
                        f"redirect loop at {step.location}",
                        final_url=current,
                    )
                if hops > d.max_redirects:
                    return _fail(
                        url,
                        "too_many_redirects",
                        f"more than {d.max_redirects} redirects",
                        final_url=current,
                    )
                assert step.location is not None  # a redirect step has its target
                seen.add(step.location)
                current = step.location
                continue
            if step.kind == "retry":
                attempt += 1
                if attempt > d.retries:
                    return _fail(
                        url,
                        step.reason,
                        f"{step.detail} (gave up after {attempt} attempts)",
                        final_url=current,
                    )
                if step.delay is not None:
                    delay = min(step.delay, d.retry_after_max_s)
                else:
                    delay = d.retry_backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.info(
                    "download_retry",
                    url=current,
                    reason=step.reason,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
                continue
            if step.kind == "fail":
                return _fail(
                    url,
                    step.reason,
                    step.detail,
                    final_url=current,
                    content_type=step.content_type,
                    size=step.size,
                )
            try:
                return await self._store(url, current, step, dest_dir)
            finally:
                if step.tmp is not None:
                    step.tmp.unlink(missing_ok=True)

    def _check_url(self, url: str) -> tuple[str, str] | None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            return "bad_url", f"invalid URL: {exc}"
        if parts.scheme.lower() not in ("http", "https"):
            return "bad_scheme", f"scheme {parts.scheme or '(none)'!r} is not http(s)"
        if not host:
            return "bad_url", "URL has no host"
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: checked by the resolver once resolved
        why = self._policy.refuses(host)
        return ("private_address", f"{host} is a {why} address") if why else None

    @contextlib.asynccontextmanager
    async def _slot(self, key: str):
        """Per-host slot first, then a global one: waiting for a busy host holds no global slot."""
        entry = self._hosts.get(key)
        if entry is None:
            entry = self._hosts[key] = [asyncio.Semaphore(self.cfg.download.per_host), 0]
        entry[1] += 1
        try:
            async with entry[0], self._global:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._hosts.pop(key, None)

    def _tmp_path(self) -> Path:
        tmp_dir = self.cfg.tmp_dir
        if not self._swept:
            self._swept = True
            tmp_dir.mkdir(parents=True, exist_ok=True)
            cutoff = time.time() - max(3600.0, 10 * self.cfg.download.total_timeout_s)
            for old in tmp_dir.glob(f"{TMP_PREFIX}*.part"):  # left by a crash
                with contextlib.suppress(OSError):
                    if old.stat().st_mtime < cutoff:
                        old.unlink()
        return tmp_dir / f"{TMP_PREFIX}{uuid.uuid4().hex}.part"

    async def _attempt(self, url: str) -> _Step:  # noqa: C901 - split on the net branch
        d = self.cfg.download
        tmp: Path | None = None
        try:
            async with self._slot(urlsplit(url).netloc.lower()):
                async with self.session.get(
                    url, allow_redirects=False, timeout=self._timeout, headers=self._headers
                ) as resp:
                    st, ctype = resp.status, resp.headers.get("Content-Type")
                    if st in REDIRECT_STATUSES:
                        loc = resp.headers.get("Location")
                        if not loc:
                            return _Step("fail", "http_error", f"HTTP {st} without Location")
                        return _Step("redirect", location=urljoin(url, loc))
                    if st == 429 or st >= 500:
                        return _Step(
                            "retry",
                            f"http_{st}",
                            f"HTTP {st} {resp.reason or ''}".strip(),
                            delay=retry_after_seconds(resp.headers.get("Retry-After")),
                        )
                    if st >= 400:
                        return _Step("fail", f"http_{st}", f"HTTP {st} {resp.reason or ''}".strip())
                    if st not in (200, 203):
                        return _Step("fail", "http_error", f"unexpected HTTP {st}")
                    if d.honor_x_robots_tag:
                        blocked = self._x_robots_blocked(resp.headers.getall("X-Robots-Tag", []))
                        if blocked:
                            return _Step(
                                "fail",
                                "x_robots_tag",
                                f"X-Robots-Tag: {blocked}",
                                content_type=ctype,
                            )
                    length = resp.content_length
                    if length is not None and length > d.max_bytes:
                        return _Step(
                            "fail",
                            "too_large",
                            f"Content-Length {length} > {d.max_bytes}",
                            content_type=ctype,
                            size=length,
                        )
                    tmp = self._tmp_path()
                    digest, size = hashlib.sha256(), 0
                    async with aiofiles.open(tmp, "wb") as f:
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            size += len(chunk)
                            if size > d.max_bytes:
                                return _Step(
                                    "fail",
                                    "too_large",
                                    f"body over {d.max_bytes} bytes",
                                    content_type=ctype,
                                )
                            digest.update(chunk)
                            await f.write(chunk)
                    step = _Step(
                        "ok", tmp=tmp, sha=digest.hexdigest(), size=size, content_type=ctype
                    )
                    tmp = None  # handed over to the caller
                    return step
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                return _Step("fail", "private_address", str(exc.os_error))
            if isinstance(exc, aiohttp.ClientSSLError):
                return _Step("fail", "tls_error", f"TLS: {exc}")
            return _Step("retry", "connection_error", f"cannot connect: {exc}")
        except TimeoutError:
            return _Step(
                "retry",
                "timeout",
                f"timed out (connect {d.connect_timeout_s}s, read "
                f"{d.read_timeout_s}s, total {d.total_timeout_s}s)",
            )
        except aiohttp.InvalidURL as exc:
            return _Step("fail", "bad_url", f"invalid URL: {exc}")
        except (aiohttp.ClientError, OSError) as exc:
            return _Step("retry", "connection_error", f"{type(exc).__name__}: {exc}")
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    async def _store(
        self, url: str, final_url: str, step: _Step, dest_dir: Path
    ) -> DownloadOutcome:
        d = self.cfg.download
        assert step.tmp is not None and step.sha is not None  # an ok step has its body
        reason, detail, fmt, w, h, path = await asyncio.to_thread(
            _finish, step.tmp, step.sha, dest_dir, d.max_pixels, d.min_image_side
        )
        if reason:
            return DownloadOutcome(
                url,
                False,
                reason,
                detail,
                step.sha,
                None,
                final_url,
                step.content_type,
                step.size,
                w,
                h,
                fmt,
            )
        return DownloadOutcome(
            url,
            True,
            None,
            detail,
            step.sha,
            path,
            final_url,
            step.content_type,
            step.size,
            w,
            h,
            fmt,
        )

    def _x_robots_blocked(self, values: list[str]) -> str | None:
        for value in values:
            rest = value
            m = re.match(r"\s*([A-Za-z0-9_.*-]+)\s*:\s*(.*)$", value)
            if m and m.group(1).lower() not in _XR_VALUED:  # "<bot>: directives"
                if m.group(1).lower() not in ("*", self._ua_token):
                    continue
                rest = m.group(2)
            for token in rest.split(","):
                if token.strip().lower() in self._block:
                    return value.strip()
        return None

    async def _robots_allow(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        entry = self._robots.get(origin)
        if entry is None or entry[0] < time.monotonic():
            lock = self._robots_locks.setdefault(origin, asyncio.Lock())
            async with lock:
                entry = self._robots.get(origin)
                if entry is None or entry[0] < time.monotonic():
                    entry = (time.monotonic() + ROBOTS_TTL_S, await self._fetch_robots(origin))
                    self._robots[origin] = entry
                    while len(self._robots) > ROBOTS_CACHE_SIZE:
                        self._robots.popitem(last=False)
            if not lock.locked():
                self._robots_locks.pop(origin, None)
        else:
            self._robots.move_to_end(origin)
        parser = entry[1]
        return parser is None or parser.can_fetch(self.cfg.user_agent, url)

    async def _fetch_robots(self, origin: str) -> RobotFileParser | None:
        """Parsed robots.txt, or None (= everything allowed) when it is missing or unreachable."""
        url = f"{origin}/robots.txt"
        timeout = aiohttp.ClientTimeout(
            total=min(self.cfg.download.total_timeout_s, 30.0),
            sock_connect=self.cfg.download.connect_timeout_s,
            sock_read=self.cfg.download.read_timeout_s,
        )
        try:
            for _ in range(6):
                if self._check_url(url):
                    return None
                async with self._slot(urlsplit(url).netloc.lower()):
                    async with self.session.get(
                        url,
                        allow_redirects=False,
                        timeout=timeout,
                        headers={"User-Agent": self.cfg.user_agent},
                    ) as resp:
                        if resp.status in REDIRECT_STATUSES and resp.headers.get("Location"):
                            url = urljoin(url, resp.headers["Location"])
                            continue
                        if resp.status != 200:
                            return None
                        body = b""
                        while len(body) < ROBOTS_MAX_BYTES:
                            chunk = await resp.content.read(ROBOTS_MAX_BYTES - len(body))
                            if not chunk:
                                break
                            body += chunk
                parser = RobotFileParser(url)
                parser.parse(body.decode("utf-8", errors="replace").splitlines())
                parser.modified()
                return parser
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.debug("robots_txt_unavailable", origin=origin, error=f"{type(exc).__name__}: {exc}")
        return None
