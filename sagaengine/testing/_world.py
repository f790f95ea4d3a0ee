"""One scenario's world: a store in memory on a clock that moves only when told, the network
of model participants with its faults, and the orchestrator's process of the moment (a runner):
each time that process dies, another resumes the saga by recovery, once its lease has expired."""

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sagaengine.definition import LIVE_STATUSES, RetryPolicy, SagaDefinition, SagaStatus
from sagaengine.errors import Refusal
from sagaengine.memory import InMemorySagaStore
from sagaengine.runner import SagaRunner
from sagaengine.starting import start_prepared
from sagaengine.store import Owner, SagaState
from sagaengine.testing._faults import FaultInjector

# Retries without waits: what is explored is which calls are made, not how long apart.
POLICY = RetryPolicy(attempts=3, initial_backoff=0, max_backoff=0, max_seconds=3600)
STEP_TIMEOUT = 1.0  # only handed to the model participants, which answer at once
CLIENT_KEY = "explored"
RESUMPTIONS = 5  # runs that may resume one saga before it counts as stuck


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class WatchedRunner(SagaRunner):
    """A runner that tells when none of its runs is left (`idle`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.idle = asyncio.Event()
        self.idle.set()
        self._runs = 0

    def spawn(self, *args: Any, **kwargs: Any) -> None:
        self._runs += 1
        self.idle.clear()
        super().spawn(*args, **kwargs)

    async def run(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().run(*args, **kwargs)
        finally:
            self._runs -= 1
            if self._runs == 0:
                self.idle.set()


class World:
    """One scenario's store, clock and network, and the process of the moment (its runner):
    each time the process dies, another takes over."""

    def __init__(self, definition: SagaDefinition[Any], network: FaultInjector):
        self.definition = definition
        self.network = network
        self.found: list[str] = []
        self.clock = ManualClock()
        self.lease = 1.0 + max(step.timeout or STEP_TIMEOUT for step in definition.steps)
        self.store = InMemorySagaStore(self.lease, clock=self.clock)
        self.runner = self._process()
        self._start: asyncio.Task[Any] | None = None

    def _process(self) -> WatchedRunner:
        return WatchedRunner(
            self.store,
            Everywhere(self.network),
            definitions={self.definition.key: self.definition},
            owner=Owner.new("explored"),
            step_timeout=STEP_TIMEOUT,
            action_policy=POLICY,
            compensation_policy=POLICY,
            clock=self.clock,
        )

    async def run(self, data: Any) -> SagaStatus | None:
        """Start the saga on the engine's start path; where it stands once no run moves it."""
        start = self._start = asyncio.create_task(
            start_prepared(self.runner, self.definition, data, CLIENT_KEY)
        )
        await _either(start, self.network.crashed)
        if start.done() and not start.cancelled():
            error = start.exception()
            if error is not None and not isinstance(error, Refusal):
                self.found.append(f"the start raised {type(error).__name__}: {error}")
        return await self._still()

    async def retry(self) -> SagaStatus | None:
        state = await self._saga()
        assert state is not None
        if not await self.runner.retry(state):
            self.found.append("an operator's retry found the saga no longer NEEDS_ATTENTION")
        return await self._still()

    async def _still(self) -> SagaStatus | None:
        """Where the saga stands once no run moves it, resuming it each time its process died."""
        for _ in range(RESUMPTIONS):
            if not self.network.crashed.is_set():
                idle = asyncio.ensure_future(self.runner.idle.wait())
                await _either(idle, self.network.crashed)
                idle.cancel()
            if not self.network.crashed.is_set():
                state = await self._saga()
                if state is None or state.status not in LIVE_STATUSES:
                    return state.status if state is not None else None
            # Its process died (or its run ended with the saga live): once the lease expired,
            # another process's recovery resumes it.
            await self._die()
            self.runner = self._process()
            await self.runner.recover(1)
        state = await self._saga()
        status = state.status if state is not None else None
        self.found.append(f"the saga is still {status} after {RESUMPTIONS} runs")
        return status

    async def close(self) -> None:
        """End every run still going (a scenario that timed out leaves one behind)."""
        if self._start is not None:
            self._start.cancel()
            with contextlib.suppress(BaseException):
                await self._start
        await self.runner.stop()

    async def _die(self) -> None:
        self.network.crashed.clear()
        await self.close()
        self.clock.advance(self.lease + 1)

    async def _saga(self) -> SagaState | None:
        return await self.store.find_by_client_key(self.definition.name, CLIENT_KEY)


async def _either(task: "asyncio.Future[Any]", crashed: asyncio.Event) -> None:
    """Wait for `task` to end or the process to die, whichever comes first."""
    dying = asyncio.ensure_future(crashed.wait())
    await asyncio.wait({task, dying}, return_when=asyncio.FIRST_COMPLETED)
    dying.cancel()


class Everywhere(Mapping[str, FaultInjector]):
    """The runner's clients: the one network, whatever service a call names."""

    def __init__(self, network: FaultInjector):
        self.network = network

    def __getitem__(self, service: str) -> FaultInjector:
        return self.network

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
