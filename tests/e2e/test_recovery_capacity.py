"""A runner runs no more sagas at once than it has room for: starts beyond it wait their turn,
recovery takes over no more than fits; and every saga still finishes."""

import asyncio

from orchestrator.definitions import SAGAS as REGISTRY
from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.definition import SagaStatus
from sagaengine.runner import SagaRunner
from sagaengine.store import Owner
from tests.e2e.client import Api
from tests.e2e.inprocess import runner, saga_store
from tools.stack import Stack

ORPHANS = 10
ROOM = 3


def _counting_runs(r: SagaRunner) -> dict[str, int]:
    """Count the runs holding a slot (in `_run`), and their peak."""
    counts = {"running": 0, "peak": 0}
    run = r._run

    async def counting_run(*args, **kwargs) -> None:
        counts["running"] += 1
        counts["peak"] = max(counts["peak"], counts["running"])
        try:
            await run(*args, **kwargs)
        finally:
            counts["running"] -= 1

    r._run = counting_run
    return counts


def test_recovery_takes_no_more_orphans_than_it_has_room_for(api: Api, stack: Stack):
    user_id = api.create_user(1_000_000)
    orders = [api.create_order(user_id, 1_000) for _ in range(ORPHANS)]
    # Every run holds its first call for a while, so that runs overlap.
    api.fault("order", "start_payment", "delay", times=ORPHANS, delay_ms=300)

    async def scenario() -> tuple[int, list[SagaStatus], set[str]]:
        # Sagas left behind by an earlier incarnation of this same instance ("capacity"), as
        # after a SIGKILL: their leases have not expired, so only this instance takes them back
        # (the stack's own orchestrator, on the same database, leaves them alone).
        async with saga_store() as dead:
            owner = Owner.new("capacity")
            sagas = [
                await dead.create(
                    PAYMENT_SAGA, {"order_id": o}, None, f"order:{o}", owner.lease_token()
                )
                for o in orders
            ]
        async with (
            saga_store() as store,
            runner(store, stack, "capacity", REGISTRY, max_running=ROOM) as r,
        ):
            counts = _counting_runs(r)
            loop = asyncio.create_task(r.recovery_loop(interval=5, batch=100))
            try:
                finals = [await r.wait_until_final(s.id, timeout=60) for s in sagas]
            finally:
                loop.cancel()
            owners = {
                a.owner.split(".")[0] for s in sagas for a in await store.admin.attempts(s.id)
            }
            return counts["peak"], [s.status for s in finals], owners

    try:
        peak, statuses, owners = asyncio.run(scenario())
    finally:
        api.clear_faults()
    assert peak == ROOM
    assert statuses == [SagaStatus.COMPLETED] * ORPHANS
    assert len(owners) == 1 and owners.pop().startswith("capacity#")  # all run here


def test_starts_beyond_the_room_are_recorded_and_wait_their_turn(api: Api, stack: Stack):
    user_id = api.create_user(1_000_000)
    orders = [api.create_order(user_id, 1_000) for _ in range(ORPHANS)]
    api.fault("order", "start_payment", "delay", times=ORPHANS, delay_ms=300)

    async def scenario() -> tuple[int, list[SagaStatus]]:
        async with (
            saga_store() as store,
            runner(store, stack, "admission", REGISTRY, max_running=ROOM) as r,
        ):
            counts = _counting_runs(r)
            sagas = []
            for o in orders:  # all started at once, as a burst of requests would
                token = r.owner.lease_token()
                saga = await store.create(PAYMENT_SAGA, {"order_id": o}, None, f"order:{o}", token)
                r.spawn(saga.id, token, saga)
                sagas.append(saga)
            finals = [await r.wait_until_final(s.id, timeout=60) for s in sagas]
            return counts["peak"], [s.status for s in finals]

    try:
        peak, statuses = asyncio.run(scenario())
    finally:
        api.clear_faults()
    assert peak == ROOM
    assert statuses == [SagaStatus.COMPLETED] * ORPHANS
