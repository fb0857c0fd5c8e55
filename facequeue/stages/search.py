"""Image search providers behind one small interface: rapidapi, wikimedia, folder.

`make_provider(cfg, session)` picks the provider named by `search.provider`;
`await provider.search(PersonQuery)` returns at most `search.max_results` `SearchResult`s,
ranked from 1. Provider failures raise `ProviderError` (worth retrying later) or
`PermanentStageError` (bad or missing key, wrong endpoint). Keys never reach a log line.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import structlog

from facequeue.config import Config
from facequeue.errors import ConfigError, PermanentStageError, ProviderError
from facequeue.retry import next_delay, retry_after_seconds
from facequeue.stages.addresses import AddressPolicy, BlockedAddress, get_following

log = structlog.get_logger()

MAX_ANSWER_BYTES = 20_000_000
WIKIMEDIA_MIMES = {"image/jpeg", "image/png", "image/webp"}
WIKIMEDIA_PAGE = 50  # gsrlimit allowed to ordinary clients
SIDECAR_SUFFIXES = {".json", ".txt", ".md", ".csv", ".tsv", ".xml", ".yaml", ".yml", ".toml"}


@dataclass(frozen=True)
class PersonQuery:
    name: str
    slug: str
    country: str
    occupation: str | None = None
    search_name: str | None = None  # best spelling for search; default: name


@dataclass(frozen=True)
class SearchResult:
    provider: str
    rank: int
    url: str
    thumbnail_url: str | None
    page_url: str | None
    title: str | None
    width: int | None
    height: int | None
    mime: str | None
    license: str | None
    author: str | None


class Provider(Protocol):
    name: str

    async def search(self, q: PersonQuery) -> list[SearchResult]: ...


def query_text(cfg: Config, q: PersonQuery) -> str:
    """search.query_template filled in, with empty parts collapsed."""
    try:
        text = cfg.search.query_template.format(
            name=q.search_name or q.name, occupation=q.occupation or "", country=q.country or ""
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"search.query_template: bad placeholder {exc} "
            "(use {name}, {occupation}, {country})"
        ) from None
    text = re.sub(r"\(\s*\)|\[\s*\]", " ", text)
    return " ".join(text.split()).strip(" ,;-")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _plain(value: Any) -> str | None:
    """extmetadata values are HTML snippets: strip tags and entities."""
    if not isinstance(value, str):
        return None
    text = html.unescape(re.sub(r"<[^>]+>", " ", value))
    return " ".join(text.split()) or None


async def _get_json(
    session: aiohttp.ClientSession,
    cfg: Config,
    name: str,
    url: str,
    params: dict[str, Any],
    headers: dict[str, str],
    timeout_s: float,
) -> Any:
    """GET + JSON with retries on 429/5xx/network errors; errors carry no secrets."""
    attempts = cfg.search.retries + 1
    where = f"{urlsplit(url).netloc}{urlsplit(url).path}"
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    policy = AddressPolicy(cfg.download.allow_private_addresses, cfg.download.allowed_networks)
    for attempt in range(1, attempts + 1):
        delay = None
        try:
            async with await get_following(
                session, policy, url, params=params, headers=headers, timeout=timeout
            ) as resp:
                status = resp.status
                if status in (401, 403):
                    raise PermanentStageError(
                        f"{name}: HTTP {status} from {where}: "
                        "the API key is missing, invalid or not subscribed"
                    )
                if status == 429 or status >= 500:
                    problem = f"HTTP {status} from {where}"
                    delay = retry_after_seconds(resp.headers.get("Retry-After"))
                elif status >= 400:
                    raise PermanentStageError(
                        f"{name}: HTTP {status} from {where} "
                        "(check the endpoint and parameters in the config)"
                    )
                else:
                    return await _read_json(resp, name, where)
        except (TimeoutError, aiohttp.ClientError, BlockedAddress) as exc:
            problem = _network_problem(exc, where, timeout_s)
        if attempt == attempts:
            log.warning("search_failed", provider=name, problem=problem, attempts=attempts)
            raise ProviderError(f"{name}: {problem} (after {attempts} attempts)")
        delay = next_delay(
            cfg.search.retry_backoff_s, attempt - 1, delay, cfg.download.retry_after_max_s
        )
        log.info(
            "search_retry", provider=name, problem=problem, attempt=attempt, delay_s=round(delay, 3)
        )
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def _read_json(resp: aiohttp.ClientResponse, name: str, where: str) -> Any:
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise ProviderError(f"{name}: answer from {where} is too large")
    try:
        return json.loads(body)
    except ValueError:
        raise ProviderError(f"{name}: malformed JSON from {where}") from None


def _network_problem(exc: BaseException, where: str, timeout_s: float) -> str:
    refused = getattr(exc, "os_error", exc)  # ours, or the connector's on a redirect hop
    if isinstance(refused, BlockedAddress):
        return f"{where} redirected to a refused address ({refused})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {where}"
    if isinstance(exc, asyncio.TimeoutError):
        return f"timeout after {timeout_s}s from {where}"
    return f"{type(exc).__name__} talking to {where}"


def _ranked(results: list[dict[str, Any]], provider: str, limit: int) -> list[SearchResult]:
    """Drop results without a URL and repeats of a URL; rank from 1; cap at limit."""
    out: list[SearchResult] = []
    seen: set[str] = set()
    for r in results:
        if not r.get("url") or r["url"] in seen:
            continue
        seen.add(r["url"])
        out.append(SearchResult(provider=provider, rank=len(out) + 1, **r))
        if len(out) >= limit:
            break
    return out


class RapidApiProvider:
    """RapidAPI Real-Time Image Search (the seed's provider); full-size `url` first."""

    name = "rapidapi"

    def __init__(self, cfg: Config, session: aiohttp.ClientSession) -> None:
        self.cfg, self.session = cfg, session

    async def search(self, q: PersonQuery) -> list[SearchResult]:
        key = self.cfg.secrets.rapidapi_key.get_secret_value()
        if not key:
            raise PermanentStageError("rapidapi: RAPIDAPI_KEY is not set in the environment")
        c = self.cfg.rapidapi
        params = {
            "query": query_text(self.cfg, q),
            "limit": str(c.limit),
            "size": c.size,
            "type": c.type,
            "region": c.region,
        }
        headers = {
            "x-rapidapi-key": key,
            "x-rapidapi-host": c.host,
            "User-Agent": self.cfg.user_agent,
        }
        data = await _get_json(
            self.session,
            self.cfg,
            self.name,
            c.base_url.rstrip("/") + "/search",
            params,
            headers,
            c.timeout_s,
        )
        if not isinstance(data, dict):
            raise ProviderError("rapidapi: answer is not a JSON object")
        status = data.get("status")
        if status not in (None, "OK", "ok"):
            message = (
                _str(data.get("message"))
                or _str(
                    (data.get("error") or {}).get("message")
                    if isinstance(data.get("error"), dict)
                    else data.get("error")
                )
                or ""
            )
            raise ProviderError(f"rapidapi: status {status!r} {message}".strip())
        items = data.get("data")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ProviderError("rapidapi: 'data' is not a list")
        rows = []
        for item in items:
            if not isinstance(item, dict):
                continue
            url, thumb = _str(item.get("url")), _str(item.get("thumbnail_url"))
            rows.append(
                {
                    "url": url or thumb,
                    "thumbnail_url": thumb,
                    "page_url": _str(item.get("source_url")),
                    "title": _str(item.get("title")),
                    "width": _int(item.get("width")),
                    "height": _int(item.get("height")),
                    "mime": None,
                    "license": None,
                    "author": None,
                }
            )
        return _ranked(rows, self.name, self.cfg.search.max_results)


class WikimediaProvider:
    """Wikimedia Commons: full-text search in the File namespace, with imageinfo."""

    name = "wikimedia"

    def __init__(self, cfg: Config, session: aiohttp.ClientSession) -> None:
        self.cfg, self.session = cfg, session

    async def search(self, q: PersonQuery) -> list[SearchResult]:
        c, limit = self.cfg.wikimedia, self.cfg.search.max_results
        params: dict[str, Any] = {
            "action": "query",
            "format": "json",
            "formatversion": "2",
            "generator": "search",
            "gsrsearch": f"{query_text(self.cfg, q)} filetype:bitmap",
            "gsrnamespace": "6",
            "gsrlimit": str(min(WIKIMEDIA_PAGE, max(limit, 10))),
            "prop": "imageinfo",
            "iiprop": "url|size|mime|extmetadata",
            "iiextmetadatafilter": "LicenseShortName|UsageTerms|Artist|Credit",
        }
        if c.thumb_width:
            params["iiurlwidth"] = str(c.thumb_width)
        headers = {"User-Agent": self.cfg.user_agent, "Api-User-Agent": self.cfg.user_agent}
        pages: dict[int | str, dict] = {}
        cont: dict[str, Any] = {}
        for _ in range(limit // WIKIMEDIA_PAGE + 3):  # continuation, bounded
            data = await _get_json(
                self.session,
                self.cfg,
                self.name,
                c.api_url,
                {**params, **cont},
                headers,
                c.timeout_s,
            )
            if not isinstance(data, dict):
                raise ProviderError("wikimedia: answer is not a JSON object")
            if isinstance(data.get("error"), dict):
                err = data["error"]
                raise ProviderError(f"wikimedia: API error {err.get('code')}: {err.get('info')}")
            found = (data.get("query") or {}).get("pages") or []
            if isinstance(found, dict):  # formatversion=1 shape
                found = list(found.values())
            for page in found:
                if isinstance(page, dict):
                    key = page.get("pageid", page.get("title"))
                    merged = pages.setdefault("" if key is None else key, {})
                    merged.update({k: v for k, v in page.items() if v})
            good = sum(1 for p in pages.values() if self._row(p))
            cont = data["continue"] if isinstance(data.get("continue"), dict) else {}
            if not cont or good >= limit:
                break
        ordered = sorted(pages.values(), key=lambda p: _int(p.get("index")) or 10**9)
        rows = [row for row in (self._row(p) for p in ordered) if row]
        return _ranked(rows, self.name, limit)

    @staticmethod
    def _row(page: dict) -> dict[str, Any] | None:
        infos = page.get("imageinfo")
        if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
            return None
        info = infos[0]
        mime = _str(info.get("mime"))
        if not _str(info.get("url")) or (mime and mime not in WIKIMEDIA_MIMES):
            return None
        meta = info["extmetadata"] if isinstance(info.get("extmetadata"), dict) else {}

        def meta_value(field: str) -> str | None:
            entry = meta.get(field)
            return _plain(entry.get("value")) if isinstance(entry, dict) else None

        return {
            "url": info["url"],
            "thumbnail_url": _str(info.get("thumburl")),
            "page_url": _str(info.get("descriptionurl")),
            "title": _str(page.get("title")),
            "width": _int(info.get("width")),
            "height": _int(info.get("height")),
            "mime": mime,
            "license": meta_value("LicenseShortName") or meta_value("UsageTerms"),
            "author": meta_value("Artist") or meta_value("Credit"),
        }


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "_", text).strip("_").casefold()


class FolderProvider:
    """Images already on disk: <folder.root>/<sub-folder matching the slug or name>/*."""

    name = "folder"

    def __init__(self, cfg: Config, session: aiohttp.ClientSession | None = None) -> None:
        self.cfg = cfg

    async def search(self, q: PersonQuery) -> list[SearchResult]:
        return await asyncio.to_thread(self._scan, q)

    def _find(self, root: Path, q: PersonQuery) -> Path | None:
        try:
            subdirs = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError:
            return None
        wanted = [w for w in (q.slug, q.name, q.search_name) if w]
        for exact in wanted:  # exact names first, then case/separator-insensitive
            for d in subdirs:
                if d.name == exact:
                    return d
        norms = {_norm(w) for w in wanted}
        return next((d for d in subdirs if _norm(d.name) in norms), None)

    def _scan(self, q: PersonQuery) -> list[SearchResult]:
        folder = self._find(Path(self.cfg.folder.root), q)
        if folder is None:
            return []
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and p.suffix.lower() not in SIDECAR_SUFFIXES
        )
        rows = [
            {
                "url": str(p.resolve()),
                "thumbnail_url": None,
                "page_url": None,
                "title": p.name,
                "width": None,
                "height": None,
                "mime": None,
                "license": None,
                "author": None,
            }
            for p in files
        ]
        return _ranked(rows, self.name, self.cfg.search.max_results)


PROVIDERS: dict[str, Callable[[Config, aiohttp.ClientSession], Provider]] = {
    "rapidapi": RapidApiProvider,
    "wikimedia": WikimediaProvider,
    "folder": FolderProvider,
}


def make_provider(cfg: Config, session: aiohttp.ClientSession) -> Provider:
    try:
        return PROVIDERS[cfg.search.provider](cfg, session)
    except KeyError:
        raise ConfigError(
            f"search.provider: unknown provider {cfg.search.provider!r} "
            f"(one of {', '.join(PROVIDERS)})"
        ) from None
