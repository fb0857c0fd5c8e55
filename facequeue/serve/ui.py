"""The review UI: the report's pages (same templates) rendered live from the database, with
reject/accept buttons on every face (plain HTML forms, CSRF-protected; no JavaScript) and a
filter for flagged people. URLs mirror the static report (`/index.html`, `/people/<page>`,
`/thumbs/<file>`), so the templates' relative links work unchanged."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from facequeue.config import Config
from facequeue.ops import report
from facequeue.serve.auth import VIA_BEARER, Auth
from facequeue.serve.review import Reviewer, ReviewError
from facequeue.store import Store

PAGE = re.compile(r"^(\d+)_[^/]*\.html$")
THUMB = re.compile(r"^\d+_[a-z]+\.jpg$")


class UI:
    def __init__(self, cfg: Config, store: Store, auth: Auth, reviewer: Reviewer) -> None:
        self.cfg, self.store, self.auth, self.reviewer = cfg, store, auth, reviewer
        self.out = cfg.tmp_dir / "serve-ui"  # thumbnails: a cache, rebuilt on demand
        self.env = report.env()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),
            web.get("/index.html", self.index),
            web.get("/people/{page}", self.person),
            web.get("/thumbs/{name}", self.thumb),
            web.post("/ui/images/{id}/review", self.review_form),
            web.get("/login", self.login_form),
            web.post("/login", self.login),
        ]

    def _common(self) -> dict:
        return {
            "live": True,
            "csrf": self.auth.csrf_token,
            "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/index.html")

    async def index(self, request: web.Request) -> web.Response:
        people = await report.report_people(self.store)
        summary = await report.report_summary(self.cfg, self.store, people)
        flagged_only = request.query.get("flagged") == "1"
        shown = [p for p in people if p["flagged"] or not flagged_only]
        for p in shown:
            p["page"] = f"people/{report.page_name(p)}"
            p["cover"] = None
        text = self.env.get_template("index.html.j2").render(
            people=shown, flagged_only=flagged_only, **{**summary, **self._common()}
        )
        return web.Response(text=text, content_type="text/html")

    async def person(self, request: web.Request) -> web.Response:
        m = PAGE.match(request.match_info["page"])
        people = await report.report_people(self.store) if m else []
        person = next((p for p in people if p["person_id"] == int(m.group(1))), None) if m else None
        if person is None:
            raise web.HTTPNotFound(text="no such person (forgotten?)")
        images = await report.report_images(self.store, person["person_id"])

        def render() -> str:
            ctx = report.person_context(self.cfg, person, images, self.out, set())
            return self.env.get_template("person.html.j2").render(
                **ctx, message=request.query.get("message"), **self._common()
            )

        return web.Response(text=await asyncio.to_thread(render), content_type="text/html")

    async def thumb(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self.out / "thumbs" / name
        if not THUMB.match(name) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def review_form(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not request.get(VIA_BEARER) and not self.auth.csrf_ok(str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
        try:
            image_id = int(request.match_info["id"])
            outcome = await self.reviewer.decide(
                image_id, str(form.get("decision", "")), str(form.get("note", "")) or None
            )
            message = f"image {image_id}: {outcome.decision} recorded; now {outcome.state}"
            if not outcome.recurated:
                message += " (the person is being processed: applied at its next curation)"
        except ReviewError as exc:
            message = f"not done: {exc.message}"
        except ValueError:
            raise web.HTTPNotFound() from None
        back = _same_origin_path(request.headers.get("Referer", ""), request) or "/index.html"
        raise web.HTTPSeeOther(f"{back.split('?')[0]}?message={quote(message)}")

    async def login_form(self, request: web.Request, error: str = "") -> web.Response:
        nxt = html.escape(request.query.get("next", "/index.html"))
        err = f'<p class="message">{html.escape(error)}</p>' if error else ""
        body = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>facequeue: log in'
            '</title><link rel="icon" href="data:,"></head><body><h1>facequeue review</h1>'
            f'{err}<form method="post" action="/login"><input type="hidden" name="next" '
            f'value="{nxt}"><label>API token <input type="password" name="token" '
            'autocomplete="current-password"></label> <button type="submit">Log in</button>'
            "</form></body></html>"
        )
        return web.Response(text=body, content_type="text/html", status=401 if error else 200)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not self.auth.required:
            raise web.HTTPSeeOther("/index.html")
        if not self.auth.token_ok(str(form.get("token", ""))):
            return await self.login_form(request, "wrong token")
        nxt = str(form.get("next", "/index.html"))
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/index.html"  # never redirect off this server
        response = web.HTTPSeeOther(nxt)
        self.auth.set_session(response, secure=request.secure)
        raise response


def _same_origin_path(referer: str, request: web.Request) -> str | None:
    prefix = f"{request.scheme}://{request.host}"
    if referer.startswith(prefix + "/"):
        return referer[len(prefix) :]
    return None


def thumbs_dir(cfg: Config) -> Path:
    return cfg.tmp_dir / "serve-ui" / "thumbs"
