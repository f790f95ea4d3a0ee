"""A deploy that changes a saga's definition: sagas in flight finish on the version they started
with, new sagas start on the new one."""

import asyncio
import time
from dataclasses import replace

from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.starting import start_saga
from tests.e2e.client import Api, assert_invariants, held
from tests.e2e.inprocess import private_orchestrator_database, runner, saga_store
from tools.stack import Stack

V1 = PAYMENT_SAGA
# Version 2 approves the payment before it deducts the balance.
V2 = replace(V1, version=2, steps=(V1.steps[0], V1.steps[2], V1.steps[1], V1.steps[3]))


async def _deploy(api: Api, stack: Stack, old_order: int, new_order: int):
    # On a database of its own: the stack's orchestrator must not take the saga over instead.
    database = private_orchestrator_database("deploy")
    async with (
        saga_store(lease_seconds=1, database=database) as store,
        runner(store, stack, "old-deploy", {V1.key: V1}, step_timeout=0.5) as old,
        runner(store, stack, "new-deploy", {V1.key: V1, V2.key: V2}, step_timeout=0.5) as new,
    ):
        # The old deployment starts a saga on v1 and dies while its deduction is in flight: every
        # deduction is held at the user service until the new deployment has the saga.
        api.fault("user", "deduct", "hold", times=None)
        in_flight = await start_saga(old, V1, {"order_id": old_order}, None)
        deadline = time.monotonic() + 10
        while held(api, "user", "deduct") == 0:
            assert time.monotonic() < deadline, "the deduction never started"
            await asyncio.sleep(0.05)
        await old.stop()  # gone without a word: its lease runs out

        # The new deployment takes the saga over once the lease expires, and starts a new one.
        deadline = time.monotonic() + 15
        while not await new.recover(limit=10):
            assert time.monotonic() < deadline, "the new deployment never took the saga over"
            await asyncio.sleep(0.2)
        api.clear_faults()  # the held deductions go on: the old run's, applied late, replays
        fresh = await start_saga(new, V2, {"order_id": new_order}, None)
        finished = [await new.wait_until_final(s.id, 30) for s in (in_flight, fresh)]
        histories = [await store.admin.attempts(s.id) for s in (in_flight, fresh)]
        return finished, histories, database


def _action_order(history) -> list[str]:
    names = []
    for attempt in history:
        if attempt.phase == "action" and attempt.status == "SUCCEEDED":
            names.append(attempt.step_name)
    return names


def test_in_flight_sagas_finish_on_their_version_after_a_deploy(api: Api, stack: Stack):
    user_id = api.create_user(10_000)
    old_order, new_order = api.create_order(user_id, 1_000), api.create_order(user_id, 2_000)

    deployed = asyncio.run(_deploy(api, stack, old_order, new_order))
    (old, new), (old_history, new_history), database = deployed

    assert (old.version, old.status) == (1, "COMPLETED")
    assert _action_order(old_history) == [s.name for s in V1.steps]
    assert (new.version, new.status) == (2, "COMPLETED")
    assert _action_order(new_history) == [s.name for s in V2.steps]
    assert api.balance(user_id) == 7_000
    assert_invariants([str(old.id), str(new.id)], [user_id], orchestrator=database)
