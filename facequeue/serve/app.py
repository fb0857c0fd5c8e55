"""The aiohttp application: routes of the API, /healthz, /metrics, and the UI's pages.

`make_app(cfg, token)` builds it (tests run it on 127.0.0.1:0); `serve(cfg, host, port)`
runs it until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import structlog
from aiohttp import web

from facequeue.config import Config
from facequeue.ops import queue as queue_ops
from facequeue.runner.pipeline import Resources
from facequeue.serve.auth import VIA_BEARER, Auth, check_bind
from facequeue.serve.gallery import LiveGallery
from facequeue.serve.metrics import CONTENT_TYPE, Metrics
from facequeue.serve.recognition import Recognizer, UploadError
from facequeue.serve.review import Reviewer, ReviewError, parse_decision
from facequeue.serve.ui import UI
from facequeue.stages.gallery import gallery_listing
from facequeue.store import Store, connect

log = structlog.get_logger("facequeue.serve")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Services:
    cfg: Config
    store: Store
    gallery: LiveGallery
    recognizer: Recognizer
    reviewer: Reviewer
    metrics: Metrics
    auth: Auth


def _json_error(status: int, message: str, **extra: object) -> web.Response:
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api error is JSON with one line; nothing escapes as a traceback page."""
    try:
        return await handler(request)
    except UploadError as exc:
        return _json_error(exc.status, exc.message, **exc.extra)
    except ReviewError as exc:
        return _json_error(exc.status, exc.message)
    except web.HTTPException as exc:
        if (
            exc.status >= 400
            and request.path.startswith("/api/")
            and exc.content_type != "application/json"
        ):
            reason = (
                exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            )
            if exc.status == 413:
                reason = "upload too large"
            return _json_error(exc.status, reason)
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("request_failed", path=request.path)
        return _json_error(500, f"internal error: {type(exc).__name__}")


SERVICES = web.AppKey("services", Services)


class Api:
    def __init__(self, s: Services) -> None:
        self.s = s

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/recognize", self.recognize),
            web.get("/api/people", self.people),
            web.get("/api/people/{id}", self.person),
            web.get("/api/status", self.status),
            web.post("/api/images/{id}/review", self.review),
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics),
        ]

    async def recognize(self, request: web.Request) -> web.Response:
        rec = self.s.recognizer
        async with rec.slot() as waited:
            t = time.perf_counter()
            dest = rec.tmp / f"{id(request):x}-{time.monotonic_ns()}"
            try:
                upload = await rec.read_upload(request, dest)
                body, photo = await rec.recognize(upload)
            finally:
                dest.unlink(missing_ok=True)
            self.s.metrics.recognize.observe(time.perf_counter() - t)
        body["timings_s"] = {
            "wait": round(waited, 4),
            "total": round(time.perf_counter() - t, 4),
            **{k: round(v, 4) for k, v in photo.timings.items()},
        }
        return web.json_response(body)

    async def people(self, request: web.Request) -> web.Response:
        rows = [asdict(r) for r in await gallery_listing(self.s.store)]
        return web.json_response({"people": rows, "gallery_version": self.s.gallery.version})

    async def person(self, request: web.Request) -> web.Response:
        try:
            pid = int(request.match_info["id"])
        except ValueError:
            raise ReviewError(400, "person id must be a number") from None
        row = next((r for r in await gallery_listing(self.s.store) if r.person_id == pid), None)
        if row is None:
            raise ReviewError(404, f"no gallery identity {pid}")
        refs = await self.s.store.gallery_images_of_person(pid)
        return web.json_response({**asdict(row), "gallery_images": [asdict(r) for r in refs]})

    async def status(self, request: web.Request) -> web.Response:
        data = asdict(await queue_ops.overview(self.s.cfg, self.s.store, 20))
        return web.json_response(json.loads(json.dumps(data, default=str)))

    async def review(self, request: web.Request) -> web.Response:
        # ambient credentials (cookie, or none on loopback) need a JSON body or the CSRF token
        is_json = request.content_type == "application/json"
        csrf = request.headers.get("X-CSRF-Token", "")
        if not request.get(VIA_BEARER) and not is_json and not self.s.auth.csrf_ok(csrf):
            raise ReviewError(403, "send JSON (Content-Type: application/json) or the CSRF token")
        try:
            image_id = int(request.match_info["id"])
        except ValueError:
            raise ReviewError(400, "image id must be a number") from None
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ReviewError(400, "the body is not JSON") from None
        decision, note = parse_decision(body)
        outcome = await self.s.reviewer.decide(image_id, decision, note)
        return web.json_response(outcome.as_dict())

    async def healthz(self, request: web.Request) -> web.Response:
        s = self.s
        checks: dict[str, object] = {}
        try:
            checks["database"] = await asyncio.wait_for(s.store.ping(), 5)
            await s.gallery.refresh()
            age = await s.store.heartbeat_age_s()
        except Exception as exc:  # noqa: BLE001 - any failure here is "unhealthy"
            checks["database"] = False
            checks["error"] = f"{type(exc).__name__}: {exc}"
            age = None
        checks["gallery_loaded"] = s.gallery.loaded
        checks["gallery_identities"] = s.gallery.index.people
        checks["gallery_version"] = s.gallery.version
        checks["daemon_heartbeat_age_s"] = None if age is None else round(age, 1)
        checks["workers"] = s.recognizer.pool is not None
        healthy = bool(checks["database"]) and s.gallery.loaded and bool(checks["workers"])
        return web.json_response(
            {"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503
        )

    async def metrics(self, request: web.Request) -> web.Response:
        await self.s.gallery.refresh()
        body = await self.s.metrics.collect(self.s.store, self.s.gallery)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def make_app(
    cfg: Config, token: str | None = None, start_workers: bool = True
) -> web.Application:
    """The whole server; opens the database and (on start-up) the worker processes."""
    token = cfg.secrets.api_token.get_secret_value() if token is None else token
    auth = Auth(token)
    metrics = Metrics()
    store = await connect(cfg)
    gallery = LiveGallery(cfg, store)
    await gallery.refresh(force=True)
    recognizer = Recognizer(cfg, gallery)
    reviewer = Reviewer(cfg, store, gallery, Resources(cfg))
    services = Services(cfg, store, gallery, recognizer, reviewer, metrics, auth)
    app = web.Application(
        middlewares=[metrics.middleware(), errors, auth.middleware()],
        client_max_size=int(cfg.serve.max_upload_mb * 1024 * 1024) + 65536,
    )
    app[SERVICES] = services
    app.add_routes(Api(services).routes())
    app.add_routes(UI(cfg, store, auth, reviewer).routes())

    async def lifecycle(app: web.Application):
        if start_workers:
            await recognizer.start()
            # re-curation after a review shares the recognition workers
            reviewer.res._pool = recognizer.pool
        yield
        await recognizer.close()
        await store.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def serve(cfg: Config, host: str, port: int) -> None:
    """Run until SIGTERM/SIGINT."""
    token = cfg.secrets.api_token.get_secret_value()
    check_bind(host, token)
    app = await make_app(cfg, token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info(
        "serve_started",
        host=host,
        port=port,
        auth=bool(token),
        identities=app[SERVICES].gallery.index.people,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("serve_stopping")
        await runner.cleanup()
