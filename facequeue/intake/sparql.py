"""A SPARQL 1.1 protocol client (aiohttp) for Wikidata's query service or any mirror.

Every query declares its prefixes, so a plain SPARQL 1.1 endpoint (a mirror, QLever,
Oxigraph) answers it too: WDQS predeclares `wd:`, `wdt:`... and nothing else does.
Retries: 429/5xx, dropped connections and malformed answers, with backoff. A query that
times out on the server (WDQS stops every query at 60 s: HTTP 500 with a
`TimeoutException`, or 504 from its proxy) would time out again: it gets one retry, then
`WikidataTimeout` says so.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import aiohttp
import structlog

from facequeue.config import Config
from facequeue.errors import WikidataError, WikidataTimeout
from facequeue.retry import next_delay, retry_after_seconds

log = structlog.get_logger("facequeue.intake.sparql")

PREFIXES = {
    "wd": "http://www.wikidata.org/entity/",
    "wdt": "http://www.wikidata.org/prop/direct/",
    "wikibase": "http://wikiba.se/ontology#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
}
PROLOGUE = "".join(f"PREFIX {name}: <{iri}>\n" for name, iri in PREFIXES.items())
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 120.0
TIMEOUT_RETRIES = 1  # a query that timed out is tried once more, never max_retries times
_LANG = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")
# A Java exception line as WDQS (Blazegraph) writes it: "...ExecutionException: ...
# org.openrdf.query.MalformedQueryException: Encountered ..." (after the echoed query).
_JAVA_EXC = re.compile(r"(?:[\w$]+\.)*([\w$]+(?:Exception|Error)):\s*")

# What an attempt's failure was, for the retry log and the final message.
OnRetry = Callable[[str, int, str], None]


def literal(text: str, lang: str | None = None) -> str:
    """A SPARQL string literal; quotes, backslashes and line breaks escaped."""
    body = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    if lang is not None:
        if not _LANG.fullmatch(lang):
            raise ValueError(f"bad language code {lang!r}")
        return f'"{body}"@{lang}'
    return f'"{body}"'


def is_language(code: str) -> bool:
    return bool(_LANG.fullmatch(code))


def error_reason(body: bytes, limit: int = 300) -> str:
    """The endpoint's reason for refusing a query, not the query it echoes back.

    WDQS answers "SPARQL-QUERY: queryStr=<the query>" then a Java stack trace; the
    innermost exception's message is the reason. Other endpoints send a short text."""
    text = body.decode("utf-8", "replace")
    for line in text.splitlines():
        found = list(_JAVA_EXC.finditer(line))
        if found:
            name, rest = found[-1].group(1), line[found[-1].end() :].strip()
            return f"{name}: {rest}"[:limit] if rest else name
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.lstrip().startswith(("SPARQL-QUERY", "PREFIX", "#"))
    ]
    if "<html" in text.lower():
        lines = [re.sub(r"<[^>]+>", " ", text)]
    return " ".join(" ".join(lines[:3]).split())[:limit] or "(no reason given)"


def is_timeout(status: int, body: bytes) -> bool:
    return status == 504 or (status == 500 and b"TimeoutException" in body)


class Sparql:
    """`async with Sparql(cfg) as sp: rows = await sp.select(query, "people")`."""

    def __init__(self, cfg: Config, on_retry: OnRetry | None = None) -> None:
        self.cfg = cfg
        self.url = cfg.wikidata.sparql_url
        self.session: aiohttp.ClientSession | None = None
        self.on_retry = on_retry

    async def __aenter__(self) -> Sparql:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.wikidata.timeout_s),
            headers={
                "User-Agent": self.cfg.user_agent,
                "Accept": "application/sparql-results+json",
            },
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def _attempt(self, query: str, kind: str) -> list[dict[str, str]]:
        """One POST: the rows, or an exception saying whether a retry may help."""
        assert self.session is not None, "use `async with Sparql(cfg)`"
        async with self.session.post(self.url, data={"query": PROLOGUE + query}) as resp:
            body = await resp.read()
            if is_timeout(resp.status, body):
                raise _TimedOut(f"HTTP {resp.status}")
            if resp.status in RETRY_STATUS:
                retry_after = retry_after_seconds(
                    resp.headers.get("Retry-After"), MAX_RETRY_AFTER_S
                )
                raise _Retry(f"HTTP {resp.status}: {error_reason(body, 120)}", retry_after)
            if resp.status >= 400:
                raise WikidataError(
                    f"{self.url} refused the {kind} query: HTTP {resp.status}: {error_reason(body)}"
                )
            return _bindings(body)

    async def select(self, query: str, kind: str) -> list[dict[str, str]]:
        """Run a SELECT; rows as {variable: value}. Retries 429/5xx/dropped/garbage."""
        attempts = self.cfg.wikidata.max_retries + 1
        timeouts = 0
        last = ""
        for attempt in range(attempts):
            retry_after = None
            try:
                return await self._attempt(query, kind)
            except _TimedOut as exc:
                timeouts += 1
                last = f"timed out ({exc})"
                if timeouts > TIMEOUT_RETRIES or attempt + 1 >= attempts:
                    raise self._timeout_error(kind, last) from None
            except TimeoutError:
                timeouts += 1
                last = f"no answer within {self.cfg.wikidata.timeout_s:g} s"
                if timeouts > TIMEOUT_RETRIES or attempt + 1 >= attempts:
                    raise self._timeout_error(kind, last) from None
            except _Retry as exc:
                last, retry_after = str(exc), exc.retry_after
            except (aiohttp.ClientError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}".rstrip(": ")
            except _BadAnswer as exc:
                last = str(exc)
            if attempt + 1 < attempts:
                delay = next_delay(self.cfg.wikidata.retry_backoff_s, attempt, retry_after)
                log.warning("wikidata_retry", query=kind, attempt=attempt + 1, error=last)
                if self.on_retry is not None:
                    self.on_retry(kind, attempt + 1, last)
                await asyncio.sleep(delay)
        raise WikidataError(
            f"Wikidata ({self.url}) gave no usable answer to the {kind} query "
            f"after {attempts} attempt(s): {last}"
        )

    def _timeout_error(self, kind: str, last: str) -> WikidataTimeout:
        return WikidataTimeout(
            f"the {kind} query timed out at {self.url} ({last}); the endpoint stops "
            "long queries (WDQS after 60 s): try a smaller --count or fewer occupations, "
            "or again later when it is less busy"
        )


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _TimedOut(Exception):
    pass


class _BadAnswer(Exception):
    pass


def _bindings(body: bytes) -> list[dict[str, str]]:
    try:
        data = json.loads(body)
        rows = data["results"]["bindings"]
        return [{var: cell["value"] for var, cell in row.items()} for row in rows]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _BadAnswer(
            f"not a SPARQL JSON result ({type(exc).__name__}: "
            f"{body[:80].decode('utf-8', 'replace')!r})"
        ) from None
