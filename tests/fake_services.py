"""Local stand-ins for the OpenAI API and Wikidata's SPARQL endpoint, on 127.0.0.1.

They speak the real wire formats (OpenAI chat completions JSON; SPARQL 1.1 JSON results,
application/sparql-results+json) so the project's real clients (`openai.AsyncOpenAI` with
`base_url`, aiohttp) talk to them. Reusable by any test:

    async with FakeOpenAI(CelebrityLlm(...)) as llm:       # llm.base_url -> ".../v1"
        llm.script.append(Status(500))                    # the next request fails
    async with FakeWikidata(serbia_world()) as wd:         # wd.url -> ".../sparql"

`script` replies are served first, in order; then the responder answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

# -- scripted replies ------------------------------------------------------------------


@dataclass
class Status:
    """An HTTP error status with an OpenAI-style (or given) error body."""

    status: int
    body: Any = None
    headers: dict = field(default_factory=dict)


@dataclass
class Raw:
    """A raw HTTP 200 body (garbage, truncated JSON...)."""

    body: bytes
    content_type: str = "application/json"


@dataclass
class Content:
    """A chat completion whose message content is `text` (malformed JSON, refusal, cut off)."""

    text: str | None
    finish_reason: str = "stop"
    refusal: str | None = None


@dataclass
class Delay:
    """Wait `seconds`, then give `then` (a hang when longer than the client's timeout)."""

    seconds: float
    then: Any = None


def chat_completion(
    content: str | None,
    model: str = "fake-model",
    finish_reason: str = "stop",
    refusal: str | None = None,
) -> dict:
    return {
        "id": f"chatcmpl-fake{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


class _Server:
    path = "/"

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: deque = deque()
        self._server: TestServer | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def __aenter__(self):
        self._server = TestServer(self.app(), host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._server.close()

    @property
    def root(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    async def _scripted(self, reply: Any, render: Callable[[Any], web.StreamResponse]):
        if isinstance(reply, Delay):
            await asyncio.sleep(reply.seconds)
            reply = reply.then
        if isinstance(reply, Status):
            body = (
                reply.body
                if reply.body is not None
                else {
                    "error": {
                        "message": f"fake error {reply.status}",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            text = body if isinstance(body, str) else json.dumps(body)
            return web.Response(
                status=reply.status,
                text=text,
                headers=reply.headers,
                content_type="application/json",
            )
        if isinstance(reply, Raw):
            return web.Response(body=reply.body, content_type=reply.content_type)
        return render(reply)


# -- OpenAI ----------------------------------------------------------------------------


class FakeOpenAI(_Server):
    """POST /v1/chat/completions. A responder gets the request JSON and returns a dict
    (sent as the JSON content of the message), a Content, Status, Raw or Delay."""

    def __init__(self, responder: Callable[[dict], Any] | None = None) -> None:
        super().__init__()
        self.responder = responder or (lambda body: Status(500))
        self.headers: list[dict] = []

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.script.popleft() if self.script else self.responder(body)
        model = body.get("model", "fake-model")

        def render(reply: Any) -> web.Response:
            if isinstance(reply, Content):
                data = chat_completion(reply.text, model, reply.finish_reason, reply.refusal)
            else:
                data = chat_completion(json.dumps(reply, ensure_ascii=False), model)
            return web.json_response(data)

        return await self._scripted(reply, render)


def schema_name(body: dict) -> str:
    return body.get("response_format", {}).get("json_schema", {}).get("name", "")


def user_json(body: dict) -> dict:
    return json.loads(next(m["content"] for m in body["messages"] if m["role"] == "user"))


@dataclass
class CelebrityLlm:
    """A responder that knows a small world: which names it lists per (country, occupation),
    which of those it invents (judged not real in pass 2) or misplaces (not from the country)."""

    people: dict[tuple[str, str], list[str]]
    invented: set[str] = field(default_factory=set)
    foreign: set[str] = field(default_factory=set)
    countries: dict[str, str] = field(default_factory=dict)  # lower-case alias -> English name

    def __call__(self, body: dict) -> dict:
        ask = user_json(body)
        country = ask["country"]
        if schema_name(body) == "name_verdicts":
            return {
                "verdicts": [
                    {
                        "name": n,
                        "real": n not in self.invented,
                        "from_country": n not in self.foreign,
                        "reason": "invented" if n in self.invented else "ok",
                    }
                    for n in ask["names"]
                ]
            }
        known = self.countries.get(country.casefold())
        names = self.people.get((country.casefold(), ask["occupation"].casefold()), [])
        return {
            "country_recognized": known is not None,
            "country_name": known or "",
            "people": [{"name": n} for n in names[: ask["count"]]],
        }


# -- Wikidata SPARQL -------------------------------------------------------------------

ENTITY = "http://www.wikidata.org/entity/"
XSD_INT = "http://www.w3.org/2001/XMLSchema#integer"
XSD_BOOL = "http://www.w3.org/2001/XMLSchema#boolean"
_LIT = r'"((?:[^"\\]|\\.)*)"'


@dataclass
class WdItem:
    qid: str
    labels: dict[str, str]  # language -> label
    aliases: dict[str, list[str]] = field(default_factory=dict)
    sitelinks: int = 10
    kind: str = "human"  # human | country | occupation
    citizenship: tuple[str, ...] = ()
    occupations: tuple[str, ...] = ()
    subclass_of: tuple[str, ...] = ()  # occupations: P279
    languages: tuple[str, ...] = ()  # countries: P37/P424 codes
    image: str | None = None  # P18, as WDQS gives it (http://...FilePath)

    def names(self, lang: str | None = None) -> list[str]:
        if lang is None:
            return list(self.labels.values()) + [a for v in self.aliases.values() for a in v]
        return ([self.labels[lang]] if lang in self.labels else []) + self.aliases.get(lang, [])


def uri(qid: str) -> dict:
    return {"type": "uri", "value": ENTITY + qid}


def lit(value: Any, lang: str | None = None, datatype: str | None = None) -> dict:
    cell = {"type": "literal", "value": str(value)}
    if lang:
        cell["xml:lang"] = lang
    if datatype:
        cell["datatype"] = datatype
    return cell


def sparql_json(variables: list[str], rows: list[dict]) -> dict:
    return {"head": {"vars": variables}, "results": {"bindings": rows}}


class FakeWikidata(_Server):
    """GET/POST /sparql answering facequeue's queries (recognised by their first-line
    `# facequeue: <kind>` comment) from a small in-memory graph."""

    def __init__(self, items: list[WdItem] | None = None) -> None:
        super().__init__()
        self.items = {i.qid: i for i in (items or [])}

    @property
    def url(self) -> str:
        return self.root + "/sparql"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/sparql", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            if request.content_type == "application/sparql-query":
                query = await request.text()
            else:
                query = (await request.post()).get("query", "")
        else:
            query = request.query.get("query", "")
        self.requests.append({"query": query, "headers": dict(request.headers)})
        reply = self.script.popleft() if self.script else self.answer(query)

        def render(reply: Any) -> web.Response:
            return web.Response(
                text=json.dumps(reply, ensure_ascii=False),
                content_type="application/sparql-results+json",
            )

        return await self._scripted(reply, render)

    def answer(self, query: str) -> Any:
        match = re.match(r"#\s*facequeue:\s*(\w+)", query)
        kind = match.group(1) if match else ""
        handler = getattr(self, f"_q_{kind}", None)
        if handler is None:
            return Status(400, "MalformedQueryException: unknown query")
        return handler(query)

    def _of(self, kind: str) -> list[WdItem]:
        return [i for i in self.items.values() if i.kind == kind]

    def _q_country_by_label(self, query: str) -> dict:
        wanted = json.loads(
            '"' + re.search(r"BIND\(" + _LIT + r" AS \?wanted\)", query).group(1) + '"'
        )
        rows = []
        for c in sorted(self._of("country"), key=lambda c: -c.sitelinks):
            if wanted in [n.lower() for n in c.names("en")]:
                rows.append(
                    {
                        "country": uri(c.qid),
                        "label": lit(c.labels.get("en", ""), "en"),
                        "links": lit(c.sitelinks, datatype=XSD_INT),
                        "langs": lit(" ".join(c.languages)),
                    }
                )
        return sparql_json(["country", "label", "links", "langs"], rows)

    def _q_occupation_by_label(self, query: str) -> dict:
        block = re.search(r"VALUES \?text \{(.*?)\}", query, re.S).group(1)
        texts = {json.loads(f'"{t}"') for t in re.findall(_LIT + r"@en", block)}
        used = {o for p in self._of("human") for o in p.occupations}
        rows = [
            {
                "occupation": uri(o.qid),
                "label": lit(o.labels.get("en", ""), "en"),
                "links": lit(o.sitelinks, datatype=XSD_INT),
            }
            for o in sorted(self._of("occupation"), key=lambda o: -o.sitelinks)
            if set(o.names("en")) & texts and o.qid in used
        ]
        return sparql_json(["occupation", "label", "links"], rows)

    def _ancestors(self, qid: str) -> set[str]:
        seen, todo = set(), [qid]
        while todo:
            q = todo.pop()
            if q not in seen:
                seen.add(q)
                todo.extend(self.items[q].subclass_of if q in self.items else ())
        return seen

    def _q_people_by_country_occupation(self, query: str) -> dict:
        country = re.search(r"wdt:P27 wd:(Q\d+)", query).group(1)
        occupation = re.search(r"wdt:P279\* wd:(Q\d+)", query).group(1)
        limit = int(re.search(r"LIMIT (\d+)", query).group(1))
        native = (
            re.findall(r'"([a-z-]+)"', query.split("IN (", 1)[1].split(")")[0])
            if "IN (" in query
            else []
        )
        people = [
            p
            for p in self._of("human")
            if country in p.citizenship
            and any(occupation in self._ancestors(o) for o in p.occupations)
        ]
        rows = []
        for p in sorted(people, key=lambda p: -p.sitelinks)[:limit]:
            row = {"person": uri(p.qid), "links": lit(p.sitelinks, datatype=XSD_INT)}
            if "en" in p.labels:
                row["enLabel"] = lit(p.labels["en"], "en")
            if "mul" in p.labels:
                row["mulLabel"] = lit(p.labels["mul"], "mul")
            for code in native:
                if code in p.labels:
                    row["nativeLabel"] = lit(p.labels[code], code)
            if p.image:
                row["image"] = {"type": "uri", "value": p.image}
            rows.append(row)
        return sparql_json(["person", "enLabel", "mulLabel", "nativeLabel", "links", "image"], rows)

    def _q_people_by_name(self, query: str) -> dict:
        country = re.search(r"wdt:P27 wd:(Q\d+)", query).group(1)
        pairs = [
            (int(k), json.loads(f'"{t}"'), lang)
            for k, t, lang in re.findall(r"\((\d+) " + _LIT + r"@([a-z-]+)\)", query)
        ]
        rows, seen = [], set()
        for key, text, lang in pairs:
            for p in self._of("human"):
                if text in p.names(lang) and (key, p.qid) not in seen:
                    seen.add((key, p.qid))
                    row = {
                        "key": lit(key, datatype=XSD_INT),
                        "person": uri(p.qid),
                        "citizen": lit(str(country in p.citizenship).lower(), datatype=XSD_BOOL),
                        "links": lit(p.sitelinks, datatype=XSD_INT),
                    }
                    if p.image:
                        row["image"] = {"type": "uri", "value": p.image}
                    rows.append(row)
        return sparql_json(["key", "person", "citizen", "links", "image"], rows)


def commons(file: str) -> str:
    return "http://commons.wikimedia.org/wiki/Special:FilePath/" + file.replace(" ", "%20")


def serbia_world() -> list[WdItem]:
    """A little Wikidata: Serbia, Croatia, some occupations (tennis player ⊂ athlete), people."""
    return [
        WdItem(
            "Q403",
            {"en": "Serbia"},
            {"en": ["Republic of Serbia"]},
            300,
            "country",
            languages=("sr",),
        ),
        WdItem("Q224", {"en": "Croatia"}, {}, 280, "country", languages=("hr",)),
        WdItem("Q33999", {"en": "actor"}, {"en": ["actress"]}, 150, "occupation"),
        WdItem("Q2066131", {"en": "athlete"}, {"en": ["sportsperson"]}, 120, "occupation"),
        WdItem(
            "Q10833314", {"en": "tennis player"}, {}, 90, "occupation", subclass_of=("Q2066131",)
        ),
        WdItem("Q639669", {"en": "musician"}, {}, 140, "occupation"),
        WdItem(
            "Q5812",
            {"en": "Novak Djokovic", "sr": "Новак Ђоковић"},
            {"en": ["Novak Đoković", "Nole"]},
            160,
            citizenship=("Q403",),
            occupations=("Q10833314",),
            image=commons("Novak Djokovic 2023.jpg"),
        ),
        WdItem(
            "Q466104",
            {"en": "Ana Ivanovic", "sr": "Ана Ивановић"},
            {"en": ["Ana Ivanović"]},
            80,
            citizenship=("Q403",),
            occupations=("Q10833314",),
        ),
        WdItem(
            "Q1336513",
            {"en": "Ljubiša Samardžić", "sr": "Љубиша Самарџић"},
            {},
            25,
            citizenship=("Q403",),
            occupations=("Q33999",),
            image=commons("Ljubisa Samardzic.jpg"),
        ),
        WdItem(
            "Q7000001",
            {"en": "Miloš Biković", "sr": "Милош Биковић"},
            {},
            30,
            citizenship=("Q403",),
            occupations=("Q33999",),
        ),
        WdItem(
            "Q7000002",
            {"mul": "Dragan Nikolić", "sr": "Драган Николић"},
            {},
            20,
            citizenship=("Q403",),
            occupations=("Q33999",),
        ),
        WdItem(
            "Q7000003",
            {"en": "Đorđe Balašević", "sr": "Ђорђе Балашевић"},
            {},
            40,
            citizenship=("Q403",),
            occupations=("Q639669",),
        ),
        WdItem(
            "Q7000005",
            {"en": "Milica Mandić", "sr": "Милица Мандић"},
            {},
            35,
            citizenship=("Q403",),
            occupations=("Q2066131",),
        ),
        WdItem(
            "Q7000004",
            {"en": "Goran Ivanišević"},
            {},
            60,
            citizenship=("Q224",),
            occupations=("Q10833314",),
        ),
    ]
