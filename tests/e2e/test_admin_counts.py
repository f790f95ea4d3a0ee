"""The admin page's counts cost the same at a million sagas as at ten: final sagas are counted
from the planner's statistics once the table is large, and marked as estimates."""

import asyncio
import uuid

import psycopg
import pytest
from sqlalchemy.engine import make_url

from orchestrator.admin_queries import Count
from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.decisions import Position
from sagaengine.definition import Phase, SagaStatus
from sagaengine.store import Owner
from tests.conftest import database_url
from tests.e2e.inprocess import saga_store

pytestmark = pytest.mark.usefixtures("databases")

DONE = Position(SagaStatus.COMPLETED, 4, Phase.ACTION)


def _analyze() -> None:
    dsn = make_url(database_url("ORCHESTRATOR")).set(drivername="postgresql")
    with psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute("ANALYZE sagas")


def test_counts_are_exact_while_small_and_estimated_from_statistics_when_large():
    async def scenario():
        async with saga_store() as store:
            owner = Owner.new("counts-test")
            running = []
            for n in range(6):
                order_id = uuid.uuid4().int % 10**12
                token = owner.lease_token()
                saga = await store.create(
                    PAYMENT_SAGA, {"order_id": order_id}, None, f"order:{order_id}", token
                )
                if n < 4:
                    await store.move(saga, token, DONE)
                else:
                    running.append((saga, token))
            exact = await store.admin.count_by_status()
            small = await store.admin.counts_at_a_glance()
            _analyze()
            # As if the table were past the threshold: the statistics of a freshly analyzed
            # table, all of whose rows ANALYZE read, give the exact shares.
            large = await store.admin.counts_at_a_glance(exact_below=0)
            for saga, token in running:  # leave nothing for another orchestrator to recover
                await store.move(saga, token, DONE)
            return exact, small, large

    exact, small, large = asyncio.run(scenario())
    assert {s: c.n for s, c in small.items()} == exact
    assert not any(c.estimated for c in small.values())
    assert large[SagaStatus.COMPLETED] == Count(exact[SagaStatus.COMPLETED], estimated=True)
    assert large[SagaStatus.RUNNING] == Count(exact[SagaStatus.RUNNING])  # never estimated
    assert str(large[SagaStatus.COMPLETED]).startswith("≈")
