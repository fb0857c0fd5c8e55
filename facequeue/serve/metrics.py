"""GET /metrics: Prometheus text format through prometheus-client.

Database-backed gauges (people, images, heartbeat age, gallery identities) are read when
scraped; the recognition histogram and the request counter are updated as requests happen.
One registry per app, so several servers (tests) in one process never share numbers.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from facequeue.serve.gallery import LiveGallery
from facequeue.store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.people = Gauge("facequeue_people", "People by state", ["state"], registry=r)
        self.images = Gauge(
            "facequeue_images", "Images by state and reason", ["state", "reason"], registry=r
        )
        self.gallery = Gauge(
            "facequeue_gallery_identities", "Identities in the served gallery", registry=r
        )
        self.heartbeat = Gauge(
            "facequeue_daemon_heartbeat_age_seconds",
            "Seconds since the newest daemon heartbeat (+Inf: no daemon running)",
            registry=r,
        )
        self.recognize = Histogram(
            "facequeue_recognize_seconds",
            "Time to answer one recognition (detection, embedding, search)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "facequeue_http_requests",  # exposed as facequeue_http_requests_total
            "HTTP requests by route and status code",
            ["route", "code"],
            registry=r,
        )

    async def collect(self, store: Store, gallery: LiveGallery) -> bytes:
        people = await store.people_by_state()
        self.people.clear()
        for state, n in people.items():
            self.people.labels(state=state).set(n)
        self.images.clear()
        for state, reason, n in await store.images_by_outcome():
            self.images.labels(state=state, reason=reason).set(n)
        age = await store.heartbeat_age_s()
        self.heartbeat.set(math.inf if age is None else age)
        self.gallery.set(gallery.index.people)
        return generate_latest(self.registry)

    def middleware(self) -> Middleware:
        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            # the route's pattern, never the raw path: labels must stay few
            info = request.match_info.route.resource
            route = info.canonical if info is not None else "unmatched"
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self.requests.labels(route=route, code=str(exc.status)).inc()
                raise
            except Exception:
                self.requests.labels(route=route, code="500").inc()
                raise
            self.requests.labels(route=route, code=str(response.status)).inc()
            return response

        return count


CONTENT_TYPE = CONTENT_TYPE_LATEST
