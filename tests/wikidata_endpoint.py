"""A local Wikidata query service: a real SPARQL 1.1 engine (pyoxigraph) behind aiohttp.

It speaks the SPARQL protocol (GET ?query=, POST form or application/sparql-query;
answers application/sparql-results+json) on 127.0.0.1, loaded with a world in the shape
WDQS stores: truthy `wdt:` values, `wikibase:sitelinks` on the entity, `rdfs:label` and
`skos:altLabel` per language, P18 as a Commons FilePath IRI.

    async with WikidataEndpoint(serbia_world()) as wd:        # wd.url -> ".../sparql"
    async with WikidataEndpoint(world, strict=True) as wd:    # no predeclared prefixes

`wdqs` mode (the default) predeclares WDQS's prefixes and answers a bad query the way
WDQS does (HTTP 400, the query echoed, then a Java stack trace); `strict=True` is a plain
SPARQL 1.1 endpoint (no prefixes but the query's own; a short error text). `script`
replies (fake_services.Status/Delay/Raw) are served first, in order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pyoxigraph as ox
from aiohttp import web
from fake_services import Status, _Server

WD = "http://www.wikidata.org/entity/"
WDT = "http://www.wikidata.org/prop/direct/"
WIKIBASE = "http://wikiba.se/ontology#"
RDFS_LABEL = ox.NamedNode("http://www.w3.org/2000/01/rdf-schema#label")
ALT_LABEL = ox.NamedNode("http://www.w3.org/2004/02/skos/core#altLabel")
SITELINKS = ox.NamedNode(WIKIBASE + "sitelinks")
XSD_INTEGER = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")
# What WDQS predeclares (a subset: the ones a facequeue query could lean on).
WDQS_PREFIXES = {
    "wd": WD,
    "wdt": WDT,
    "wikibase": WIKIBASE,
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "schema": "http://schema.org/",
    "p": "http://www.wikidata.org/prop/",
    "ps": "http://www.wikidata.org/prop/statement/",
    "bd": "http://www.bigdata.com/rdf#",
}
WDQS_TIMEOUT_BODY = (
    "SPARQL-QUERY: queryStr=SELECT ...\n"
    "java.util.concurrent.TimeoutException\n"
    "\tat java.util.concurrent.FutureTask.get(FutureTask.java:205)\n"
)


@dataclass
class Entity:
    """One Wikidata item: labels/aliases per language, sitelinks, truthy claims."""

    qid: str
    labels: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    sitelinks: int | None = 10
    claims: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "P27": ("Q403",)
    image: str | None = None  # P18 file name on Commons
    strings: dict[str, str] = field(default_factory=dict)  # string-valued claims (P424)

    def quads(self) -> list[ox.Quad]:
        me = ox.NamedNode(WD + self.qid)
        out = [
            ox.Quad(me, RDFS_LABEL, ox.Literal(t, language=lang)) for lang, t in self.labels.items()
        ]
        out += [
            ox.Quad(me, ALT_LABEL, ox.Literal(t, language=lang))
            for lang, texts in self.aliases.items()
            for t in texts
        ]
        if self.sitelinks is not None:
            out.append(
                ox.Quad(me, SITELINKS, ox.Literal(str(self.sitelinks), datatype=XSD_INTEGER))
            )
        for prop, values in self.claims.items():
            out += [ox.Quad(me, ox.NamedNode(WDT + prop), ox.NamedNode(WD + v)) for v in values]
        for prop, value in self.strings.items():
            out.append(ox.Quad(me, ox.NamedNode(WDT + prop), ox.Literal(value)))
        if self.image:
            out.append(ox.Quad(me, ox.NamedNode(WDT + "P18"), ox.NamedNode(commons(self.image))))
        return out


def commons(file: str) -> str:
    """P18 as WDQS gives it."""
    return "http://commons.wikimedia.org/wiki/Special:FilePath/" + file.replace(" ", "%20")


def human(
    qid: str,
    labels: dict[str, str],
    country: str | tuple[str, ...],
    occupations: tuple[str, ...],
    sitelinks: int = 10,
    image: str | None = None,
    aliases: dict[str, list[str]] | None = None,
) -> Entity:
    countries = (country,) if isinstance(country, str) else country
    claims = {"P31": ("Q5",), "P27": countries, "P106": occupations}
    return Entity(qid, labels, aliases or {}, sitelinks, claims, image)


def country(
    qid: str, label: str, aliases: list[str], sitelinks: int, languages: tuple[str, ...] = ()
) -> Entity:
    claims = {"P31": ("Q6256", "Q3624078"), "P37": languages}
    return Entity(qid, {"en": label}, {"en": aliases}, sitelinks, claims)


def occupation(
    qid: str,
    label: str,
    sitelinks: int,
    instance_of: tuple[str, ...] = (),
    subclass_of: tuple[str, ...] = (),
    aliases: list[str] | None = None,
) -> Entity:
    claims = {"P31": instance_of, "P279": subclass_of}
    return Entity(qid, {"en": label}, {"en": aliases or []}, sitelinks, claims)


def store_of(entities: list[Entity]) -> ox.Store:
    store = ox.Store()
    store.extend(q for e in entities for q in e.quads())
    return store


class WikidataEndpoint(_Server):
    """GET/POST /sparql on a pyoxigraph store."""

    def __init__(self, entities: list[Entity] | ox.Store, strict: bool = False) -> None:
        super().__init__()
        self.store = entities if isinstance(entities, ox.Store) else store_of(entities)
        self.strict = strict
        self.faults: list[tuple[str, Any]] = []  # (text in the query, reply): served once

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
                query = str((await request.post()).get("query", ""))
        else:
            query = request.query.get("query", "")
        self.requests.append(
            {"query": query, "headers": dict(request.headers), "method": request.method}
        )
        fault = next((f for f in self.faults if f[0] in query), None)
        if fault is not None:
            self.faults.remove(fault)
            return await self._scripted(fault[1], lambda r: r)
        if self.script:
            return await self._scripted(self.script.popleft(), lambda r: r)
        try:
            body = await asyncio.to_thread(self._run, query)
        except SyntaxError as exc:
            return web.Response(status=400, text=self._syntax_error(query, exc))
        return web.Response(body=body, content_type="application/sparql-results+json")

    def _run(self, query: str) -> bytes:
        prefixes = None if self.strict else WDQS_PREFIXES
        results = self.store.query(query, prefixes=prefixes)
        assert isinstance(results, ox.QuerySolutions), "SELECT queries only"
        return results.serialize(format=ox.QueryResultsFormat.JSON)

    def _syntax_error(self, query: str, exc: SyntaxError) -> str:
        reason = " ".join(str(exc).split())[:300]
        if self.strict:
            return f"Parse error: {reason}"
        return (
            f"SPARQL-QUERY: queryStr={query}\n"
            "java.util.concurrent.ExecutionException: "
            f"org.openrdf.query.MalformedQueryException: {reason}\n"
            "\tat java.util.concurrent.FutureTask.report(FutureTask.java:122)\n"
        )


def timeout_500() -> Status:
    """WDQS's answer when a query passes its 60 s limit."""
    return Status(500, WDQS_TIMEOUT_BODY)


def timeout_504() -> Status:
    return Status(504, "<html><body><h1>504 Gateway Time-out</h1></body></html>")
