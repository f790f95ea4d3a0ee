"""How the runner shares its slots: recovered sagas first, and a recovery loop that waits."""

import asyncio
from datetime import timedelta

from sagaengine.definition import RetryPolicy
from sagaengine.runner import SagaRunner, _Slots
from sagaengine.store import Owner

POLICY = RetryPolicy(attempts=1, initial_backoff=0.1, max_backoff=0.1, max_seconds=1)


async def _turns() -> None:
    for _ in range(50):  # let every ready task run
        await asyncio.sleep(0)


def test_a_recovered_saga_gets_the_next_slot_before_new_starts():
    async def scenario() -> list[str]:
        slots, order = _Slots(1), []

        async def run(name: str, first: bool, done: asyncio.Event) -> None:
            async with slots.slot(first=first):
                order.append(name)
                await done.wait()

        done = asyncio.Event()
        tasks = [asyncio.create_task(run("holder", False, done))]
        await _turns()
        tasks.append(asyncio.create_task(run("new start", False, done)))
        await _turns()
        tasks.append(asyncio.create_task(run("recovered", True, done)))
        await _turns()
        done.set()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["holder", "recovered", "new start"]


class _NoOrphans:
    lease = timedelta(seconds=30)

    async def claim_expired(self, owner, limit, *, own_orphans=False):
        return []


class _CountingEvent(asyncio.Event):
    clears = 0

    def clear(self) -> None:
        self.clears += 1
        super().clear()


def test_with_no_room_the_recovery_loop_waits_for_a_run_to_end_and_does_not_spin():
    async def scenario() -> int:
        runner = SagaRunner(
            _NoOrphans(),
            {},
            owner=Owner.new("scheduling-test"),
            step_timeout=1,
            action_policy=POLICY,
            compensation_policy=POLICY,
            definitions={},
            max_running=2,
        )
        runner._room = room = _CountingEvent()
        runner._first_waiting = 2  # as many recovered sagas waiting as there are slots
        loop = asyncio.create_task(runner.recovery_loop(interval=60, batch=10))
        await _turns()
        room.set()  # a run ended, and its slot went to one that was waiting: still no room
        await _turns()
        loop.cancel()
        return room.clears

    assert asyncio.run(scenario()) == 2  # one look at the start, one when the run ended
