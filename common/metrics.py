"""Prometheus metrics: HTTP request latency by route and readiness on every process, served at
`/metrics`; what else a process shows is refreshed at each scrape (`instrument`'s `refresh`)."""

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route", "status"],
)
SERVICE_READY = Gauge(
    "service_ready",
    "1 when this process can serve (its database reachable and migrated), else 0",
)

log = logging.getLogger(__name__)

# Why the process is not ready (None: it is), as its /health/ready answers.
Readiness = Callable[[FastAPI], Awaitable[str | None]]


class LatencyMiddleware:
    """Observe every request's latency by route (a plain ASGI middleware: see common.logs)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            HTTP_REQUEST_SECONDS.labels(scope["method"], _route(scope), str(status)).observe(
                time.perf_counter() - started
            )


def _route(scope: Scope) -> str:
    """The route's template (`/orders/{order_id}`), set by the router on this same scope. A
    plain Starlette route (`/openapi.json`, `/docs`) sets only its endpoint: its path has no
    parameters, so the path is its template. A mount (`/docs/assets`) sets its own root path:
    everything under it is one label, whatever a client asks for. Nothing matched:
    `unmatched`."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    if scope.get("endpoint") is not None:
        mounted = scope.get("root_path", "")
        return f"{mounted}/{{path}}" if mounted else str(scope["path"])
    return "unmatched"


def instrument(
    app: FastAPI,
    readiness: Readiness,
    refresh: Callable[[FastAPI], Awaitable[None]] | None = None,
) -> None:
    """Latency by route, and `/metrics`; each scrape first reads the process's readiness and,
    when it is ready, `refresh`es the gauges that show what stands now (sagas by status)."""
    # A `_created` series per labelled child doubles /metrics for a timestamp nobody reads.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client: untyped
    app.add_middleware(LatencyMiddleware)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        try:
            reason = await readiness(request.app)
        except Exception as error:  # not ready, whatever the reason; the scrape still answers
            reason = str(error)
        SERVICE_READY.set(0 if reason else 1)
        if refresh is not None and reason is None:
            try:
                await refresh(request.app)
            except Exception:  # the gauges keep their last values; service_ready says why
                log.warning("metrics: the gauges could not be refreshed", exc_info=True)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
