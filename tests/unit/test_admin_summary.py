"""The admin's row of a saga shows the business keys its definition names, and still lists a
saga whose definition this process lacks or whose stored data no longer reads."""

import pytest

from orchestrator.api import summary
from orchestrator.definitions import SAGAS
from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.memory import InMemorySagaStore
from sagaengine.registry import Registry
from sagaengine.store import SagaState

pytestmark = pytest.mark.anyio


async def _saga(payload: dict) -> SagaState:
    store = InMemorySagaStore(30)
    saga = await store.create(PAYMENT_SAGA, payload, None, "order:1", "owner#1.token")
    assert saga is not None
    return saga


async def test_the_keys_come_from_the_definition_and_stand_at_the_top_level_too():
    row = summary(SAGAS, await _saga({"order_id": 41}))

    assert row.keys == {"order_id": 41, "user_id": None}
    assert row.model_dump()["order_id"] == 41


async def test_a_saga_whose_data_no_longer_reads_is_listed_without_keys():
    row = summary(SAGAS, await _saga({"order_id": "forty-one"}))

    assert (row.type, row.keys) == ("payment", {})


async def test_a_saga_of_a_definition_this_process_lacks_is_listed_without_keys():
    row = summary(
        Registry(*(d for d in SAGAS.current.values() if d.name != "payment")),
        await _saga({"order_id": 41}),
    )

    assert (row.type, row.keys) == ("payment", {})
