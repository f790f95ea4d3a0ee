"""The runner's decisions, with no database and no service: the real `SagaRunner` on the
in-memory store (`InMemorySagaStore`, held to the PostgreSQL store's contract in
tests/contract/), calling fake participants that answer as a test scripts them.

The saga here is a small one of its own (reserve, charge, then the pivot confirm), so that these
tests do not move when the application's sagas do."""

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from sagaengine.definition import (
    OutcomeEvent,
    Phase,
    RemoteCall,
    RetryPolicy,
    SagaDefinition,
    SagaOutcome,
    SagaStatus,
    StartRules,
    Step,
    StepKind,
)
from sagaengine.http import BusinessRefusal, StepError, TransientFault
from sagaengine.memory import InMemorySagaStore
from sagaengine.runner import SagaRunner
from sagaengine.starting import ReplicaStopping, start_saga
from sagaengine.store import AttemptStatus, Owner, SagaState
from tests.fakes import ManualClock

pytestmark = pytest.mark.anyio

LEASE_SECONDS = 30.0
ATTEMPTS = 3
POLICY = RetryPolicy(attempts=ATTEMPTS, initial_backoff=0.001, max_backoff=0.001, max_seconds=5)


def _call(service: str, path: str) -> Callable[[Any], RemoteCall]:
    return lambda _: RemoteCall(service, "POST", path)


def _event(outcome: SagaOutcome) -> OutcomeEvent:
    return OutcomeEvent(f"trip:{outcome.saga_id}", f"trip.{outcome.status.lower()}", {})


class Trip(BaseModel):
    model_config = ConfigDict(extra="allow")  # whatever a test starts it with


TRIP = SagaDefinition(
    "trip",
    1,
    Trip,
    (
        Step("reserve", _call("stock", "/reserve"), compensation=_call("stock", "/release")),
        Step("charge", _call("bank", "/charge"), compensation=_call("bank", "/refund")),
        Step(
            "confirm",
            _call("shop", "/confirm"),
            settle=_call("shop", "/confirm/settle"),
            kind=StepKind.PIVOT,
        ),
    ),
    StartRules(lock_key=lambda trip: f"trip:{id(trip)}"),
    outcome_event=_event,
)
ACTIONS = ["/reserve", "/charge", "/confirm"]
UNDO = {"/reserve": "/release", "/charge": "/refund"}

REFUSED = BusinessRefusal("insufficient_funds", "no", 409)
TIMEOUT = TransientFault("timeout", "no answer in time")
APPLIED = {"outcome": "APPLIED", "response": {"confirmed": True}}
NOT_APPLIED = {"outcome": "TOMBSTONE"}

Answer = dict[str, Any] | StepError


class Participants:
    """Every service the saga calls (`ServiceClient.send`'s shape). Each path answers as
    scripted, the last answer repeating (by default `{}`); an action or compensation applies
    once per idempotency key, as the services' idempotency store makes it."""

    def __init__(self) -> None:
        self.calls: list[str] = []  # every call's path, in order
        self.applied: list[str] = []  # what took effect, once per key
        self._answers: dict[str, list[Answer]] = {}
        self._keys: set[str] = set()
        self._held: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}

    def answer(self, path: str, *answers: Answer) -> None:
        self._answers[path] = list(answers)

    def hold(self, path: str) -> tuple[asyncio.Event, asyncio.Event]:
        """The next call of `path` waits (reached, then until released) before it answers."""
        reached, released = asyncio.Event(), asyncio.Event()
        self._held[path] = (reached, released)
        return reached, released

    async def send(
        self, call: RemoteCall, idempotency_key: str | None, timeout: float
    ) -> dict[str, Any]:
        self.calls.append(call.path)
        answers = self._answers.get(call.path, [{}])
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if call.path in self._held:
            reached, released = self._held.pop(call.path)
            reached.set()
            await released.wait()
        if isinstance(answer, StepError):
            raise answer
        if idempotency_key is not None and idempotency_key not in self._keys:
            self._keys.add(idempotency_key)
            self.applied.append(call.path)
        return answer


class Outcomes:
    """Counts the sagas a runner reports final (`on_outcome`)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _runner(
    store: InMemorySagaStore,
    participants: Participants,
    name: str = "replica-a",
    on_outcome: Callable[[], None] | None = None,
    definition: SagaDefinition = TRIP,
) -> SagaRunner:
    return SagaRunner(
        store,
        dict.fromkeys(("stock", "bank", "shop"), participants),
        definitions={definition.key: definition},
        clock=store.clock,
        owner=Owner.new(name),
        step_timeout=1.0,
        action_policy=POLICY,
        compensation_policy=POLICY,
        on_outcome=on_outcome,
    )


async def _started(store: InMemorySagaStore, runner: SagaRunner) -> tuple[SagaState, str]:
    token = runner.owner.lease_token()
    state = await store.create(TRIP, {"trip": 1}, None, f"trip:{uuid.uuid4()}", token)
    assert state is not None
    return state, token


async def _run(store: InMemorySagaStore, participants: Participants) -> SagaState:
    """A saga of its own, run by one runner until it stops (final, or stuck)."""
    runner = _runner(store, participants)
    state, token = await _started(store, runner)
    await runner.run(state.id, token)
    ended = await store.get(state.id)
    assert ended is not None
    return ended


def _attempts(store: InMemorySagaStore, saga: SagaState, step: str) -> list[AttemptStatus]:
    return [a.status for a in store.attempts if a.saga_id == saga.id and a.step_name == step]


def _events(store: InMemorySagaStore, saga: SagaState) -> list[str]:
    return [e.type for e in store.outbox if e.saga_id == saga.id]


@pytest.fixture
def store() -> InMemorySagaStore:
    return InMemorySagaStore(LEASE_SECONDS, clock=ManualClock())


async def test_every_step_applies_once_and_the_saga_completes(store: InMemorySagaStore):
    participants = Participants()

    saga = await _run(store, participants)

    assert saga.status is SagaStatus.COMPLETED
    assert participants.calls == participants.applied == ACTIONS
    assert _events(store, saga) == ["trip.completed"]


@pytest.mark.parametrize("refused", ACTIONS)
async def test_a_refused_action_compensates_only_the_steps_before_it(
    store: InMemorySagaStore, refused: str
):
    participants = Participants()
    participants.answer(refused, REFUSED)

    saga = await _run(store, participants)

    done = ACTIONS[: ACTIONS.index(refused)]
    assert saga.status is SagaStatus.COMPENSATED
    assert participants.calls == [*done, refused, *(UNDO[a] for a in reversed(done))]
    assert saga.error is not None and saga.error["code"] == "insufficient_funds"
    assert _events(store, saga) == ["trip.compensated"]


@pytest.mark.parametrize("exhausted", ["/reserve", "/charge"])
async def test_an_action_that_exhausts_its_retries_is_compensated_too(
    store: InMemorySagaStore, exhausted: str
):
    participants = Participants()
    participants.answer(exhausted, TIMEOUT)

    saga = await _run(store, participants)

    done = ACTIONS[: ACTIONS.index(exhausted) + 1]  # it may have applied: it is undone as well
    assert saga.status is SagaStatus.COMPENSATED
    assert participants.calls == [
        *done[:-1],
        *[exhausted] * ATTEMPTS,
        *(UNDO[a] for a in reversed(done)),
    ]
    assert _events(store, saga) == ["trip.compensated"]


@pytest.mark.parametrize(
    ("settled", "status", "after"),
    [
        (APPLIED, SagaStatus.COMPLETED, []),
        (NOT_APPLIED, SagaStatus.COMPENSATED, ["/refund", "/release"]),
        (TIMEOUT, SagaStatus.NEEDS_ATTENTION, []),
    ],
    ids=["applied", "not-applied", "settle-unreachable"],
)
async def test_a_pivot_whose_answer_was_lost_is_settled_before_anything_else(
    store: InMemorySagaStore, settled: Answer, status: SagaStatus, after: list[str]
):
    participants = Participants()
    participants.answer("/confirm", TIMEOUT)
    participants.answer("/confirm/settle", settled)

    saga = await _run(store, participants)

    settles = ATTEMPTS if settled is TIMEOUT else 1
    assert saga.status is status
    assert participants.calls == [
        "/reserve",
        "/charge",
        *["/confirm"] * ATTEMPTS,
        *["/confirm/settle"] * settles,
        *after,
    ]
    if status is SagaStatus.COMPLETED:
        assert saga.results["confirm"] == {"confirmed": True}
    if status is SagaStatus.NEEDS_ATTENTION:  # nobody knows whether it went through: ask
        assert (saga.step, saga.phase, saga.attention["step"]) == (2, Phase.ACTION, "confirm")
        assert _events(store, saga) == []


@pytest.mark.parametrize(
    ("path", "then"),
    [
        ("/charge", ["/refund", "/release"]),  # undone as if exhausted, not skipped as refused
        ("/confirm", ["/confirm/settle"]),  # settled as if its answer was lost
    ],
)
async def test_a_refusal_after_an_attempt_that_got_no_answer_is_not_taken_at_its_word(
    store: InMemorySagaStore, path: str, then: list[str]
):
    participants = Participants()
    participants.answer(path, TIMEOUT, REFUSED)
    participants.answer("/confirm/settle", NOT_APPLIED)

    saga = await _run(store, participants)

    done = ACTIONS[: ACTIONS.index(path)]
    assert participants.calls[: len(done) + 2 + len(then)] == [*done, path, path, *then]
    assert saga.status is SagaStatus.COMPENSATED


async def test_a_saga_whose_lease_expired_is_resumed_by_another_runner_and_ends_once():
    clock = ManualClock()
    store = InMemorySagaStore(LEASE_SECONDS, clock=clock)
    participants = Participants()
    reached, released = participants.hold("/charge")
    ended_here, ended_there = Outcomes(), Outcomes()
    stalled = _runner(store, participants, "replica-a", on_outcome=ended_here)
    recovering = _runner(store, participants, "replica-b", on_outcome=ended_there)
    saga, token = await _started(store, stalled)

    run = asyncio.create_task(stalled.run(saga.id, token))
    await reached.wait()  # the charge is in flight, and its run hangs on it past its lease
    clock.advance(LEASE_SECONDS + 1)
    assert await recovering.recover(10) == 1
    ended = await recovering.wait_until_final(saga.id, timeout=5)
    released.set()  # the stalled run's answer arrives at last: its move is fenced off
    await run

    assert ended is not None and ended.status is SagaStatus.COMPLETED
    assert await store.get(saga.id) == ended
    assert participants.calls == ["/reserve", "/charge", "/charge", "/confirm"]
    assert participants.applied == ACTIONS  # the charge, sent twice under one key, applied once
    assert _attempts(store, ended, "charge") == [
        AttemptStatus.INTERRUPTED,  # the stalled run's: recovery could not know its outcome
        AttemptStatus.SUCCEEDED,
    ]
    assert _events(store, ended) == ["trip.completed"]
    assert (ended_here.count, ended_there.count) == (0, 1)
    await recovering.stop()


@pytest.mark.parametrize(
    ("failing", "stuck_at", "retried", "status"),
    [
        # The pivot's answer was lost, and its service cannot say whether it went through.
        (
            {"/confirm": TIMEOUT, "/confirm/settle": TIMEOUT},
            (2, Phase.ACTION),
            "/confirm",
            SagaStatus.COMPLETED,
        ),
        # A compensation fails past its retries.
        (
            {"/charge": REFUSED, "/release": TIMEOUT},
            (0, Phase.COMPENSATION),
            "/release",
            SagaStatus.COMPENSATED,
        ),
    ],
    ids=["pivot", "compensation"],
)
async def test_an_operator_retry_resumes_a_stuck_saga_where_it_stopped(
    store: InMemorySagaStore,
    failing: dict[str, Answer],
    stuck_at: tuple[int, Phase],
    retried: str,
    status: SagaStatus,
):
    participants = Participants()
    for path, answer in failing.items():
        participants.answer(path, answer)
    runner = _runner(store, participants)
    saga, token = await _started(store, runner)
    await runner.run(saga.id, token)
    stuck = await store.get(saga.id)
    assert stuck is not None and stuck.status is SagaStatus.NEEDS_ATTENTION
    assert (stuck.step, stuck.phase) == stuck_at

    participants.answer(retried, {})  # the operator mended what was wrong
    participants.calls.clear()
    assert await runner.retry(stuck)
    ended = await runner.wait_until_final(saga.id, timeout=5)

    assert ended is not None and ended.status is status
    assert participants.calls == [retried]  # the call it stopped at, once more, and no other
    assert _events(store, ended) == [f"trip.{status.lower()}"]
    assert not await runner.retry(ended)  # once it moves on, there is nothing to retry
    await runner.stop()


# --- the deadline -------------------------------------------------------------------------------

DEADLINE = timedelta(minutes=1)
# The trip with a deadline, and a step after its pivot that only goes forward.
NOTIFY = Step("notify", _call("shop", "/notify"), kind=StepKind.RETRIABLE)
LATE_TRIP = replace(TRIP, steps=(*TRIP.steps, NOTIFY), deadline=DEADLINE)


async def _past_the_deadline_during(
    store: InMemorySagaStore, participants: Participants, path: str
) -> tuple[SagaRunner, SagaState]:
    """Run a LATE_TRIP whose call to `path` takes longer than the saga's deadline."""
    runner = _runner(store, participants, definition=LATE_TRIP)
    token = runner.owner.lease_token()
    saga = await store.create(LATE_TRIP, {"trip": 1}, None, f"trip:{uuid.uuid4()}", token)
    assert saga is not None
    reached, released = participants.hold(path)
    run = asyncio.create_task(runner.run(saga.id, token))
    await reached.wait()
    store.clock.advance(DEADLINE.total_seconds() + 1)  # type: ignore[attr-defined]
    released.set()
    await run
    ended = await store.get(saga.id)
    assert ended is not None
    return runner, ended


async def test_past_its_deadline_no_new_action_starts_and_the_saga_compensates(
    store: InMemorySagaStore,
):
    participants = Participants()

    _, saga = await _past_the_deadline_during(store, participants, "/charge")

    # The charge in flight ends; the pivot is never called; what applied is undone.
    assert participants.calls == ["/reserve", "/charge", "/refund", "/release"]
    assert saga.status is SagaStatus.COMPENSATED
    assert saga.error is not None
    assert (saga.error["code"], saga.error["step"]) == ("deadline_exceeded", "confirm")


async def test_past_its_deadline_after_the_pivot_the_saga_waits_for_an_operator(
    store: InMemorySagaStore,
):
    participants = Participants()

    runner, saga = await _past_the_deadline_during(store, participants, "/confirm")

    assert participants.calls == ["/reserve", "/charge", "/confirm"]  # nothing undone
    assert saga.status is SagaStatus.NEEDS_ATTENTION
    assert saga.attention is not None
    assert (saga.attention["code"], saga.attention["step"]) == ("deadline_exceeded", "notify")

    # The operator decides: the retry goes on past the deadline.
    assert await runner.retry(saga)
    ended = await runner.wait_until_final(saga.id, timeout=5)
    assert ended is not None and ended.status is SagaStatus.COMPLETED
    assert participants.calls[-1] == "/notify"


async def test_each_outcome_and_each_operator_retry_is_one_log_line(
    store: InMemorySagaStore, caplog: pytest.LogCaptureFixture
):
    participants = Participants()
    participants.answer("/charge", REFUSED)
    caplog.set_level(logging.INFO, logger="sagaengine.runner")

    saga = await _run(store, participants)

    outcomes = [r.getMessage() for r in caplog.records if " is COMPENSATED" in r.getMessage()]
    assert outcomes == [f"saga {saga.id} (trip) is COMPENSATED: insufficient_funds at charge"]


async def test_an_operator_retry_says_so_in_the_log(
    store: InMemorySagaStore, caplog: pytest.LogCaptureFixture
):
    participants = Participants()
    _, saga = await _past_the_deadline_during(store, participants, "/confirm")
    runner = _runner(store, participants, definition=LATE_TRIP)
    caplog.set_level(logging.INFO, logger="sagaengine.runner")

    assert await runner.retry(saga)
    await runner.wait_until_final(saga.id, timeout=5)

    lines = [r.getMessage() for r in caplog.records]
    assert f"saga {saga.id} (trip): retried by an operator, resuming action at step notify" in lines
    assert f"saga {saga.id} (trip) is COMPLETED" in lines


# -- an operator's cancellation ----------------------------------------------------------------


async def test_a_cancel_while_a_call_answers_stops_the_saga_before_its_next_action(
    store: InMemorySagaStore,
):
    participants = Participants()
    reached, released = participants.hold("/charge")
    runner = _runner(store, participants)
    state, token = await _started(store, runner)
    run = asyncio.create_task(runner.run(state.id, token))
    await reached.wait()

    charging = await store.get(state.id)
    assert charging is not None
    assert await runner.cancel(charging, "the customer called") is not None
    released.set()  # the charge answers: it applied
    await run

    saga = await store.get(state.id)
    assert saga is not None and saga.status is SagaStatus.COMPENSATED
    assert participants.calls == ["/reserve", "/charge", "/refund", "/release"]  # no /confirm
    assert saga.error is not None and saga.error["code"] == "cancelled"
    assert "the customer called" in saga.error["message"]
    # The pivot's call was written ahead by the move after the charge: closed, never sent.
    assert _attempts(store, saga, "confirm") == [AttemptStatus.REFUSED]


async def test_a_cancel_stops_the_retries_of_the_call_in_flight_and_undoes_it_by_key(
    store: InMemorySagaStore,
):
    participants = Participants()
    participants.answer("/charge", TIMEOUT)  # every try times out: its outcome is unknown
    reached, released = participants.hold("/charge")
    runner = _runner(store, participants)
    state, token = await _started(store, runner)
    run = asyncio.create_task(runner.run(state.id, token))
    await reached.wait()

    charging = await store.get(state.id)
    assert charging is not None
    assert await runner.cancel(charging, "stop") is not None
    released.set()
    await run

    saga = await store.get(state.id)
    assert saga is not None and saga.status is SagaStatus.COMPENSATED
    # One try, not ATTEMPTS: then its compensation by key (it may have applied), then the rest.
    assert participants.calls == ["/reserve", "/charge", "/refund", "/release"]
    assert saga.error is not None and saga.error["code"] == "cancelled"


async def test_a_saga_past_its_pivot_is_not_cancelled(store: InMemorySagaStore):
    participants = Participants()
    saga = await _run(store, participants)
    assert saga.status is SagaStatus.COMPLETED

    assert await _runner(store, participants).cancel(saga, "too late") is None
    after = await store.get(saga.id)
    assert after is not None and after.cancel_reason is None


async def test_a_cancelled_saga_resumed_by_another_run_goes_back_too(store: InMemorySagaStore):
    participants = Participants()
    first = _runner(store, participants, "replica-a")
    state, _ = await _started(store, first)  # its run died before its first call
    assert await first.cancel(state, "no longer wanted") is not None

    store.clock.advance(LEASE_SECONDS + 1)  # type: ignore[attr-defined]
    second = _runner(store, participants, "replica-b")
    [(saga_id, token)] = await store.claim_expired(second.owner, 10)
    await second.run(saga_id, token)

    saga = await store.get(saga_id)
    assert saga is not None and saga.status is SagaStatus.COMPENSATED
    assert participants.calls == []  # nothing was applied, nothing to undo
    assert saga.error is not None and saga.error["code"] == "cancelled"


async def test_a_saga_of_a_definition_this_process_does_not_run_is_not_cancelled(
    store: InMemorySagaStore,
):
    participants = Participants()
    state, _ = await _started(store, _runner(store, participants))
    other = replace(TRIP, name="other-trip")

    stranger = _runner(store, participants, "replica-b", definition=other)
    assert await stranger.cancel(state, "which pivot?") is None  # a refusal, never a crash
    after = await store.get(state.id)
    assert after is not None and after.cancel_reason is None


# -- a replica that stops (SIGTERM) hands its sagas over --------------------------------------


async def _handed_over_to_another(
    store: InMemorySagaStore, participants: Participants, stopped: SagaRunner
) -> SagaState:
    """What the next replica makes of the stopped one's saga, once its leases are released:
    claimable at once, no lease to wait out."""
    await store.release_leases(stopped.owner)
    second = _runner(store, participants, "replica-b")
    [(saga_id, token)] = await store.claim_expired(second.owner, 10)
    await second.run(saga_id, token)
    saga = await store.get(saga_id)
    assert saga is not None
    return saga


async def test_a_stopping_replica_lets_the_call_in_flight_end_then_hands_the_saga_over(
    store: InMemorySagaStore,
):
    participants = Participants()
    reached, released = participants.hold("/charge")
    runner = _runner(store, participants)
    state, token = await _started(store, runner)
    runner.spawn(state.id, token)
    await reached.wait()

    draining = asyncio.create_task(runner.drain(grace=5.0))
    await asyncio.sleep(0.01)
    assert not draining.done()  # it waits for the charge's answer
    released.set()
    await draining

    stopped = await store.get(state.id)
    assert stopped is not None and stopped.status is SagaStatus.RUNNING
    assert (stopped.step, stopped.results.keys()) == (2, {"reserve", "charge"})  # recorded
    assert participants.calls == ["/reserve", "/charge"]  # and no call started after it
    assert _attempts(store, state, "confirm") == []  # its write-ahead withdrawn: never sent

    saga = await _handed_over_to_another(store, participants, runner)
    assert saga.status is SagaStatus.COMPLETED
    assert participants.calls == participants.applied == ACTIONS


async def test_a_stopping_replica_makes_no_more_retries_and_the_next_one_goes_on_by_key(
    store: InMemorySagaStore,
):
    participants = Participants()
    participants.answer("/charge", TIMEOUT, {})  # the first try times out, the next answers
    slow = replace(POLICY, initial_backoff=30.0, max_backoff=30.0, max_seconds=60)
    runner = _runner(store, participants)
    runner.action_policy = slow
    state, token = await _started(store, runner)
    runner.spawn(state.id, token)
    while _attempts(store, state, "charge") != [AttemptStatus.FAILED]:
        await asyncio.sleep(0)

    # Waiting out a 30 s backoff: the drain ends it at once, with no second try.
    await asyncio.wait_for(runner.drain(grace=5.0), timeout=2.0)
    assert participants.calls == ["/reserve", "/charge"]
    assert _attempts(store, state, "charge") == [AttemptStatus.FAILED]

    saga = await _handed_over_to_another(store, participants, runner)
    assert saga.status is SagaStatus.COMPLETED
    assert participants.calls == ["/reserve", "/charge", "/charge", "/confirm"]
    assert participants.applied == ACTIONS


async def test_a_stopping_replica_cuts_a_call_that_outlasts_the_grace(store: InMemorySagaStore):
    participants = Participants()
    reached, _ = participants.hold("/charge")  # never answers
    runner = _runner(store, participants)
    state, token = await _started(store, runner)
    runner.spawn(state.id, token)
    await reached.wait()
    [run] = [t for t in asyncio.all_tasks() if t.get_name() == f"saga-{state.id}"]

    await asyncio.wait_for(runner.drain(grace=0.05), timeout=2.0)

    assert run.cancelled()
    assert _attempts(store, state, "charge") == [AttemptStatus.STARTED]  # outcome unknown


async def test_a_stopping_replica_starts_no_waiting_run_and_recovers_nothing(
    store: InMemorySagaStore,
):
    participants = Participants()
    reached, released = participants.hold("/reserve")
    runner = _runner(store, participants)
    runner.max_running = 1
    runner._slots.size = 1
    first, first_token = await _started(store, runner)
    second, second_token = await _started(store, runner)
    runner.spawn(first.id, first_token)
    runner.spawn(second.id, second_token)
    await reached.wait()  # the first runs; the second waits for its slot

    runner.begin_drain(grace=5.0)
    released.set()
    await runner.drain(grace=5.0)

    assert participants.calls == ["/reserve"]  # the second never made a call
    assert await runner.recover(10) == 0
    for saga_id in (first.id, second.id):
        saga = await store.get(saga_id)
        assert saga is not None and saga.status is SagaStatus.RUNNING


async def test_a_client_waiting_on_a_stopping_replica_is_answered_at_once(
    store: InMemorySagaStore,
):
    participants = Participants()
    reached, released = participants.hold("/charge")
    runner = _runner(store, participants)
    state, token = await _started(store, runner)
    runner.spawn(state.id, token)
    await reached.wait()
    waiting = asyncio.create_task(runner.wait_until_final(state.id, timeout=60))
    await asyncio.sleep(0)

    runner.begin_drain(grace=5.0)
    answered = await asyncio.wait_for(waiting, timeout=2.0)

    assert answered is not None and answered.status is SagaStatus.RUNNING  # as it stands
    released.set()
    await runner.drain(grace=5.0)


async def test_a_stopping_replica_refuses_a_start_with_a_503_and_records_nothing(
    store: InMemorySagaStore,
):
    runner = _runner(store, Participants())
    runner.begin_drain(grace=5.0)

    with pytest.raises(ReplicaStopping) as refused:
        await start_saga(runner, TRIP, {"trip": 1}, "a-client-key")

    assert (refused.value.status_code, refused.value.code) == (503, "replica_stopping")
    assert await store.live_counts() == []


async def test_a_started_saga_waiting_for_a_slot_when_the_replica_stops_leaves_no_unsent_call(
    store: InMemorySagaStore,
):
    """A start makes its first call in the request, and its move writes the next call ahead;
    its run then waits for a slot. Ended by the drain there, the call written ahead never left:
    it is withdrawn, not left for the next replica to take as one of unknown outcome."""
    participants = Participants()
    reached, released = participants.hold("/charge")
    runner = _runner(store, participants)
    runner.max_running = 1
    runner._slots.size = 1
    busy, busy_token = await _started(store, runner)
    runner.spawn(busy.id, busy_token)  # holds the only slot, its charge held
    await reached.wait()

    waiting, token = await _started(store, runner)
    begun = await runner.begin(waiting, token)  # reserves, then waits for the slot
    assert begun.step == 1
    assert _attempts(store, waiting, "charge") == [AttemptStatus.STARTED]  # written ahead

    runner.begin_drain(grace=5.0)
    released.set()
    await runner.drain(grace=5.0)

    assert _attempts(store, waiting, "charge") == []
    assert participants.calls.count("/charge") == 1  # the busy saga's only
