"""Prometheus metrics: HTTP request latency by route on every process, served at `/metrics`."""

import time

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
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
    parameters, so the path is its template. Nothing matched: `unmatched`."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    if scope.get("endpoint") is not None:
        return str(scope["path"])
    return "unmatched"


def instrument(app: FastAPI) -> None:
    # A `_created` series per labelled child doubles /metrics for a timestamp nobody reads.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client: untyped
    app.add_middleware(LatencyMiddleware)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
