"""robots.txt (cached per origin) and X-Robots-Tag rules for the downloader.

`RobotsCache.allows(url)` fetches an origin's robots.txt once per `ROBOTS_TTL_S` through the
downloader's session, slots and address check; a missing or unreachable file allows all.
`x_robots_blocked` reads X-Robots-Tag headers addressed to every bot or to ours.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from urllib.parse import urljoin
from urllib.robotparser import RobotFileParser

import aiohttp
import structlog
from yarl import URL

from facequeue.config import Config
from facequeue.stages.addresses import connect_host

log = structlog.get_logger()

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ROBOTS_TTL_S = 24 * 3600.0
ROBOTS_MAX_BYTES = 512 * 1024
ROBOTS_CACHE_SIZE = 4096
_XR_VALUED = {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}


def x_robots_blocked(values: list[str], ua_token: str, block: set[str]) -> str | None:
    """The X-Robots-Tag value that forbids us this image, or None."""
    for value in values:
        rest = value
        m = re.match(r"\s*([A-Za-z0-9_.*-]+)\s*:\s*(.*)$", value)
        if m and m.group(1).lower() not in _XR_VALUED:  # "<bot>: directives"
            if m.group(1).lower() not in ("*", ua_token):
                continue
            rest = m.group(2)
        for token in rest.split(","):
            if token.strip().lower() in block:
                return value.strip()
    return None


class RobotsCache:
    """Per-origin robots.txt, fetched through the downloader's session and guards."""

    def __init__(
        self,
        cfg: Config,
        session: Callable[[], aiohttp.ClientSession],
        slot: Callable[[str], AbstractAsyncContextManager[None]],
        check_url: Callable[[str | URL], tuple[str, str] | None],
    ) -> None:
        self.cfg = cfg
        self._session = session
        self._slot = slot
        self._check_url = check_url
        self._cache: OrderedDict[str, tuple[float, RobotFileParser | None]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def allows(self, url: URL) -> bool:
        """Whether robots.txt of the URL's origin (scheme, normalised host, port) allows it."""
        origin = f"{url.scheme}://{url.host}:{url.port}".lower()
        entry = self._cache.get(origin)
        if entry is None or entry[0] < time.monotonic():
            lock = self._locks.setdefault(origin, asyncio.Lock())
            async with lock:
                entry = self._cache.get(origin)
                if entry is None or entry[0] < time.monotonic():
                    entry = (time.monotonic() + ROBOTS_TTL_S, await self._fetch(origin))
                    self._cache[origin] = entry
                    while len(self._cache) > ROBOTS_CACHE_SIZE:
                        self._cache.popitem(last=False)
            if not lock.locked():
                self._locks.pop(origin, None)
        else:
            self._cache.move_to_end(origin)
        parser = entry[1]
        return parser is None or parser.can_fetch(self.cfg.user_agent, str(url))

    async def _fetch(self, origin: str) -> RobotFileParser | None:
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
                _, host, port = connect_host(url)
                async with self._slot(f"{host}:{port}"):
                    async with self._session().get(
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
