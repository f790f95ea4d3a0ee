import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

import httpx
import prometheus_client
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from common import logs, tracing
from common import metrics as http_metrics
from common.db import (
    connect_args,
    head_revision,
    not_ready_async,
    open_pool,
    ping_when_idle,
)
from common.docs import serve_docs
from common.errors import error_body
from common.handlers import DOCUMENTED_ERRORS, install_error_handlers
from common.web import readiness_answer
from orchestrator import admin_ui
from orchestrator.admin_queries import AdminQueries
from orchestrator.api import admin, router
from orchestrator.audit import AuditTrail
from orchestrator.config import Settings, get_settings
from orchestrator.definitions import SAGAS
from sagaengine.http import build_clients
from sagaengine.metrics import EngineMetrics
from sagaengine.outbox import OutboxRelay
from sagaengine.postgres import PostgresSagaStore
from sagaengine.registry import Registry
from sagaengine.runner import SagaRunner
from sagaengine.store import Owner
from sagaengine.transport import transport

log = logging.getLogger(__name__)


def _engine(settings: Settings) -> AsyncEngine:
    """SQLAlchemy, for the admin's reads and the health checks: a few connections. The hot path
    has a pool of its own (`_pool`)."""
    engine = create_async_engine(
        settings.sqlalchemy_url,
        pool_size=1,
        max_overflow=2,
        connect_args=connect_args(prepared=settings.db_prepared_statements),
    )
    ping_when_idle(engine.sync_engine)
    return engine


async def _pool(settings: Settings) -> AsyncConnectionPool:
    """The hot path's connections: the saga runs, the starts, recovery and the relay."""
    return await open_pool(
        settings.sqlalchemy_url,
        settings.db_pool_size + settings.db_max_overflow,
        prepared=settings.db_prepared_statements,
    )


def build_relay(
    settings: Settings, pool: AsyncConnectionPool, owner: Owner, metrics: EngineMetrics
) -> OutboxRelay:
    limits = httpx.Limits(keepalive_expiry=2.0)  # before the platform's keep-alive timeout
    http = httpx.AsyncClient(
        base_url=settings.data_platform_url,
        headers={"Authorization": f"Bearer {settings.service_token}"},
        timeout=settings.relay_timeout,
        transport=transport(settings.data_platform_url, limits),
    )
    return OutboxRelay(
        pool,
        http,
        owner=f"{owner.instance_id}#{owner.incarnation}",
        policy=settings.relay_policy(),
        metrics=metrics,
    )


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _stop_relay(relay: OutboxRelay, task: asyncio.Task[None] | None, timeout: float) -> None:
    """Let the relay's pass under way end (its delivery takes at most `timeout`), then stop."""
    if task is None:
        return
    relay.stop()
    try:
        await asyncio.wait_for(task, timeout=timeout + 1)
    except TimeoutError:
        log.warning("the outbox relay did not end its pass in time; its claims will expire")


@cache
def engine_metrics() -> EngineMetrics:
    """The engine's metrics, registered once per process (an app may be created many times)."""
    return EngineMetrics.register()


def create_app(settings: Settings | None = None, sagas: Registry = SAGAS) -> FastAPI:
    """The orchestrator, running `sagas` (a new saga is registered in orchestrator/definitions.py,
    or handed here by an application of its own: examples/subscriptions)."""
    settings = settings or get_settings()
    metrics = engine_metrics()
    owner = Owner.new(settings.resolved_instance_id())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = _engine(settings)
        sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        pool = await _pool(settings)
        clients = build_clients(
            settings.participant_urls(sagas.participants.values()),
            settings.service_token,
            settings.step_timeout,
        )
        relay = build_relay(settings, pool, owner, metrics)
        store = PostgresSagaStore(pool, settings.lease_seconds)
        runner = SagaRunner(
            store,
            clients,
            definitions=sagas,
            owner=owner,
            step_timeout=settings.step_timeout,
            action_policy=settings.action_policy(),
            compensation_policy=settings.compensation_policy(),
            on_outcome=relay.notify if settings.relay_enabled else None,
            max_running=settings.max_running_sagas,
            metrics=metrics,
        )
        app.state.engine, app.state.runner, app.state.relay = engine, runner, relay
        # Called the moment SIGTERM arrives (common/serve.py), before uvicorn waits for the
        # open requests: no new start or recovery from then on.
        app.state.begin_stop = lambda: runner.begin_drain(settings.shutdown_grace_seconds)
        app.state.admin = AdminQueries(sessionmaker)
        app.state.audit = AuditTrail(sessionmaker)
        app.state.sagas = sagas
        recovery = asyncio.create_task(
            runner.recovery_loop(settings.recovery_interval, settings.recovery_batch),
            name="recovery-loop",
        )
        relaying = None
        if settings.relay_enabled:
            relaying = asyncio.create_task(relay.run(), name="outbox-relay")
        log.info("orchestrator %s started (incarnation %s)", owner.instance_id, owner.incarnation)
        try:
            yield
        finally:
            await _cancel(recovery)
            # Side by side, within the one grace: the relay's pass under way ends, and the
            # calls in flight end and are recorded; then the leases go, and another replica
            # resumes these sagas at its next recovery pass.
            await asyncio.gather(
                _stop_relay(relay, relaying, settings.relay_timeout),
                runner.drain(settings.shutdown_grace_seconds),
            )
            try:
                await store.release_leases(owner)
            except Exception as error:  # the database is away: the leases expire by themselves
                log.warning("could not release this replica's leases: %s", error)
            for client in clients.values():
                await client.http.aclose()
            await relay.http.aclose()
            await pool.close()
            await engine.dispose()
            tracing.flush()

    app = FastAPI(
        title="saga orchestrator",
        lifespan=lifespan,
        responses=DOCUMENTED_ERRORS,
        docs_url=None,  # served from a package: common/docs.py
        redoc_url=None,
    )
    serve_docs(app)
    app.state.settings = settings
    head = head_revision(settings.migrations)
    install_error_handlers(app)

    async def readiness(app: FastAPI) -> str | None:
        runner: SagaRunner | None = getattr(app.state, "runner", None)
        if runner is not None and runner.stopping:
            return "this replica is stopping: its sagas are handed over"
        return await not_ready_async(app.state.engine, head)

    async def observe(app: FastAPI) -> None:
        await app.state.runner.observe()

    http_metrics.instrument(app, readiness, refresh=observe)
    logs.instrument(app)
    tracing.instrument_app(app)

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> JSONResponse:
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure means: not healthy
            return JSONResponse(error_body("database_unavailable", str(exc)), status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/health/live", tags=["health"])
    async def live() -> JSONResponse:
        """200 while the process runs."""
        return JSONResponse({"status": "ok"})

    @app.get("/health/ready", tags=["health"])
    async def ready(request: Request) -> JSONResponse:
        """200 only when it can serve: its database reachable and at the migration this code
        needs; else 503 and why."""
        return readiness_answer(await readiness(request.app))

    app.include_router(router)
    app.include_router(admin)
    app.include_router(admin_ui.router)
    return app


def run_relay(settings: Settings, metrics_port: int | None = None) -> None:
    """`python -m orchestrator relay`: the outbox relay alone, until SIGTERM or Ctrl-C; its
    metrics on `metrics_port` (any path), if given."""

    async def main() -> None:
        pool = await _pool(settings)
        owner = Owner.new(f"{settings.resolved_instance_id()}-relay")
        relay = build_relay(settings, pool, owner, engine_metrics())
        if metrics_port is not None:
            # Its delivery lag and backlog, for Prometheus: with the orchestrators' own relays
            # off, nobody else exports them.
            prometheus_client.start_http_server(metrics_port, addr=settings.host)
        task = asyncio.create_task(relay.run(), name="outbox-relay")
        loop = asyncio.get_running_loop()

        def stop() -> None:  # the pass under way ends, within the grace
            relay.stop()
            loop.call_later(settings.shutdown_grace_seconds, task.cancel)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        log.info("outbox relay %s delivering to %s", relay.owner, settings.data_platform_url)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await relay.http.aclose()
        await pool.close()

    asyncio.run(main())
