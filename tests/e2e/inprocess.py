"""An orchestrator runner inside the test process, on the test database and the stack's
services: for tests that need saga definitions the shipped orchestrator does not have."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from common.db import drop_database, migrate, open_pool
from orchestrator.admin_queries import AdminQueries
from sagaengine.definition import RetryPolicy, SagaDefinition
from sagaengine.http import build_clients
from sagaengine.postgres import PostgresSagaStore
from sagaengine.runner import SagaRunner
from sagaengine.store import Owner, SagaStore
from tests.conftest import database_url
from tools.stack import Stack

QUICK = RetryPolicy(attempts=3, initial_backoff=0.05, max_backoff=0.2, max_seconds=10)


def private_orchestrator_database(name: str) -> str:
    """A fresh orchestrator database beside the suite's: sagas written there are out of reach of
    the stack's orchestrator, whose recovery loop would otherwise race a test's runner for them."""
    url = make_url(database_url("ORCHESTRATOR")).set(drivername="postgresql+psycopg")
    url = url.set(database=f"{url.database}_{name}")
    drop_database(url)
    migrate(url, "orchestrator")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class StoreUnderTest(PostgresSagaStore):
    """The engine's store, with the admin's reads beside it for a test's assertions."""

    def __init__(self, pool: AsyncConnectionPool, engine: AsyncEngine, lease_seconds: float):
        super().__init__(pool, lease_seconds)
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self.admin = AdminQueries(self.sessionmaker)


@asynccontextmanager
async def saga_store(
    lease_seconds: float = 10, database: str | None = None
) -> AsyncIterator[StoreUnderTest]:
    url = make_url(database or database_url("ORCHESTRATOR")).set(drivername="postgresql+psycopg")
    engine = create_async_engine(url)
    pool = await open_pool(url, 10)
    try:
        yield StoreUnderTest(pool, engine, lease_seconds)
    finally:
        await pool.close()
        await engine.dispose()


@asynccontextmanager
async def runner(
    store: SagaStore,
    stack: Stack,
    name: str,
    definitions: Mapping[tuple[str, int], SagaDefinition],
    step_timeout: float = 1.0,
    max_running: int = 64,
) -> AsyncIterator[SagaRunner]:
    urls = {n: stack.url(n) for n in ("order", "user", "payment")}
    saga_runner = SagaRunner(
        store,
        build_clients(urls, "dev-service-token", step_timeout),
        owner=Owner.new(name),
        step_timeout=step_timeout,
        action_policy=QUICK,
        compensation_policy=QUICK,
        definitions=definitions,
        max_running=max_running,
    )
    try:
        yield saga_runner
    finally:
        await saga_runner.stop()
        for client in saga_runner.clients.values():
            await client.http.aclose()
