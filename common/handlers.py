"""Exception handlers that turn every error into the JSON error body, never a bare 500 page."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import DomainError, error_body
from sagaengine.outage import Outage

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Exception)

# Every 503 says when to come back: a dependency that is down is a reason to retry, soon.
RETRY_AFTER = {"Retry-After": "1"}
_database = Outage(log, "the database", "answering 503 with Retry-After until it is back")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


# Documented in every OpenAPI document instead of FastAPI's `{"detail": [...]}`.
DOCUMENTED_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Invalid input"},
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only the parts that are always JSON-safe: the offending input can be anything.
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def _unavailable_headers(status_code: int) -> dict[str, str] | None:
    return RETRY_AFTER if status_code == 503 else None


async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
    headers = _unavailable_headers(exc.status_code)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = _validation_details(exc)
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return JSONResponse(error_body("validation_error", message, details=details), status_code=422)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = {**(_unavailable_headers(exc.status_code) or {}), **(exc.headers or {})}
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers or None
    )


async def _data_error(request: Request, exc: DataError) -> JSONResponse:
    # The database refused a value the validation let through: the client's input, not a fault.
    log.warning("data error on %s %s: %s", request.method, request.url.path, exc.orig)
    body = error_body("invalid_data", "a value in the request cannot be stored")
    return JSONResponse(body, status_code=422)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database is down or unreachable: a transient fault, and the caller may retry. Logged
    # once per outage, not once per request.
    _database.failed(exc)
    body = error_body("database_unavailable", "the database is unavailable, retry later")
    return JSONResponse(body, status_code=503, headers=RETRY_AFTER)


def _internal_error() -> JSONResponse:
    return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Only what escapes the middlewares themselves reaches here (see UnexpectedErrors).
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _internal_error()


class UnexpectedErrors:
    """The last word on an exception no handler took, said inside the request-id middleware: the
    error line carries the request's ids, the 500 its X-Request-ID, and the exception is logged
    once. (Left to Starlette's outermost middleware, it was logged there without them, then
    raised on to the server, which logged it a second time.)"""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:  # once an answer is under way, nothing more can be said
                await _internal_error()(scope, receive, send)


def _for(
    handler: Callable[[Request, E], Awaitable[JSONResponse]],
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """`handler` as Starlette types an exception handler (it registers it for E only)."""
    return cast(Callable[[Request, Exception], Awaitable[JSONResponse]], handler)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _for(_domain_error))
    app.add_exception_handler(RequestValidationError, _for(_validation_error))
    app.add_exception_handler(StarletteHTTPException, _for(_http_error))
    app.add_exception_handler(DataError, _for(_data_error))
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    # The orchestrator's hot path speaks psycopg directly (its pool's timeout is one of these).
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(psycopg.InterfaceError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
    # Innermost of the middlewares: call this before common.logs.instrument(app).
    app.add_middleware(UnexpectedErrors)
