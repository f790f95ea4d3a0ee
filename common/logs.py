"""Structured JSON logs, one object per line, with the request id (and, in the orchestrator, the
saga id, step and phase) on every line, so that one saga can be followed across every process
with one grep; with traces on (common/tracing.py), with the trace and span ids too.

The request id comes from the caller's `X-Request-ID` header (1 to 128 of `A-Za-z0-9._:-`), or is
made here; it is answered back in the same header, and the orchestrator sends its saga's request
id with every call it makes.
"""

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sagaengine.context import REQUEST_ID_HEADER, request_id, saga_id, saga_phase, saga_step

_CONTEXT = {"request_id": request_id, "saga_id": saga_id, "step": saga_step, "phase": saga_phase}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, var in _CONTEXT.items():
            value = var.get()
            if value is not None:
                line[name] = value
        # Set by OpenTelemetry's logging instrumentation when traces are on ("0": no span).
        trace_id = getattr(record, "otelTraceID", "0")
        if trace_id != "0":
            line["trace_id"] = trace_id
            line["span_id"] = getattr(record, "otelSpanID", None)
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per outgoing request is noise at INFO; failures are logged by the callers.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


access_log = logging.getLogger("access")
_REQUEST_ID_RAW = REQUEST_ID_HEADER.lower().encode()
# A caller's request id is taken as it is only if it looks like one: anything else (too long for
# the saga's column, or bytes that are not text) is replaced by a fresh id, never a 500.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    incoming = next((v for k, v in headers if k == _REQUEST_ID_RAW), b"")
    if _VALID_REQUEST_ID.fullmatch(incoming):
        return incoming.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Take or make the request id, answer it back, and log one line per request.

    A plain ASGI middleware, not `@app.middleware("http")`: that one runs every request through
    an extra task and memory streams, a cost paid on every call between services."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope["headers"])
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500  # unless the app answers: an exception becomes a 500 further out

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={"fields": {"ms": round((time.perf_counter() - started) * 1000, 1)}},
            )
            request_id.reset(token)


def instrument(app: FastAPI) -> None:
    app.add_middleware(RequestIdMiddleware)
