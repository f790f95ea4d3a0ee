"""The FastAPI app shell shared by the domain services: engine in the lifespan, error handlers,
`/health`, `/metrics`, the participant kit's settle endpoint, and the fault-injection router when
enabled."""

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from common import faults, logs, metrics, tracing
from common.auth import require_service_token
from common.db import create_service_engine, head_revision, not_ready, reading
from common.docs import serve_docs
from common.errors import error_body
from common.handlers import DOCUMENTED_ERRORS, RETRY_AFTER, install_error_handlers
from common.settings import ServiceSettings
from sagaengine.participant import IdempotencyStore
from sagaengine.participant.fastapi import (
    OptionalIdempotencyKey as OptionalIdempotencyKey,  # the header type orchestrator/api.py takes
)
from sagaengine.participant.fastapi import settle_router

log = logging.getLogger(__name__)

# Where request sessions are closed: its own threads, not the request thread pool (see below).
_CLOSER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="session-close")


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for one request; one left in a transaction is closed on threads of its own.

    A sync generator dependency would close it on the request thread pool (40 threads), and a
    request that still holds its connection (a read leaves its transaction open until the
    close) would wait for one of those threads, while every thread waits for a connection: with
    more requests in flight than threads, the pool starves and every request times out at once
    (seen at 128 concurrent sagas). Closing only releases, never waits for a connection, so
    a closer of its own cannot take part in that cycle."""
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        if session.in_transaction():
            # Its connection was held past the endpoint (see common.db.reading): giving it back
            # is a round trip (a rollback), done off the event loop.
            log.warning("%s %s left its transaction open", request.method, request.url.path)
            await asyncio.get_running_loop().run_in_executor(_CLOSER, session.close)
        else:
            session.close()  # holds no connection: nothing to give back, no I/O


SessionDep = Annotated[Session, Depends(get_session)]

health_router = APIRouter(tags=["health"])


@health_router.get("/health")
def health(session: SessionDep) -> JSONResponse:
    try:
        with reading(session):
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means: not healthy
        return JSONResponse(error_body("database_unavailable", str(exc)), status_code=503)
    return JSONResponse({"status": "ok"})


@health_router.get("/health/live")
async def live() -> JSONResponse:
    """200 while the process runs (a liveness probe: restart it if this does not answer)."""
    return JSONResponse({"status": "ok"})


@health_router.get("/health/ready")
def ready(request: Request) -> JSONResponse:
    """200 only when this process can serve: its database reachable and at the migration this
    code needs; else 503 and why (a readiness probe: send it no traffic meanwhile)."""
    reason = not_ready(request.app.state.engine, request.app.state.migration_head)
    return readiness_answer(reason)


async def _readiness(app: FastAPI) -> str | None:
    return await run_in_threadpool(not_ready, app.state.engine, app.state.migration_head)


def readiness_answer(reason: str | None) -> JSONResponse:
    if reason is None:
        return JSONResponse({"status": "ready"})
    body = error_body("not_ready", reason)
    return JSONResponse(body, status_code=503, headers=RETRY_AFTER)


def create_service_app(
    *,
    title: str,
    settings: ServiceSettings,
    idempotency: IdempotencyStore | None,
    routers: Sequence[APIRouter],
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_service_engine(
            settings.sqlalchemy_url,
            settings.db_pool_size,
            settings.db_max_overflow,
            prepared=settings.db_prepared_statements,
        )
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker(engine, expire_on_commit=False)
        yield
        engine.dispose()
        tracing.flush()

    app = FastAPI(
        title=title,
        lifespan=lifespan,
        responses=DOCUMENTED_ERRORS,
        docs_url=None,  # served from a package: common/docs.py
        redoc_url=None,
    )
    serve_docs(app)
    app.state.settings = settings
    app.state.migration_head = head_revision(settings.migrations)
    app.state.faults = faults.FaultInjector() if settings.fault_injection else None
    install_error_handlers(app)
    metrics.instrument(app, readiness=_readiness)
    logs.instrument(app)
    tracing.instrument_app(app)
    app.include_router(health_router)
    if idempotency is not None:
        app.include_router(
            settle_router(idempotency, get_session=get_session, authorize=require_service_token)
        )
    if settings.fault_injection and idempotency is not None:
        idempotency.injected_refusal = app.state.faults.refuse_if_set
        app.include_router(faults.router)
        app.middleware("http")(faults.lose_responses)
    for router in routers:
        app.include_router(router)
    return app
