"""A local stand-in for the OpenAI API on 127.0.0.1 (Wikidata: tests/wikidata_endpoint.py,
a real SPARQL engine).

It speaks the real wire format (OpenAI chat completions JSON) so the project's real client
(`openai.AsyncOpenAI` with `base_url`) talks to it. Reusable by any test:

    async with FakeOpenAI(CelebrityLlm(...)) as llm:       # llm.base_url -> ".../v1"
        llm.script.append(Status(500))                    # the next request fails

`script` replies are served first, in order; then the responder answers.
"""

from __future__ import annotations

import asyncio
import json
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
