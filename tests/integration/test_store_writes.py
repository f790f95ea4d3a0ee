"""The saga store's writes tried again after an answer lost with the connection (the database
crashed after committing, or before): a move is not taken for a lost lease, and a write-ahead
leaves no attempt that looks in flight."""

import asyncio
import uuid

import pytest
from sqlalchemy import select

from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.decisions import Position
from sagaengine.definition import OutcomeEvent, Phase, RemoteCall, SagaStatus
from sagaengine.schema import OutboxMessage, StepAttempt
from sagaengine.store import LeaseLost, Owner, SagaStore
from tests.e2e.inprocess import private_orchestrator_database, saga_store

pytestmark = pytest.mark.usefixtures("databases")


@pytest.fixture(scope="module")
def database(databases) -> str:
    """The sagas these tests leave running must not be taken over by a live orchestrator."""
    return private_orchestrator_database("store_writes")


CALL = RemoteCall("order", "POST", "/orders/1/payment-complete")
COMPLETED = Position(SagaStatus.COMPLETED, 4, Phase.ACTION)


async def _started(store: SagaStore, owner: Owner):
    token = owner.lease_token()
    lock = f"order:test-{uuid.uuid4()}"
    state = await store.create(PAYMENT_SAGA, {"order_id": 1}, None, lock, token)
    return state, token


async def _attempts(store: SagaStore, saga_id: uuid.UUID) -> list[tuple[int, str]]:
    async with store.sessionmaker() as session:
        rows = await session.execute(
            select(StepAttempt.attempt, StepAttempt.status)
            .where(StepAttempt.saga_id == saga_id)
            .order_by(StepAttempt.id)
        )
        return [tuple(row) for row in rows]


def test_a_final_move_tried_again_after_it_committed_unseen_stands(database):
    async def scenario():
        async with saga_store(database=database) as store:
            state, token = await _started(store, Owner.new("store-test"))
            event = OutcomeEvent("order:1", "order.paid", {"order_id": 1})
            await store.move(state, token, COMPLETED, event=event)
            await store.move(state, token, COMPLETED, event=event, again=True)
            with pytest.raises(LeaseLost):  # a first try that matches nothing: not ours
                await store.move(state, token, COMPLETED, event=event)
            async with store.sessionmaker() as session:
                events = await session.scalars(
                    select(OutboxMessage.type).where(OutboxMessage.saga_id == state.id)
                )
                return list(events)

    assert asyncio.run(scenario()) == ["order.paid"]


def test_a_move_tried_again_on_a_saga_another_run_took_is_a_lost_lease(database):
    async def scenario():
        async with saga_store(database=database) as store:
            state, _ = await _started(store, Owner.new("store-test"))
            with pytest.raises(LeaseLost):
                await store.move(state, "someone-else#x.y", COMPLETED, again=True)

    asyncio.run(scenario())


def test_a_write_ahead_tried_again_leaves_the_unseen_one_interrupted(database):
    async def scenario():
        async with saga_store(database=database) as store:
            state, token = await _started(store, Owner.new("store-test"))
            key = f"{state.id}:complete_order_payment:action"
            await store.begin_attempt(state.id, token, 3, "complete", Phase.ACTION, key, CALL)
            await store.begin_attempt(
                state.id, token, 3, "complete", Phase.ACTION, key, CALL, again=True
            )
            return await _attempts(store, state.id)

    assert asyncio.run(scenario()) == [(1, "INTERRUPTED"), (2, "STARTED")]
