"""Every saga store under one harness: the store, a way to let time pass for its leases, and its
attempts and outbox events read back as the same plain values, whichever store keeps them."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from common.db import open_pool
from sagaengine.definition import Phase
from sagaengine.memory import InMemorySagaStore
from sagaengine.postgres import PostgresSagaStore
from sagaengine.store import AttemptStatus, OutboxStatus, SagaStore
from tests.e2e.inprocess import private_orchestrator_database
from tests.fakes import ManualClock

LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class Attempt:
    step: int
    phase: Phase
    attempt: int
    status: AttemptStatus
    owner: str
    key: str
    request: dict[str, Any]
    response: dict[str, Any] | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class Event:
    aggregate_id: str
    type: str
    payload: dict[str, Any]
    status: OutboxStatus


class Harness(Protocol):
    store: SagaStore

    async def pass_time(self, seconds: float) -> None:
        """As far as leases go: one that had less left than `seconds` has expired."""
        ...

    async def attempts(self, saga_id: uuid.UUID) -> list[Attempt]: ...

    async def events(self, saga_id: uuid.UUID) -> list[Event]: ...


class MemoryHarness:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.store = InMemorySagaStore(LEASE_SECONDS, clock=self.clock)

    async def pass_time(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def attempts(self, saga_id: uuid.UUID) -> list[Attempt]:
        return [
            Attempt(
                a.step,
                a.phase,
                a.attempt,
                a.status,
                a.owner,
                a.idempotency_key,
                a.request,
                a.response,
                a.error,
            )
            for a in self.store.attempts
            if a.saga_id == saga_id
        ]

    async def events(self, saga_id: uuid.UUID) -> list[Event]:
        return [
            Event(e.aggregate_id, e.type, e.payload, e.status)
            for e in self.store.outbox
            if e.saga_id == saga_id
        ]


class PostgresHarness:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.store = PostgresSagaStore(pool, LEASE_SECONDS)

    async def pass_time(self, seconds: float) -> None:
        # Every deadline moves back instead of the server's clock forward: the same to a lease.
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE sagas SET lease_expires_at = "
                "lease_expires_at - make_interval(secs => %s::float8)",
                (seconds,),
            )

    async def attempts(self, saga_id: uuid.UUID) -> list[Attempt]:
        async with self.pool.connection() as conn:
            rows = await conn.execute(
                "SELECT step, phase, attempt, status, owner, idempotency_key, request, response,"
                " error FROM saga_steps WHERE saga_id = %s ORDER BY id",
                (saga_id,),
            )
            return [
                Attempt(step, Phase(phase), attempt, AttemptStatus(status), *rest)
                for step, phase, attempt, status, *rest in await rows.fetchall()
            ]

    async def events(self, saga_id: uuid.UUID) -> list[Event]:
        async with self.pool.connection() as conn:
            rows = await conn.execute(
                "SELECT aggregate_id, type, payload, status FROM outbox"
                " WHERE saga_id = %s ORDER BY id",
                (saga_id,),
            )
            return [
                Event(aggregate, kind, payload, OutboxStatus(status))
                for aggregate, kind, payload, status in await rows.fetchall()
            ]


@pytest.fixture(scope="session")
def contract_database(databases: None) -> str:
    """Sagas of its own, out of reach of any orchestrator's recovery (and of other tests')."""
    return private_orchestrator_database("store_contract")


@pytest.fixture(params=["memory", "postgres"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    url = make_url(request.getfixturevalue("contract_database"))
    pool = await open_pool(url.set(drivername="postgresql+psycopg"), 2)
    try:
        async with pool.connection() as conn:  # each test starts from no saga at all
            await conn.execute("TRUNCATE sagas, saga_steps, outbox")
        yield PostgresHarness(pool)
    finally:
        await pool.close()
