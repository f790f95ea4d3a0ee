"""An event is written if and only if the saga outcome it reports commits."""

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.decisions import Position
from sagaengine.definition import OutcomeEvent, Phase, SagaStatus
from sagaengine.schema import OutboxMessage
from sagaengine.store import LeaseLost, Owner
from tests.e2e.inprocess import saga_store

pytestmark = pytest.mark.usefixtures("databases")

COMPLETED = Position(SagaStatus.COMPLETED, 4, Phase.ACTION)


async def _outbox_rows(store, saga_id) -> int:
    async with store.sessionmaker() as session:
        return await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.saga_id == saga_id)
        )


def _event(payload) -> OutcomeEvent:
    return OutcomeEvent("order:test", "order.paid", payload)


def test_no_event_without_the_outcome_and_no_outcome_without_its_event():
    async def scenario():
        async with saga_store() as store:
            owner = Owner.new("atomicity-test")
            token = owner.lease_token()
            order_id = uuid.uuid4().int % 10**12
            saga = await store.create(
                PAYMENT_SAGA, {"order_id": order_id}, None, f"order:{order_id}", token
            )

            # A run that lost its lease cannot finish the saga, nor write its event.
            with pytest.raises(LeaseLost):
                await store.move(saga, owner.lease_token(), COMPLETED, event=_event({"a": 1}))
            lost = (await store.get(saga.id), await _outbox_rows(store, saga.id))

            # An event that cannot be written rolls the outcome back with it.
            with pytest.raises(TypeError):
                await store.move(saga, token, COMPLETED, event=_event({"bad": object()}))
            broken = (await store.get(saga.id), await _outbox_rows(store, saga.id))

            await store.move(saga, token, COMPLETED, event=_event({"a": 1}))
            done = (await store.get(saga.id), await _outbox_rows(store, saga.id))
            return lost, broken, done

    (lost, lost_rows), (broken, broken_rows), (done, done_rows) = asyncio.run(scenario())
    assert (lost.status, lost_rows) == (SagaStatus.RUNNING, 0)
    assert (broken.status, broken_rows) == (SagaStatus.RUNNING, 0)
    assert (done.status, done_rows) == (SagaStatus.COMPLETED, 1)
