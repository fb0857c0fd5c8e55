"""Polite concurrent image downloader: limits, retries, deadline, content checks, storage.

One aiohttp session per daemon (`make_session`). `Downloader.fetch` reads a body (memory,
or spooled when large: `stages/bodies.py`), checks it cheaply (`stages/imagecheck.py`; the
analysis worker does the full decode), renames it into content-addressed storage
`dest_dir/<sha[:2]>/<sha>.<ext>` with one thread hop, and returns once it is durable
(batched syncs: `stages/durable.py`). `download.deadline_s` bounds a whole fetch. Address
guard: `stages/addresses.py`; robots: `stages/robots.py`. Every expected failure is a
`DownloadOutcome` with a snake_case `reason`, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import structlog
from yarl import URL

from facequeue.config import Config
from facequeue.files import local_io_error, owner_is_dead, owner_tag, temp_name
from facequeue.retry import next_delay, retry_after_seconds
from facequeue.stages.addresses import (
    AddressPolicy,
    BlockedAddress,
    GuardedConnector,
    check_url,
    guard,
)
from facequeue.stages.bodies import Body, TooLarge, place, read_file, read_response
from facequeue.stages.durable import SyncBatcher
from facequeue.stages.imagecheck import FORMATS, check_image, inspect_image
from facequeue.stages.robots import REDIRECT_STATUSES, RobotsCache, x_robots_blocked

__all__ = ["FORMATS", "DownloadOutcome", "Downloader", "check_image", "make_session"]

log = structlog.get_logger()

TMP_PREFIX = "dl-"
# The running fetch's deadline (asyncio.timeout), armed by the first slot it gets.
_deadline: contextvars.ContextVar[asyncio.Timeout | None] = contextvars.ContextVar(
    "facequeue_download_deadline", default=None
)
ACCEPT = "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8"


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
    reason: str,
    detail: str,
    final_url: str | None = None,
    content_type: str | None = None,
    size: int | None = None,
) -> DownloadOutcome:
    return DownloadOutcome(
        url, False, reason, detail, None, None, final_url, content_type, size, None, None, None
    )


def make_session(cfg: Config) -> aiohttp.ClientSession:
    """The daemon's single HTTP session: connector limits, address guard, User-Agent."""
    d = cfg.download
    connector = GuardedConnector(limit=d.concurrency, limit_per_host=d.per_host)
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


@dataclass
class _Step:
    kind: str  # ok | fail | retry | redirect
    reason: str | None = None
    detail: str | None = None
    delay: float | None = None
    location: str | None = None
    body: Body | None = None
    size: int | None = None
    content_type: str | None = None


def _network_error(exc: Exception) -> _Step:
    """A failed transfer is retried; a write that failed on our own disk fails the stage."""
    local = None if isinstance(exc, aiohttp.ClientError) else local_io_error(exc)
    if local is not None:
        raise local from None
    return _Step("retry", "connection_error", f"{type(exc).__name__}: {exc}")


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
        self._hosts: dict[str, list] = {}  # host:port -> [Semaphore, users]; dropped when unused
        self._robots = RobotsCache(cfg, lambda: self.session, self._slot, self._check_url)
        self._ua_token = (cfg.user_agent.split("/")[0].split() or ["*"])[0].lower()
        self._block = {v.strip().lower() for v in d.x_robots_block}
        self._sync = SyncBatcher()
        self._swept = False
        # owner-tagged (host~pid) so a sweep on shared storage removes only dead owners' temps
        self._tmp_token, self._tmp_count = f"{owner_tag()}~{uuid.uuid4().hex[:8]}", count()
        self._tmp_dir = str(cfg.tmp_dir)

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
        token = guard.set(self._policy)
        deadline = self.cfg.download.deadline_s
        try:
            # Armed when the fetch first holds a slot (see _slot): waiting behind a busy host
            # does not count; retries, redirects and slow bodies do. Storing is local: after.
            async with asyncio.timeout(None) as cm:
                token_cm = _deadline.set(cm)
                try:
                    got = await self._fetch(url)
                finally:
                    _deadline.reset(token_cm)
            out = (
                got if isinstance(got, DownloadOutcome) else await self._store(url, *got, dest_dir)
            )
        except TimeoutError:
            out = _fail(url, "deadline", f"not done within download.deadline_s = {deadline:g} s")
        except Exception as exc:  # noqa: BLE001 - a bug must not take the batch down
            if (local := local_io_error(exc)) is not None:
                raise local from None
            log.error("download_internal_error", url=url, error=f"{type(exc).__name__}: {exc}")
            return _fail(url, "internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            guard.reset(token)
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
        if st.st_size > (cap := self.cfg.download.max_bytes):
            return _fail(url, "too_large", f"{st.st_size} bytes > {cap}", size=st.st_size)
        try:
            body = await asyncio.to_thread(read_file, src, self._tmp_path())
        except OSError as exc:
            if (local := local_io_error(exc)) is not None and exc.filename != str(src):
                raise local from None  # our disk (the spool), not the source file
            return _fail(url, "unreadable", f"cannot read {src}: {exc.strerror or exc}")
        return await self._store(url, url, _Step("ok", body=body, size=body.size), Path(dest_dir))

    # -- internals

    async def _fetch(self, url: str) -> DownloadOutcome | tuple[str, _Step]:
        """A failure, or (final URL, step holding the body) to be stored."""
        d = self.cfg.download
        current, hops, attempt, seen = url, 0, 0, {url}
        while True:
            try:
                u = URL(current)  # parsed once per hop: checked, then handed to aiohttp as is
            except (ValueError, TypeError) as exc:
                return _fail(url, "bad_url", f"invalid URL: {exc}", final_url=current)
            bad = check_url(self._policy, u)
            if bad:
                return _fail(url, *bad, final_url=current)
            if d.honor_robots_txt and not await self._robots.allows(u):
                why = f"robots.txt of {u.host} disallows this URL"
                return _fail(url, "robots_txt", why, final_url=current)
            step = await self._attempt(u)
            if step.kind == "redirect":
                hops, location = hops + 1, step.location or ""
                if location in seen:
                    why = f"redirect loop at {location}"
                    return _fail(url, "too_many_redirects", why, final_url=current)
                if hops > d.max_redirects:
                    why = f"more than {d.max_redirects} redirects"
                    return _fail(url, "too_many_redirects", why, final_url=current)
                seen.add(location)
                current = location
                continue
            if step.kind == "retry":
                attempt += 1
                if attempt > d.retries:
                    why = f"{step.detail} (gave up after {attempt} attempts)"
                    return _fail(url, step.reason or "error", why, final_url=current)
                await self._back_off(current, step, attempt)
                continue
            if step.kind == "fail":
                return _fail(
                    url,
                    step.reason or "error",
                    step.detail or "",
                    final_url=current,
                    content_type=step.content_type,
                    size=step.size,
                )
            return current, step

    async def _back_off(self, url: str, step: _Step, attempt: int) -> None:
        d = self.cfg.download
        delay = next_delay(d.retry_backoff_s, attempt - 1, step.delay, d.retry_after_max_s)
        log.info(
            "download_retry", url=url, reason=step.reason, attempt=attempt, delay_s=round(delay, 3)
        )
        await asyncio.sleep(delay)

    def _check_url(self, url: str | URL) -> tuple[str, str] | None:
        return check_url(self._policy, url)

    @contextlib.asynccontextmanager
    async def _slot(self, key: str) -> AsyncIterator[None]:
        """Per-host slot first, then a global one: waiting for a busy host holds no global slot."""
        entry = self._hosts.get(key)
        if entry is None:
            entry = self._hosts[key] = [asyncio.Semaphore(self.cfg.download.per_host), 0]
        entry[1] += 1
        try:
            async with entry[0], self._global:
                cm = _deadline.get()
                if cm is not None and cm.when() is None:
                    loop = asyncio.get_running_loop()
                    cm.reschedule(loop.time() + self.cfg.download.deadline_s)
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._hosts.pop(key, None)

    def _tmp_name(self) -> str:
        """A temp file path as a string (cheap: Path objects cost more than the write)."""
        if not self._swept:
            self._tmp_path()
        return f"{self._tmp_dir}/.{TMP_PREFIX}{next(self._tmp_count)}.{self._tmp_token}.part"

    def _tmp_path(self) -> Path:
        tmp_dir = self.cfg.tmp_dir
        if not self._swept:
            self._swept = True
            tmp_dir.mkdir(parents=True, exist_ok=True)
            cutoff = time.time() - max(3600.0, 10 * self.cfg.download.total_timeout_s)
            for old in tmp_dir.glob("*.part"):  # left by a crash (ours or another host's)
                with contextlib.suppress(OSError):
                    dead = owner_is_dead(old)
                    if dead or (dead is None and old.stat().st_mtime < cutoff):
                        old.unlink()
        return tmp_dir / temp_name(TMP_PREFIX.rstrip("-"), "part")

    async def _attempt(self, url: URL) -> _Step:
        d = self.cfg.download
        try:
            async with self._slot(f"{url.host}:{url.port}"):
                async with self.session.get(
                    url, allow_redirects=False, timeout=self._timeout, headers=self._headers
                ) as resp:
                    return await self._answer(url, resp)
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
            return _network_error(exc)  # a spool write on our full disk fails the stage

    async def _answer(self, url: URL, resp: aiohttp.ClientResponse) -> _Step:
        d = self.cfg.download
        st, ctype = resp.status, resp.headers.get("Content-Type")
        if st in REDIRECT_STATUSES:
            loc = resp.headers.get("Location")
            if not loc:
                return _Step("fail", "http_error", f"HTTP {st} without Location")
            return _Step("redirect", location=urljoin(str(url), loc))
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
                return _Step("fail", "x_robots_tag", f"X-Robots-Tag: {blocked}", content_type=ctype)
        length = resp.content_length
        if length is not None and length > d.max_bytes:
            why = f"Content-Length {length} > {d.max_bytes}"
            return _Step("fail", "too_large", why, content_type=ctype, size=length)
        try:
            body = await read_response(resp, d.max_bytes, self._tmp_path)
        except TooLarge as exc:
            return _Step("fail", "too_large", str(exc), content_type=ctype)
        return _Step("ok", body=body, size=body.size, content_type=ctype)

    async def _store(
        self, url: str, final_url: str, step: _Step, dest_dir: Path
    ) -> DownloadOutcome:
        d, body = self.cfg.download, step.body
        assert body is not None
        path = None
        try:
            if body.data is not None:  # in memory: checked on the event loop, microseconds
                check = inspect_image(body.data, d.max_pixels, d.min_image_side)
            else:
                spool = body.spool or Path()
                check = await asyncio.to_thread(
                    inspect_image, spool, d.max_pixels, d.min_image_side
                )
            if check.reason is None:
                ext, tmp = check.extension, self._tmp_name()
                # durable when this returns, before the caller records a row for it
                path = await self._sync.write(lambda: place(body, dest_dir, ext, tmp))
        finally:
            body.discard()
        return DownloadOutcome(
            url,
            check.reason is None,
            check.reason,
            check.detail,
            body.digest(),
            path,
            final_url,
            step.content_type,
            step.size,
            check.width,
            check.height,
            check.format,
        )

    def _x_robots_blocked(self, values: list[str]) -> str | None:
        return x_robots_blocked(values, self._ua_token, self._block)
