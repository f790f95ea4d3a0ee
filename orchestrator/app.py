import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from common import metrics as http_metrics
from common.errors import error_body
from common.handlers import install_error_handlers
from orchestrator.api import admin, router
from orchestrator.clients import build_clients
from orchestrator.config import Settings, get_settings
from orchestrator.runner import SagaRunner
from orchestrator.store import Owner, SagaStore

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    owner = Owner.new(settings.resolved_instance_id())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = create_async_engine(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size * 2,
            pool_pre_ping=True,
        )
        clients = build_clients(
            settings.service_urls(), settings.service_token, settings.step_timeout
        )
        store = SagaStore(
            async_sessionmaker(engine, expire_on_commit=False), settings.lease_seconds
        )
        runner = SagaRunner(
            store,
            clients,
            owner=owner,
            step_timeout=settings.step_timeout,
            action_policy=settings.action_policy(),
            compensation_policy=settings.compensation_policy(),
        )
        app.state.engine, app.state.runner = engine, runner
        recovery = asyncio.create_task(
            runner.recovery_loop(settings.recovery_interval, settings.recovery_batch),
            name="recovery-loop",
        )
        log.info("orchestrator %s started (incarnation %s)", owner.instance_id, owner.incarnation)
        try:
            yield
        finally:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
            await runner.stop()
            await store.release_leases(owner)
            for client in clients.values():
                await client.http.aclose()
            await engine.dispose()

    app = FastAPI(title="saga orchestrator", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    http_metrics.instrument(app)

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> JSONResponse:
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure means: not healthy
            return JSONResponse(error_body("database_unavailable", str(exc)), status_code=503)
        return JSONResponse({"status": "ok"})

    app.include_router(router)
    app.include_router(admin)
    return app
