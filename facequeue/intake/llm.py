"""Names from an OpenAI-compatible LLM, in two passes with structured output.

Pass 1 lists the best-known people of an occupation in a country; pass 2 (a separate
request) judges each name: a real person? from that country? Only names judged both are
kept; LLMs do invent people. The official `openai` package does the HTTP (base_url from
config, so any OpenAI-compatible server works); its own retries are off and ours retry
garbage, truncated or refused answers as well as timeouts, 429 and 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import unicodedata
from typing import TypeVar
from urllib.parse import urlsplit

import openai
import structlog
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from facequeue.config import Config
from facequeue.errors import ConfigError, InputError, LlmError, WikidataError
from facequeue.intake import wikidata
from facequeue.intake.names import Dropped, Found, Plan, build_plan, gather_all, with_cross_checks
from facequeue.retry import next_delay, retry_after_seconds

log = structlog.get_logger("facequeue.intake.llm")
M = TypeVar("M", bound=BaseModel)
# The openai package's HTTP client logs every request at INFO; ours says what matters.
for _name in ("httpx", "httpx2"):
    logging.getLogger(_name).setLevel(logging.WARNING)

NO_KEY = "no-key-needed"  # sent to keyless local servers (the client insists on one)
MAX_RETRY_AFTER_S = 120.0

GENERATE_SYSTEM = (
    "You compile lists of well-known public figures for a face-recognition dataset. Given a "
    "country, an occupation and a count, list up to `count` of the best-known real people of "
    "that occupation who are from that country (citizens or nationals), most famous first. "
    "Write each full name as it is usually written in that country, with its diacritics or "
    "native script. Never invent anyone: list fewer people when unsure. Set "
    "country_recognized to false when the country is not a real country, and country_name "
    "to the country's usual English name."
)
VALIDATE_SYSTEM = (
    "You check names that another model listed as well-known people of an occupation from a "
    "country. For every name give one verdict, copying the name exactly: `real` is true only "
    "for a real, widely recognised person; `from_country` is true only if that person is a "
    "citizen or national of the given country. Give a short reason. Be strict: when unsure, "
    "answer false."
)

GENERATE_SCHEMA = {
    "type": "object",
    "properties": {
        "country_recognized": {"type": "boolean"},
        "country_name": {"type": "string"},
        "people": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["country_recognized", "country_name", "people"],
    "additionalProperties": False,
}
VALIDATE_SCHEMA = {
    "type": "object",
    "properties": {
        "verdicts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "real": {"type": "boolean"},
                    "from_country": {"type": "boolean"},
                    "reason": {"type": "string"},
                },
                "required": ["name", "real", "from_country", "reason"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["verdicts"],
    "additionalProperties": False,
}


class _Person(BaseModel):
    name: str


class Generation(BaseModel):
    country_recognized: bool
    country_name: str = ""
    people: list[_Person]


class Verdict(BaseModel):
    name: str
    real: bool
    from_country: bool
    reason: str = ""


class Validation(BaseModel):
    verdicts: list[Verdict]


class _BadAnswer(Exception):
    """An answer that is not usable (retried)."""


def make_client(cfg: Config) -> AsyncOpenAI:
    """The async client: key from OPENAI_API_KEY; keyless local servers get a placeholder."""
    key = cfg.secrets.openai_api_key.get_secret_value()
    host = (urlsplit(cfg.llm.base_url).hostname or "").lower()
    if not key:
        if host == "openai.com" or host.endswith(".openai.com"):
            raise ConfigError(
                f"OPENAI_API_KEY is not set (needed for {cfg.llm.base_url}); "
                "export it, or set llm.base_url to a server that needs no key"
            )
        key = NO_KEY
    return AsyncOpenAI(
        api_key=key, base_url=cfg.llm.base_url, timeout=cfg.llm.timeout_s, max_retries=0
    )


def _norm(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def _parse(resp: object, model_cls: type[M]) -> M:
    if not isinstance(resp, ChatCompletion) or not resp.choices:
        raise _BadAnswer("not a chat completion")
    choice = resp.choices[0]
    message = choice.message
    refusal = getattr(message, "refusal", None) if message is not None else None
    if refusal:
        raise _BadAnswer(f"the model refused: {str(refusal)[:200]}")
    if choice.finish_reason == "length":
        raise _BadAnswer("the answer was cut off (finish_reason=length)")
    if choice.finish_reason == "content_filter":
        raise _BadAnswer("the answer was filtered (finish_reason=content_filter)")
    content = message.content if message is not None else None
    if not content or not content.strip():
        raise _BadAnswer("empty answer")
    try:
        data = json.loads(content)
    except ValueError:
        raise _BadAnswer(f"malformed JSON: {content[:80]!r}") from None
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise _BadAnswer(f"JSON does not match the schema: {exc.errors()[0]['msg']}") from None


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    return retry_after_seconds(headers.get("retry-after"), MAX_RETRY_AFTER_S)


class Llm:
    """Two-pass name lists: `async with Llm(cfg) as llm: await llm.names(country, occ, n)`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.client = make_client(cfg)

    async def __aenter__(self) -> Llm:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()

    async def ask(
        self,
        what: str,
        system: str,
        user: dict,
        schema_name: str,
        schema: dict,
        model_cls: type[M],
    ) -> M:
        """One structured-output request, retried with backoff; LlmError when it never works."""
        cfg = self.cfg.llm
        attempts = cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            retry_after = None
            try:
                resp = await self.client.chat.completions.create(
                    model=cfg.model,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": json.dumps(user, ensure_ascii=False)},
                    ],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": schema_name, "strict": True, "schema": schema},
                    },
                )
                return _parse(resp, model_cls)
            except openai.AuthenticationError:
                raise LlmError(
                    f"{cfg.base_url} rejected the API key (HTTP 401): check OPENAI_API_KEY"
                ) from None
            except openai.RateLimitError as exc:
                if getattr(exc, "code", None) == "insufficient_quota":
                    raise LlmError(f"{cfg.base_url}: the account's quota is used up") from None
                last, retry_after = "HTTP 429 (rate limited)", _retry_after(exc)
            except openai.APITimeoutError:
                last = f"no answer within {cfg.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                last = f"cannot connect to {cfg.base_url}: {exc}"
            except openai.APIStatusError as exc:
                if exc.status_code not in (408, 409) and exc.status_code < 500:
                    raise LlmError(
                        f"{cfg.base_url} refused the {what} request for model "
                        f"{cfg.model}: HTTP {exc.status_code}: "
                        f"{str(exc.message)[:200]}"
                    ) from None
                last, retry_after = f"HTTP {exc.status_code}", _retry_after(exc)
            except (openai.APIResponseValidationError, ValueError) as exc:
                last = f"malformed response: {str(exc)[:120]}"
            except _BadAnswer as exc:
                last = str(exc)
            if attempt + 1 < attempts:
                delay = next_delay(cfg.retry_backoff_s, attempt, retry_after)
                log.warning(
                    "llm_retry", what=what, attempt=attempt + 1, error=last, delay_s=round(delay, 3)
                )
                await asyncio.sleep(delay)
        raise LlmError(
            f"no usable {what} answer from {cfg.model} at {cfg.base_url} after "
            f"{attempts} attempt(s): {last}"
        )

    async def generate(self, country: str, occupation: str, count: int) -> Generation:
        return await self.ask(
            f"name list ({occupation})",
            GENERATE_SYSTEM,
            {"country": country, "occupation": occupation, "count": count},
            "people_list",
            GENERATE_SCHEMA,
            Generation,
        )

    async def validate(self, country: str, occupation: str, names: list[str]) -> Validation:
        return await self.ask(
            f"validation ({occupation})",
            VALIDATE_SYSTEM,
            {"country": country, "occupation": occupation, "names": names},
            "name_verdicts",
            VALIDATE_SCHEMA,
            Validation,
        )

    async def names(
        self, country: str, occupation: str, count: int
    ) -> tuple[Generation, list[str], list[Dropped]]:
        """Both passes for one occupation: (generation, kept names, dropped names)."""
        gen = await self.generate(country, occupation, count)
        if not gen.country_recognized:
            raise InputError(f"unknown country {country!r}: the LLM does not know it as a country")
        names: dict[str, str] = {}
        for person in gen.people:
            text = " ".join(person.name.split())
            if text and _norm(text) not in names:
                names[_norm(text)] = text
        candidates = list(names.values())[:count]
        if not candidates:
            return gen, [], []
        verdicts = {
            _norm(v.name): v
            for v in (await self.validate(country, occupation, candidates)).verdicts
        }
        kept, dropped = [], []
        for name in candidates:
            verdict = verdicts.get(_norm(name))
            if verdict is None:
                dropped.append(Dropped(name, occupation, "no verdict in the validation pass"))
            elif not verdict.real:
                dropped.append(Dropped(name, occupation, f"not a real person: {verdict.reason}"))
            elif not verdict.from_country:
                dropped.append(Dropped(name, occupation, f"not from {country}: {verdict.reason}"))
            else:
                kept.append(name)
        log.info("llm_names", occupation=occupation, listed=len(candidates), kept=len(kept))
        return gen, kept, dropped


async def plan_country(cfg: Config, country: str, occupations: list[str], count: int) -> Plan:
    """The `--source llm` plan: two passes per occupation, then the Wikidata cross-check."""
    async with Llm(cfg) as llm:  # a missing key fails here, before any request
        place = None
        unreachable = None
        if cfg.wikidata.cross_check:
            async with wikidata.Wikidata(cfg) as wd:
                try:
                    place = await wd.resolve_country(country)
                except WikidataError as exc:
                    unreachable = str(exc)
                    log.warning("wikidata_unreachable", error=unreachable)
        asked = place.label if place else country
        results = await gather_all(
            [llm.names(asked, occ, count) for occ in occupations], cfg.llm.concurrency
        )
    canonical = (
        place.label
        if place
        else next(
            (g.country_name.strip() for g, _, _ in results if g.country_name.strip()), country
        )
    )
    found = [
        Found(name, occ)
        for occ, (_, kept, _) in zip(occupations, results, strict=True)
        for name in kept
    ]
    dropped = [d for _, _, ds in results for d in ds]
    notes = []
    if place is not None and found:
        async with wikidata.Wikidata(cfg) as wd:
            checks = await wd.cross_check(list(dict.fromkeys(f.name for f in found)), place)
        found = with_cross_checks(found, checks)
    elif unreachable:
        found = with_cross_checks(found, {f.name: ("unreachable", None, None) for f in found})
        notes.append(f"Wikidata cross-check skipped: {unreachable}")
    plan = build_plan(canonical, f"llm:{cfg.llm.model}", found, dropped)
    plan.notes.extend(notes)
    return plan
