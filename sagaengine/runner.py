"""Runs sagas: persists and executes what `sagaengine.definition` decides.

For each step: record the attempt (write-ahead), make the call, record its outcome, move the saga.
A call that succeeds has its end recorded in the same transaction as the saga's move (two
round trips per step, not three). Transient faults are retried with exponential backoff and
jitter under the same Idempotency-Key; a business refusal is final at once. No database
transaction is open during a remote call.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from sagaengine import context as logs
from sagaengine import tracing
from sagaengine.decisions import (
    CallOutcome,
    Position,
    after_action,
    after_compensation,
    resume_after_attention,
)
from sagaengine.definition import (
    FINAL_STATUSES,
    OutcomeEvent,
    Phase,
    RemoteCall,
    RetryPolicy,
    SagaDefinition,
    SagaOutcome,
    SagaStatus,
    Step,
    StepContext,
    StepKind,
    idempotency_key,
)
from sagaengine.http import BusinessRefusal, ParticipantClient, StepError, TransientFault
from sagaengine.metrics import EngineMetrics
from sagaengine.outage import Outage, backoff, unavailable
from sagaengine.store import AttemptStatus, LeaseLost, NextAttempt, Owner, SagaState, SagaStore

log = logging.getLogger(__name__)
T = TypeVar("T")


Context = StepContext[Any]


def check_leases(
    lease_seconds: float,
    step_timeout: float,
    action_policy: RetryPolicy,
    compensation_policy: RetryPolicy,
    definitions: Iterable[SagaDefinition[Any]] = (),
) -> None:
    """A run renews its lease at every write: one call plus one backoff must fit in a lease, or
    another run takes the saga over mid-call and its retry budget starts again. Checked for the
    runner's defaults and for every step's own timeout and policy; raises ValueError."""
    longest = step_timeout + max(action_policy.max_backoff, compensation_policy.max_backoff)
    calls = [("the step timeout and the longest backoff", longest)]
    for definition in definitions:
        for step in definition.steps:
            seconds = (step.timeout or step_timeout) + (step.retry or action_policy).max_backoff
            calls.append((f"{definition.name} v{definition.version} step {step.name}", seconds))
    for what, seconds in calls:
        if seconds >= lease_seconds:
            raise ValueError(
                f"{what}: a call and its backoff ({seconds:g} s) must fit in the saga lease "
                f"({lease_seconds:g} s)"
            )


# The statuses a saga stands in until it is final, as the gauges show them.
WATCHED_STATUSES = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.NEEDS_ATTENTION)


class StartRefused(Exception):
    """The first step refused the start with a refusal its definition names: the saga was
    removed, as if never recorded. `error` is the refusal, for the client's answer."""

    def __init__(self, error: StepError):
        super().__init__(str(error))
        self.error = error


class StartUnreachable(Exception):
    """The first call could not reach its service (nothing was sent): the saga was removed, and
    the start can be tried again later."""

    def __init__(self, error: StepError):
        super().__init__(str(error))
        self.error = error


class HandingOver(Exception):
    """This replica is stopping: a run ends at a point it has persisted (its call ended, its
    outcome recorded) instead of starting another call, and its lease, released at exit, lets
    another replica resume the saga from there at once."""


class _Slots:
    """At most `size` saga runs at once. A run waiting for a slot that goes `first` (a recovered
    saga, an operator's retry: one holding a semantic lock, perhaps money) is handed the next
    free slot before any new start: under sustained load, recovery is never starved."""

    def __init__(self, size: int):
        self.size = size
        self.held = 0
        self._first: deque[asyncio.Future[None]] = deque()
        self._next: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def slot(self, *, first: bool) -> AsyncIterator[None]:
        await self._acquire(first)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, first: bool) -> None:
        if self.held < self.size and not self._first and not self._next:
            self.held += 1
            return
        queue = self._first if first else self._next
        waiter = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter  # a run that ends hands its slot over: `held` does not change
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
            raise

    @property
    def waiting(self) -> int:
        return sum(not w.done() for queue in (self._first, self._next) for w in queue)

    def _release(self) -> None:
        for queue in (self._first, self._next):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self.held -= 1


class _Change(asyncio.Event):
    """Set when a saga run here moves; carries the state it moved to (None: ask the store)."""

    state: "SagaState | None" = None


@dataclass(frozen=True)
class Called:
    """A call's outcome. `unrecorded` is the attempt whose success is not written yet: the
    caller writes it with the move that follows, in one transaction."""

    outcome: CallOutcome
    response: dict[str, Any] | None = None
    error: StepError | None = None
    unrecorded: int | None = None

    def finished(self) -> tuple[int, AttemptStatus, dict[str, Any] | None] | None:
        if self.unrecorded is None:
            return None
        return self.unrecorded, AttemptStatus.SUCCEEDED, self.response


class SagaRunner:
    def __init__(
        self,
        store: SagaStore,
        clients: Mapping[str, ParticipantClient],
        *,
        definitions: Mapping[tuple[str, int], SagaDefinition[Any]],
        owner: Owner,
        step_timeout: float,
        action_policy: RetryPolicy,
        compensation_policy: RetryPolicy,
        on_outcome: Callable[[], None] | None = None,
        max_running: int = 64,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: EngineMetrics | None = None,
    ):
        self.metrics = metrics or EngineMetrics.unregistered()
        self.metrics.declare(definitions.values())
        self.definitions = definitions
        check_leases(
            store.lease.total_seconds(),
            step_timeout,
            action_policy,
            compensation_policy,
            definitions.values(),
        )
        self.clock = clock
        # Sagas an operator retried in this process: their deadline no longer stops them.
        self._deadline_lifted: set[uuid.UUID] = set()
        # Sagas an operator cancelled through this process (why): a run of theirs here retries
        # its call no more (a run's end forgets it).
        self._cancelling: dict[uuid.UUID, str] = {}
        self.on_outcome = on_outcome  # a saga became final (its outbox event is written)
        self.store = store
        self.clients = clients
        self.owner = owner
        self.step_timeout = step_timeout
        self.action_policy = action_policy
        self.compensation_policy = compensation_policy
        # At most this many sagas run at once in this process: beyond it, a started saga is
        # recorded at once and waits its turn (admission control: a flood of starts must not
        # push the services' answers past the step timeout). Recovered sagas go first, and
        # recovery takes over no more than can wait at the head of the line. Starts are never
        # refused.
        self.max_running = max_running
        self._slots = _Slots(max_running)
        self._first_waiting = 0  # recovered or retried runs spawned, not yet holding a slot
        self._room = asyncio.Event()  # set when a run ends
        self._tasks: set[asyncio.Task[None]] = set()
        self._holding: set[asyncio.Task[None]] = set()  # the runs that hold a slot
        self._leases: dict[asyncio.Task[None], tuple[uuid.UUID, str]] = {}  # each run's saga
        self._ended_waiting: list[tuple[uuid.UUID, str]] = []  # runs the drain ended unstarted
        # Set when this replica begins to stop (drain()): no new start, recovery or call.
        self._stopping = asyncio.Event()
        self._drain_until = 0.0  # when the runs still going are cut short
        self._changed: dict[uuid.UUID, _Change] = {}
        # The state of every saga this process is running, as last persisted: a client waiting
        # for one of them reads it here rather than from the database.
        self._running: dict[uuid.UUID, SagaState] = {}
        # The attempt (id, call) the last move of a saga run here wrote ahead for its next call.
        self._ahead: dict[uuid.UUID, tuple[int, NextAttempt]] = {}
        self._database = Outage(log, "the orchestrator's database (saga runs)")
        self._recovery_database = Outage(log, "the orchestrator's database (recovery)")

    # -- scheduling ----------------------------------------------------------------------------

    def spawn(
        self,
        saga_id: uuid.UUID,
        token: str,
        state: SagaState | None = None,
        *,
        first: bool = False,
    ) -> None:
        """Run a saga in the background; `state`, if given, is its row as just written; `first`:
        ahead of new starts for a slot (a recovered saga, an operator's retry)."""
        if state is not None:
            self._running[saga_id] = state
        if first:
            self._first_waiting += 1
        task = asyncio.create_task(
            self.run(saga_id, token, state, first=first), name=f"saga-{saga_id}"
        )
        self._tasks.add(task)
        self._leases[task] = (saga_id, token)
        task.add_done_callback(self._run_ended)

    def _run_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._leases.pop(task, None)
        self._room.set()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def begin_drain(self, grace: float) -> None:
        """Stop taking work, at once (on SIGTERM): starts are refused (`ReplicaStopping`),
        recovery claims nothing more, a run waiting for a slot ends (it has made no call), a
        client waiting for a saga is answered as the saga stands, and each running saga ends its
        run once the call it is making has ended and been recorded (`HandingOver`)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._drain_until = time.monotonic() + grace
        waiting = self._tasks - self._holding
        log.info(
            "stopping: %d saga run(s) finish their calls, %d waiting hand over",
            len(self._holding),
            len(waiting),
        )
        for task in waiting:
            task.cancel()
            self._ended_waiting.append(self._leases[task])
        for saga_id in list(self._changed):
            self._notify(saga_id)

    async def drain(self, grace: float) -> None:
        """`begin_drain()`, then wait for the runs to end by themselves until `grace` seconds
        after the drain began; cancel those still running then (their call's outcome is settled
        by key by whoever resumes them). The caller releases this replica's leases afterwards."""
        self.begin_drain(grace)
        # A run ended while waiting for its slot made no call; the call a start's move wrote
        # ahead for it never left.
        for saga_id, token in self._ended_waiting:
            await self._withdraw_unsent(saga_id, token)
        self._ended_waiting.clear()
        if not self._tasks:
            return
        timeout = max(self._drain_until - time.monotonic(), 0.0)
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        if late:
            log.warning(
                "stopping: %d saga run(s) still busy after %.1f s, cut short", len(late), grace
            )
            await self.stop()

    def _notify(self, saga_id: uuid.UUID, state: SagaState | None = None) -> None:
        event = self._changed.pop(saga_id, None)
        if event is not None:
            event.state = state
            event.set()

    async def wait_until_final(self, saga_id: uuid.UUID, timeout: float) -> SagaState | None:
        """The saga once final, or as it stands at the deadline. A saga run by another replica is
        noticed by polling the database; one run here wakes the waiter with its new state."""
        deadline = time.monotonic() + timeout
        silent = False  # no word from a run here since the last look: ask the store
        while True:
            changed = self._changed.setdefault(saga_id, _Change())
            state = (None if silent else self._running.get(saga_id)) or await self.store.get(
                saga_id
            )
            remaining = deadline - time.monotonic()
            if state is None or state.is_final or remaining <= 0 or self.stopping:
                if not changed.is_set() and self._changed.get(saga_id) is changed:
                    del self._changed[saga_id]  # nobody will set it: another replica runs it
                return state
            try:
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, 0.5))
                silent = False
            except TimeoutError:
                silent = True
            if changed.state is not None and changed.state.is_final:
                return changed.state

    # -- running -------------------------------------------------------------------------------

    async def run(
        self,
        saga_id: uuid.UUID,
        token: str,
        state: SagaState | None = None,
        *,
        first: bool = False,
    ) -> None:
        waiting = first
        task = asyncio.current_task()
        assert task is not None
        try:
            async with self._slots.slot(first=first):
                if waiting:
                    self._first_waiting -= 1
                    waiting = False
                self._holding.add(task)
                await self._run(saga_id, token, state, resumed=first)
        finally:
            self._holding.discard(task)
            if waiting:  # cancelled before it got a slot
                self._first_waiting -= 1

    async def _run(
        self, saga_id: uuid.UUID, token: str, state: SagaState | None, *, resumed: bool
    ) -> None:
        logs.saga_id.set(str(saga_id))  # this task's log lines, and its calls, carry the saga
        try:
            if state is None:
                state = await self._persisted(lambda _: self.store.get(saga_id))
            if state is None:
                return
            if state.request_id:
                logs.request_id.set(state.request_id)
            with tracing.run_span(str(saga_id), state.type, state.trace_parent, resumed=resumed):
                while state.status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
                    if self.stopping:
                        raise HandingOver
                    # The version the saga started on, whatever is current now.
                    definition = self.definitions[(state.type, state.version)]
                    if state.status is SagaStatus.RUNNING:
                        state = await self._run_action(definition, state, token)
                    else:
                        state = await self._run_compensation(definition, state, token)
                    self._running[saga_id] = state
                    self._notify(saga_id, state)
                    if state.is_final and self.on_outcome is not None:
                        self.on_outcome()
        except LeaseLost:
            log.info("saga %s: lease lost, another run has it", saga_id)
        except HandingOver:
            await self._withdraw_unsent(saga_id, token)
            where = f"step {state.step} ({state.phase})" if state is not None else "its start"
            log.info("saga %s: handed over at %s, this replica is stopping", saga_id, where)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease expires and the recovery loop resumes it from the persisted step.
            log.exception("saga %s: run failed; it will be recovered", saga_id)
        finally:
            self._running.pop(saga_id, None)
            self._ahead.pop(saga_id, None)
            self._cancelling.pop(saga_id, None)
            if state is None or state.is_final:
                self._deadline_lifted.discard(saga_id)
            self._notify(saga_id)

    def _cancellation(self, definition: SagaDefinition[Any], state: SagaState) -> StepError | None:
        """The refusal an operator's cancellation makes of the saga's next action, if it was
        cancelled and has not passed its pivot (a cancellation is only taken before it)."""
        reason = state.cancel_reason or self._cancelling.get(state.id)
        if reason is None or state.step > definition.pivot_index:
            return None
        return BusinessRefusal("cancelled", f"cancelled by an operator: {reason}")

    async def _close_written_ahead(
        self, state: SagaState, token: str, key: str, refusal: StepError
    ) -> None:
        """The attempt the last move wrote ahead for a call that will not be made: refused."""
        ahead = self._ahead.pop(state.id, None)
        if ahead is not None and ahead[1].key == key:
            await self._finish(
                state, token, ahead[0], AttemptStatus.REFUSED, error=refusal.as_json()
            )

    @staticmethod
    def _context(definition: SagaDefinition[Any], state: SagaState, step: Step[Any]) -> Context:
        return StepContext(
            saga_id=str(state.id),
            data=definition.data_of(state.payload, state.results),
            action_key=idempotency_key(str(state.id), step, Phase.ACTION),
        )

    def _time_left(self, definition: SagaDefinition[Any], state: SagaState) -> float | None:
        """Seconds until the saga's deadline (negative: past it); None if it has none."""
        if definition.deadline is None or state.id in self._deadline_lifted:
            return None
        return (state.created_at + definition.deadline - self.clock()).total_seconds()

    async def _run_action(
        self,
        definition: SagaDefinition[Any],
        state: SagaState,
        token: str,
        *,
        starting: bool = False,
    ) -> SagaState:
        step = definition.steps[state.step]
        ctx = self._context(definition, state, step)
        policy = step.retry or self.action_policy
        time_left = self._time_left(definition, state)
        cancelled = self._cancellation(definition, state)
        if cancelled is not None:
            # An operator cancelled it: no action starts any more (its write-ahead, if one was
            # made, is closed as refused), and what follows is a refusal's: it compensates.
            await self._close_written_ahead(state, token, ctx.action_key, cancelled)
            called = Called(CallOutcome.REFUSED, error=cancelled)
        elif time_left is not None and time_left <= 0:
            # Past the deadline no new action starts: as if refused (unless an earlier attempt
            # got no answer: then its outcome is unknown, as below).
            past_deadline = BusinessRefusal(
                "deadline_exceeded",
                f"the saga is older than its deadline ({definition.deadline}): {step.name} "
                "was not started",
            )
            called = Called(CallOutcome.REFUSED, error=past_deadline)
        else:
            if time_left is not None:  # retries end by the deadline
                policy = replace(policy, max_seconds=min(policy.max_seconds, time_left))
            called = await self._call(
                state,
                token,
                step,
                Phase.ACTION,
                step.action(ctx),
                ctx.action_key,
                replace(policy, attempts=1) if starting else policy,
                defer_success=True,
            )
        if starting and not await self._start_decided(definition, state, token, called):
            return state  # it stands, undecided: the run retries the call in the background
        outcome, response, error = called.outcome, called.response, called.error
        if outcome is not CallOutcome.SUCCEEDED and state.id in self._cancelling:
            # Cancelled while the call was out: its retries stopped; its outcome, unknown or
            # refused, is settled by the compensations as any other (by its key).
            error = self._cancellation(definition, state) or error
        if outcome is CallOutcome.REFUSED and await self._persisted(
            lambda _: self.store.had_unknown_outcome(state.id, state.step, Phase.ACTION)
        ):
            # A refusal after an attempt that got no answer does not prove that nothing
            # happened (the earlier attempt may have applied): treat the outcome as unknown, so
            # the step is settled or compensated by its key as well.
            outcome = CallOutcome.EXHAUSTED
        if outcome is CallOutcome.EXHAUSTED and step.kind is StepKind.PIVOT:
            outcome, response, error = await self._settle(state, token, step, ctx, error)
            if outcome is CallOutcome.EXHAUSTED:
                return await self._needs_attention(state, token, step, Phase.ACTION, error)
        to = after_action(definition, state.step, outcome)
        if to.status is SagaStatus.NEEDS_ATTENTION:
            return await self._needs_attention(state, token, step, Phase.ACTION, error)
        if outcome is CallOutcome.SUCCEEDED:
            assert response is not None, "a call that succeeded has an answer"
            results = {**state.results, step.name: response}
            keys = definition.business_keys(state.payload, results)
            return await self._move(
                definition,
                state,
                token,
                to,
                replace(state, results=results, keys=keys),
                result=(step.name, response),
                finished_attempt=called.finished(),
            )
        cause = {**(error.as_json() if error else {}), "step": step.name}
        return await self._move(definition, state, token, to, replace(state, error=cause))

    def first_call(
        self, definition: SagaDefinition[Any], saga_id: uuid.UUID, payload: dict[str, Any]
    ) -> RemoteCall:
        """The call a new saga makes first (written ahead with the saga: store.create)."""
        step = definition.steps[0]
        data = definition.data_of(payload, {})
        return step.action(StepContext(str(saga_id), data, self._key(saga_id, step)))

    @staticmethod
    def _key(saga_id: uuid.UUID, step: Step[Any]) -> str:
        return idempotency_key(str(saga_id), step, Phase.ACTION)

    async def begin(self, state: SagaState, token: str) -> SagaState:
        """Decide a `starting` saga's start by its first call, made here and now, once:

        - refused with a refusal its definition names (`StartRules.refusals`: the order does not
          exist, or cannot be paid): the saga is removed and StartRefused raised, for the
          client's 4xx, as if it had never been recorded;
        - not sent (the service could not be reached): removed too, StartUnreachable raised
          (the client is told to come back);
        - otherwise it stands, and goes on in the background from where that call left it: the
          next steps, or the same call's retries under its key, or its compensation.

        One check of the business object, then, and no more: the first step is the check.
        Returns the saga as it stands."""
        logs.saga_id.set(str(state.id))  # the start's own lines, and its first call, carry it
        definition = self.definitions[(state.type, state.version)]
        step = definition.steps[0]
        if state.first_attempt is not None:
            call = self.first_call(definition, state.id, state.payload)
            ahead = NextAttempt(0, step.name, Phase.ACTION, self._key(state.id, step), call)
            self._ahead[state.id] = (state.first_attempt, ahead)
        try:
            state = await self._run_action(definition, state, token, starting=True)
        except BaseException:
            self._ahead.pop(state.id, None)  # the run that would have used it is not spawned
            raise
        finally:
            logs.saga_step.set(None)  # the start's request goes on: its lines are not the step's
            logs.saga_phase.set(None)
        if state.status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
            self.spawn(state.id, token, state)
        elif state.is_final and self.on_outcome is not None:
            self.on_outcome()
        return state

    async def _start_decided(
        self, definition: SagaDefinition[Any], state: SagaState, token: str, called: Called
    ) -> bool:
        """After a starting saga's first call: withdraw it and raise (see `begin`), go on
        deciding as for any call (True), or let it stand undecided (False)."""
        error = called.error
        refused = called.outcome is CallOutcome.REFUSED
        refusing = refused and error is not None and error.code in definition.start.refusals
        unsent = isinstance(error, TransientFault) and error.unsent
        if (refusing or unsent) and await self._persisted(
            lambda _: self.store.withdraw(state.id, token)
        ):
            assert error is not None
            raise StartRefused(error) if refusing else StartUnreachable(error)
        if called.outcome is CallOutcome.SUCCEEDED or refused:
            return True  # the move that follows decides it (and clears `starting`)
        await self._persisted(lambda _: self.store.accept(state.id, token))
        return False

    async def _settle(
        self, state: SagaState, token: str, step: Step[Any], ctx: Context, fault: StepError | None
    ) -> tuple[CallOutcome, dict[str, Any] | None, StepError | None]:
        """A pivot whose answer was lost: ask its service whether it went through. The answer
        also makes sure that, if it did not, it never will (a tombstone under its key)."""
        called = await self._call(
            state,
            token,
            step,
            Phase.ACTION,
            step.settle_call(ctx),
            ctx.action_key,
            self.compensation_policy,
            send_key=False,
            kind="settle",
        )
        settled = called.response
        if called.outcome is not CallOutcome.SUCCEEDED or settled is None:
            return CallOutcome.EXHAUSTED, None, called.error or fault
        if settled["outcome"] == "APPLIED":
            return CallOutcome.SUCCEEDED, settled["response"], None
        refusal = BusinessRefusal(
            "action_not_applied",
            f"{step.name} did not go through after {fault.code if fault else 'a fault'}",
        )
        return CallOutcome.REFUSED, None, refusal

    async def _run_compensation(
        self, definition: SagaDefinition[Any], state: SagaState, token: str
    ) -> SagaState:
        step = definition.steps[state.step]
        assert step.compensation is not None
        ctx = self._context(definition, state, step)
        key = idempotency_key(ctx.saga_id, step, Phase.COMPENSATION)
        called = await self._call(
            state,
            token,
            step,
            Phase.COMPENSATION,
            step.compensation(ctx),
            key,
            self.compensation_policy,
            defer_success=True,
        )
        if called.outcome is not CallOutcome.SUCCEEDED:
            return await self._needs_attention(state, token, step, Phase.COMPENSATION, called.error)
        to = after_compensation(definition, state.step, called.outcome)
        changed = state
        if (
            to.status is SagaStatus.COMPENSATED
            and state.cancel_reason is not None
            and (state.error or {}).get("code") != "cancelled"
        ):
            # Cancelled while it was stuck going back: it ends as cancelled, its first cause kept.
            cancelled = {
                "code": "cancelled",
                "message": f"cancelled by an operator: {state.cancel_reason}",
                "cause": state.error,
            }
            changed = replace(state, error=cancelled)
        return await self._move(
            definition, state, token, to, changed, finished_attempt=called.finished()
        )

    async def _move(
        self,
        definition: SagaDefinition[Any],
        state: SagaState,
        token: str,
        to: Position,
        changed: SagaState,
        *,
        result: tuple[str, dict[str, Any]] | None = None,
        finished_attempt: tuple[int, AttemptStatus, dict[str, Any] | None] | None = None,
    ) -> SagaState:
        """Persist a move to `to` (`changed`: the state with the move's new results or error),
        with its outcome event if it ends the saga, and the write-ahead of the call it makes
        next if it goes on: one statement."""
        moved = replace(changed, status=to.status, step=to.step, phase=to.phase)
        event = self._event(definition, state, to, moved.results, moved.error)
        try:
            ahead = self._next_attempt(definition, moved)
        except Exception:  # a definition that cannot build its next call: the move still stands
            log.exception("saga %s: its next call could not be built", state.id)
            ahead = None
        error = moved.error if moved.error is not state.error else None
        keys = moved.keys if moved.keys != state.keys else None  # written only when learned
        made = await self._persisted(
            lambda again: self.store.move(
                state,
                token,
                to,
                result=result,
                error=error,
                event=event,
                finished_attempt=finished_attempt,
                ahead=ahead,
                again=again,
                keys=keys,
            )
        )
        if made.ahead is not None and ahead is not None:
            self._ahead[state.id] = (made.ahead, ahead)
        return self._advance(
            state,
            to,
            results=moved.results,
            error=moved.error,
            keys=moved.keys,
            cancel_reason=made.cancel_reason,
        )

    def _next_attempt(
        self, definition: SagaDefinition[Any], moved: SagaState
    ) -> NextAttempt | None:
        """The call a saga standing at `moved` makes next, if it makes one."""
        if moved.status is SagaStatus.RUNNING:
            step = definition.steps[moved.step]
            ctx = self._context(definition, moved, step)
            return NextAttempt(
                moved.step, step.name, Phase.ACTION, ctx.action_key, step.action(ctx)
            )
        if moved.status is SagaStatus.COMPENSATING:
            step = definition.steps[moved.step]
            assert step.compensation is not None
            ctx = self._context(definition, moved, step)
            key = idempotency_key(ctx.saga_id, step, Phase.COMPENSATION)
            return NextAttempt(
                moved.step, step.name, Phase.COMPENSATION, key, step.compensation(ctx)
            )
        return None

    def _event(
        self,
        definition: SagaDefinition[Any],
        state: SagaState,
        to: Position,
        results: dict[str, Any],
        error: dict[str, Any] | None,
    ) -> OutcomeEvent | None:
        """The outcome's event, when this move makes the saga final."""
        if to.status not in FINAL_STATUSES:
            return None
        data = definition.data_of(state.payload, results)
        outcome = SagaOutcome(str(state.id), to.status, data, error)
        return definition.outcome_event(outcome)

    async def _needs_attention(
        self, state: SagaState, token: str, step: Step[Any], phase: Phase, error: StepError | None
    ) -> SagaState:
        to = Position(SagaStatus.NEEDS_ATTENTION, state.step, phase)
        attention = {**(error.as_json() if error else {}), "step": step.name, "phase": phase}
        await self._persisted(
            lambda again: self.store.move(state, token, to, attention=attention, again=again)
        )
        log.error("saga %s needs attention at %s (%s): %s", state.id, step.name, phase, attention)
        return self._advance(state, to, attention=attention)

    def _advance(self, state: SagaState, to: Position, **changes: Any) -> SagaState:
        if to.status is not state.status:
            self.metrics.saga_transitions.labels(state.type, to.status).inc()
        if to.status in FINAL_STATUSES:  # one line per outcome, to find it by saga id
            logs.saga_step.set(None)  # a line of the saga's, not of its last step's
            logs.saga_phase.set(None)
            error = changes.get("error") or state.error
            cause = f": {error.get('code')} at {error.get('step')}" if error else ""
            log.info("saga %s (%s) is %s%s", state.id, state.type, to.status, cause)
        return replace(
            state, status=to.status, step=to.step, phase=to.phase, starting=False, **changes
        )

    async def _call(
        self,
        state: SagaState,
        token: str,
        step: Step[Any],
        phase: Phase,
        call: RemoteCall,
        key: str,
        policy: RetryPolicy,
        *,
        send_key: bool = True,
        defer_success: bool = False,
        kind: str | None = None,
    ) -> Called:
        """One remote call with its retries, each attempt persisted before and after (with
        `defer_success`, the end of a successful attempt is left to the caller's move), and
        traced (`kind`: what the call is, if not its phase: a pivot's settle call)."""
        logs.saga_step.set(step.name)
        logs.saga_phase.set(str(phase))
        client = self.clients[call.service]
        timeout = step.timeout or self.step_timeout
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_seconds),
            wait=wait_exponential_jitter(
                multiplier=policy.initial_backoff,
                max=policy.max_backoff,
                jitter=policy.initial_backoff,
            ),
            sleep=self._pause,
            retry=retry_if_exception(
                lambda e: (
                    # An operator cancelled it: its action goes no further (its compensations
                    # are retried as ever).
                    (phase is not Phase.ACTION or state.id not in self._cancelling)
                    and (
                        isinstance(e, TransientFault)
                        or (isinstance(e, BusinessRefusal) and e.code in policy.retry_on)
                    )
                )
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                number = attempt.retry_state.attempt_number
                span_of = tracing.attempt_span(
                    saga_id=str(state.id),
                    saga_type=state.type,
                    step=step.name,
                    phase=str(phase),
                    call=kind or str(phase),
                    attempt=number,
                    key=key,
                )
                with attempt, span_of as span:
                    if number > 1:
                        self.metrics.step_retries.labels(state.type, step.name, phase).inc()
                    attempt_id = self._written_ahead(state.id, key, call)
                    if attempt_id is None:
                        attempt_id = await self._begin(state, token, step, phase, key, call)
                    started = time.perf_counter()
                    try:
                        response = await client.send(call, key if send_key else None, timeout)
                    except StepError as failure:
                        status = (
                            AttemptStatus.REFUSED
                            if isinstance(failure, BusinessRefusal)
                            else AttemptStatus.FAILED
                        )
                        tracing.attempt_ended(span, status, failure.code)
                        await self._finish(
                            state, token, attempt_id, status, error=failure.as_json()
                        )
                        log.info("%s %s: %s %s", step.name, phase, status, failure.code)
                        raise
                    finally:
                        self.metrics.step_seconds.labels(state.type, step.name, phase).observe(
                            time.perf_counter() - started
                        )
                    tracing.attempt_ended(span, AttemptStatus.SUCCEEDED)
                    log.info("%s %s: SUCCEEDED", step.name, phase)
                    if defer_success:
                        return Called(CallOutcome.SUCCEEDED, response, unrecorded=attempt_id)
                    await self._finish(
                        state, token, attempt_id, AttemptStatus.SUCCEEDED, response=response
                    )
                    return Called(CallOutcome.SUCCEEDED, response)
        except BusinessRefusal as refusal:
            if refusal.code in policy.retry_on:  # "not yet", for longer than the budget
                return Called(CallOutcome.EXHAUSTED, error=refusal)
            return Called(CallOutcome.REFUSED, error=refusal)
        except TransientFault as fault:
            log.warning(
                "saga %s: %s %s gave up after retries: %s", state.id, step.name, phase, fault
            )
            return Called(CallOutcome.EXHAUSTED, error=fault)
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _withdraw_unsent(self, saga_id: uuid.UUID, token: str) -> None:
        """The call the last move wrote ahead, if it never left: withdrawn, so that the replica
        that resumes the saga makes it afresh rather than as one of unknown outcome."""
        ahead = self._ahead.pop(saga_id, None)
        if ahead is None:
            return
        try:
            await self.store.withdraw_attempt(saga_id, token, ahead[0])
        except Exception as error:  # it stays STARTED: taken as of unknown outcome, still safe
            log.warning("saga %s: could not withdraw its unsent call: %s", saga_id, error)

    async def _pause(self, seconds: float) -> None:
        """The wait before a retry. A replica that is stopping makes no more attempts: the run
        hands over, the failed attempt recorded, and whoever resumes it retries under its key."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        if self.stopping:
            raise HandingOver

    def _written_ahead(self, saga_id: uuid.UUID, key: str, call: RemoteCall) -> int | None:
        """The attempt the last move wrote ahead for this very call, if it did (once)."""
        ahead = self._ahead.pop(saga_id, None)
        if ahead is None:
            return None
        attempt_id, next_attempt = ahead
        if (next_attempt.key, next_attempt.call) != (key, call):
            # Not what was written ahead: that attempt stays STARTED, and recovery, if it ever
            # resumes this saga, takes it for a call of unknown outcome (as after a crash).
            log.warning("saga %s: the call written ahead is not the one made", saga_id)
            return None
        return attempt_id

    async def _begin(
        self,
        state: SagaState,
        token: str,
        step: Step[Any],
        phase: Phase,
        key: str,
        call: RemoteCall,
    ) -> int:
        return await self._persisted(
            lambda again: self.store.begin_attempt(
                state.id, token, state.step, step.name, phase, key, call, again=again
            )
        )

    async def _finish(
        self,
        state: SagaState,
        token: str,
        attempt_id: int,
        status: AttemptStatus,
        **outcome: Any,
    ) -> None:
        await self._persisted(
            lambda _: self.store.finish_attempt(state.id, token, attempt_id, status, **outcome)
        )

    async def _persisted(self, write: Callable[[bool], Awaitable[T]]) -> T:
        """A store call of a saga's run, made again while the database cannot be reached.

        Each try runs on a fresh connection (a dead one invalidates the pool), with backoff, for
        as long as a lease lasts: a run goes on from what it committed as soon as the database is
        back, instead of stopping and leaving its saga to wait out the lease. Past that, the
        error stands: the run ends, and recovery resumes the saga from its persisted step,
        repeating under its key a call whose end could not be written. `write(again)` is told
        whether an earlier try may have committed unseen (its answer lost with the connection).
        A write that reaches a saga leased to another run fails as before: fenced by the token.
        """
        started = time.monotonic()
        failures = 0
        while True:
            try:
                result = await write(failures > 0)
            except Exception as error:
                if not unavailable(error):
                    raise
                failures += 1
                self._database.failed(error)
                pause = backoff(failures)
                if time.monotonic() + pause - started >= self.store.lease.total_seconds():
                    raise
                await asyncio.sleep(pause)
            else:
                if failures:
                    self._database.recovered()
                return result

    # -- watching ------------------------------------------------------------------------------

    async def observe(self) -> None:
        """Set the gauges of what stands now: sagas not final by type and status (from the
        store, so the same in every replica), and this process's runs (for a scrape)."""
        counts = await self.store.live_counts()
        types = {kind for kind, _ in self.definitions} | {c.type for c in counts}
        now = self.clock()
        for kind in types:
            for status in WATCHED_STATUSES:
                self.metrics.sagas_live.labels(kind, status).set(0)
                self.metrics.oldest_live.labels(kind, status).set(0)
        for count in counts:
            self.metrics.sagas_live.labels(count.type, count.status).set(count.count)
            age = max((now - count.oldest).total_seconds(), 0.0)
            self.metrics.oldest_live.labels(count.type, count.status).set(age)
        self.metrics.runs_active.set(self._slots.held)
        self.metrics.runs_queued.set(self._slots.waiting)

    # -- recovery ------------------------------------------------------------------------------

    async def recover(self, limit: int, *, own_orphans: bool = False) -> int:
        if self.stopping:
            return 0
        claimed = await self.store.claim_expired(self.owner, limit, own_orphans=own_orphans)
        for saga_id, token in claimed:
            log.info("saga %s: recovered, resuming", saga_id)
            self.spawn(saga_id, token, first=True)
        return len(claimed)

    async def recovery_loop(self, interval: float, batch: int) -> None:
        """Resume sagas whose owner died (its lease expired), here or in another replica, as
        many as can wait at the head of the line for a slot (`max_running`). The passes also
        take back what a previous run of this same instance left behind, until none is left."""
        own_orphans = True
        failures = 0  # passes in a row that could not reach the database
        while not self.stopping:
            full = False
            try:
                while True:
                    self._room.clear()  # before looking: a run that ends after this wakes us
                    room = min(batch, self.max_running - self._first_waiting)
                    if room <= 0:
                        full = True
                        break
                    recovered = await self.recover(room, own_orphans=own_orphans)
                    if failures:
                        failures = 0
                        self._recovery_database.recovered()
                    if recovered < room:
                        own_orphans = False  # none of ours is left behind
                        break
            except Exception as error:
                if not unavailable(error):
                    log.exception("recovery pass failed; trying again in %ss", interval)
                else:  # logged once per outage; tried again soon, with backoff
                    failures += 1
                    self._recovery_database.failed(error)
                    await asyncio.sleep(backoff(failures, ceiling=interval))
                    continue
            if full:
                # More may be waiting: go on as soon as a run ends.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), timeout=interval)
            else:
                await asyncio.sleep(interval)

    async def cancel(self, state: SagaState, reason: str) -> SagaState | None:
        """An operator's cancellation of a saga before its pivot: recorded with the saga (the
        run that holds its lease, here or in another replica, learns of it with its next move
        and starts no action after that); a run here also stops retrying the call it is
        making. A stuck saga is resumed at once, to compensate. The saga as it then stands,
        or None if it could not be cancelled (final, past its pivot, starting, cancelled
        already, or of a definition this process does not run: it could not tell its pivot)."""
        definition = self.definitions.get((state.type, state.version))
        if definition is None:
            return None
        cancelled = await self.store.request_cancel(state.id, reason, definition.pivot_index)
        if cancelled is None:
            return None
        log.warning("saga %s (%s): cancelled by an operator: %s", state.id, state.type, reason)
        # A run here (now or later) stops retrying at once; one elsewhere learns at its move.
        self._cancelling[state.id] = reason
        if cancelled.status is SagaStatus.NEEDS_ATTENTION:
            await self.retry(cancelled)
        return cancelled

    async def retry(self, state: SagaState) -> bool:
        """An operator's retry of a NEEDS_ATTENTION saga."""
        to = resume_after_attention(state.position)
        token = await self.store.claim_for_retry(state.id, self.owner, to)
        if token is None:
            return False
        self._deadline_lifted.add(state.id)  # the operator decided: past its deadline, it goes on
        log.warning(
            "saga %s (%s): retried by an operator, resuming %s at step %s",
            state.id,
            state.type,
            to.phase,
            state.attention.get("step") if state.attention else to.step,
        )
        self.spawn(state.id, token, first=True)
        return True
