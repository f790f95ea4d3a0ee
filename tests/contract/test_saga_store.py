"""The contract of a saga store (`sagaengine.store.SagaStore`), held by each of them: the one on
PostgreSQL, and the one in memory that the runner's unit tests stand on. What passes here may
stand in for the other."""

import inspect
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import BaseModel, ConfigDict

from sagaengine.decisions import IllegalSagaTransition, Position
from sagaengine.definition import (
    OutcomeEvent,
    Phase,
    RemoteCall,
    SagaDefinition,
    SagaStatus,
    StartRules,
    Step,
    StepKind,
)
from sagaengine.memory import InMemorySagaStore
from sagaengine.postgres import PostgresSagaStore
from sagaengine.store import (
    AttemptStatus,
    LeaseLost,
    Moved,
    NextAttempt,
    OutboxStatus,
    Owner,
    SagaState,
    SagaStore,
)
from tests.contract.conftest import LEASE_SECONDS, Event, Harness

pytestmark = pytest.mark.anyio

RESERVE = RemoteCall("stock", "POST", "/reservations", {"item": 1})
RELEASE = RemoteCall("stock", "POST", "/reservations/release", {"item": 1})
CONFIRM = RemoteCall("orders", "POST", "/orders/1/confirm")


class Anything(BaseModel):
    model_config = ConfigDict(extra="allow")


DEFINITION = SagaDefinition(
    "contract",
    1,
    Anything,
    (
        Step("reserve", action=lambda _: RESERVE, compensation=lambda _: RELEASE),
        Step("confirm", action=lambda _: CONFIRM, settle=lambda _: CONFIRM, kind=StepKind.PIVOT),
    ),
    StartRules(lock_key=lambda _: "contract:the-one"),
)
OTHER_TYPE = replace(DEFINITION, name="other")

ACTION, COMPENSATION = Phase.ACTION, Phase.COMPENSATION
CONFIRMING = Position(SagaStatus.RUNNING, 1, ACTION)
COMPENSATING = Position(SagaStatus.COMPENSATING, 0, COMPENSATION)
COMPLETED = Position(SagaStatus.COMPLETED, 2, ACTION)
COMPENSATED = Position(SagaStatus.COMPENSATED, -1, COMPENSATION)
STUCK = Position(SagaStatus.NEEDS_ATTENTION, 1, ACTION)
EVENT = OutcomeEvent("order:1", "order.confirmed", {"order_id": 1})

OWNER = Owner("replica-a", "first")
ANOTHER = Owner("replica-b", "first")


async def _started(
    store: SagaStore,
    *,
    owner: Owner = OWNER,
    client_key: str | None = None,
    lock_key: str | None = None,
    first: RemoteCall | None = None,
    definition: SagaDefinition = DEFINITION,
) -> tuple[SagaState, str]:
    token = owner.lease_token()
    lock_key = lock_key or f"order:{uuid.uuid4()}"
    state = await store.create(
        definition, {"order_id": 1}, client_key, lock_key, token, "request-1", first=first
    )
    assert state is not None
    return state, token


async def _at(store: SagaStore, position: Position, *, owner: Owner = OWNER) -> SagaState:
    """A saga moved from its start to `position` (and, if it runs, still leased to `owner`)."""
    state, token = await _started(store, owner=owner)
    if position.status is SagaStatus.COMPENSATED:
        await store.move(state, token, position)
    elif position.status is not SagaStatus.RUNNING or position.step != 0:
        await store.move(state, token, CONFIRMING)
        if position != CONFIRMING:
            moved = await store.get(state.id)
            assert moved is not None
            await store.move(moved, token, position)
    stands = await store.get(state.id)
    assert stands is not None and stands.position == position
    return stands


def _key(saga_id: uuid.UUID, step: int, phase: Phase) -> str:
    return f"{saga_id}:{DEFINITION.steps[step].name}:{phase}"


# -- starting ----------------------------------------------------------------------------------


async def test_the_lease_is_the_one_the_store_was_given(harness: Harness):
    assert harness.store.lease == timedelta(seconds=LEASE_SECONDS)


async def test_a_new_saga_runs_its_first_action_leased_to_its_creator(harness: Harness):
    store = harness.store
    state, token = await _started(store, client_key="key-1")

    assert state.position == Position(SagaStatus.RUNNING, 0, ACTION)
    assert (state.type, state.version, state.payload, state.results) == (
        "contract",
        1,
        {"order_id": 1},
        {},
    )
    assert (state.error, state.attention, state.finished_at) == (None, None, None)
    assert (state.client_key, state.request_id, state.lease_owner) == ("key-1", "request-1", token)
    assert (state.starting, state.first_attempt) == (False, None)
    assert await store.get(state.id) == state
    assert await harness.attempts(state.id) == []


async def test_a_start_with_its_first_call_is_starting_and_writes_that_call_ahead(
    harness: Harness,
):
    state, token = await _started(harness.store, first=RESERVE)

    assert state.starting and state.first_attempt is not None
    [attempt] = await harness.attempts(state.id)
    assert (attempt.step, attempt.phase, attempt.attempt, attempt.status) == (
        0,
        ACTION,
        1,
        AttemptStatus.STARTED,
    )
    assert attempt.owner == token
    assert attempt.key == f"{state.id}:reserve:action"
    assert attempt.request == {
        "service": "stock",
        "method": "POST",
        "path": "/reservations",
        "body": {"item": 1},
    }


async def test_a_client_key_names_one_saga_of_its_type_forever(harness: Harness):
    store = harness.store
    first, token = await _started(store, client_key="key-1")

    assert await store.create(DEFINITION, {}, "key-1", "order:elsewhere", "t") is None
    assert await store.find_by_client_key("contract", "key-1") == await store.get(first.id)
    await store.move(first, token, COMPENSATED)  # finished: the key still names it
    assert await store.create(DEFINITION, {}, "key-1", "order:elsewhere", "t") is None
    other, _ = await _started(store, client_key="key-1", definition=OTHER_TYPE)
    assert other.id != first.id
    assert await store.find_by_client_key("other", "key-1") == await store.get(other.id)


async def test_a_lock_key_holds_one_live_saga_until_it_is_compensated(harness: Harness):
    store = harness.store
    first, token = await _started(store, lock_key="order:7")

    assert await store.create(DEFINITION, {}, None, "order:7", "t") is None
    assert await store.find_live_by_lock_key("order:7") == await store.get(first.id)
    await store.move(first, token, COMPENSATED)
    assert await store.find_live_by_lock_key("order:7") is None
    again, _ = await _started(store, lock_key="order:7")
    assert await store.find_live_by_lock_key("order:7") == await store.get(again.id)


async def test_a_completed_saga_keeps_its_lock_key(harness: Harness):
    store = harness.store
    state, token = await _started(store, lock_key="order:8")
    await store.move(state, token, CONFIRMING)
    moved = await store.get(state.id)
    assert moved is not None
    await store.move(moved, token, COMPLETED)

    assert await store.create(DEFINITION, {}, None, "order:8", "t") is None
    live = await store.find_live_by_lock_key("order:8")
    assert live is not None and live.status is SagaStatus.COMPLETED


async def test_a_saga_id_is_recorded_once(harness: Harness):
    store = harness.store
    saga_id = uuid.uuid4()
    assert await store.create(DEFINITION, {}, None, "order:1", "t", saga_id=saga_id) is not None
    assert await store.create(DEFINITION, {}, None, "order:2", "t", saga_id=saga_id) is None


async def test_what_was_never_recorded_is_not_found(harness: Harness):
    store = harness.store
    assert await store.get(uuid.uuid4()) is None
    assert await store.find_by_client_key("contract", "nobody's") is None
    assert await store.find_live_by_lock_key("order:nothing") is None


async def test_a_refused_start_is_withdrawn_with_its_attempts_as_if_never_recorded(
    harness: Harness,
):
    store = harness.store
    state, token = await _started(store, client_key="key-1", lock_key="order:1", first=RESERVE)

    assert not await store.withdraw(state.id, OWNER.lease_token())  # not this run's
    assert await store.withdraw(state.id, token)
    assert await store.get(state.id) is None
    assert await harness.attempts(state.id) == []
    assert not await store.withdraw(state.id, token)
    await _started(store, client_key="key-1", lock_key="order:1")  # both keys are free again


async def test_a_start_that_stands_cannot_be_withdrawn(harness: Harness):
    store = harness.store
    starting, token = await _started(store, first=RESERVE)
    await store.accept(starting.id, token)
    plain, plain_token = await _started(store)

    accepted = await store.get(starting.id)
    assert accepted is not None and not accepted.starting
    assert not await store.withdraw(starting.id, token)
    assert not await store.withdraw(plain.id, plain_token)
    assert await store.get(starting.id) is not None and await store.get(plain.id) is not None


async def test_a_start_is_accepted_only_by_its_own_run(harness: Harness):
    store = harness.store
    state, _ = await _started(store, first=RESERVE)

    with pytest.raises(LeaseLost):
        await store.accept(state.id, OWNER.lease_token())
    still = await store.get(state.id)
    assert still is not None and still.starting


async def test_a_move_decides_a_start(harness: Harness):
    store = harness.store
    state, token = await _started(store, first=RESERVE)
    await store.move(state, token, CONFIRMING, result=("reserve", {"reserved": True}))

    moved = await store.get(state.id)
    assert moved is not None and not moved.starting
    assert not await store.withdraw(state.id, token)


# -- attempts ----------------------------------------------------------------------------------


async def test_attempts_are_numbered_per_step_and_phase(harness: Harness):
    store = harness.store
    state, token = await _started(store)
    calls = [(0, ACTION), (0, ACTION), (0, COMPENSATION), (1, ACTION), (0, ACTION)]

    ids = [
        await store.begin_attempt(state.id, token, step, "s", phase, f"k{step}{phase}", RESERVE)
        for step, phase in calls
    ]

    assert len(set(ids)) == len(ids)
    assert [(a.step, a.phase, a.attempt) for a in await harness.attempts(state.id)] == [
        (0, ACTION, 1),
        (0, ACTION, 2),
        (0, COMPENSATION, 1),
        (1, ACTION, 1),
        (0, ACTION, 3),
    ]


async def test_a_finished_attempt_keeps_its_outcome(harness: Harness):
    store = harness.store
    state, token = await _started(store)
    key = _key(state.id, 0, ACTION)

    failed = await store.begin_attempt(state.id, token, 0, "reserve", ACTION, key, RESERVE)
    await store.finish_attempt(
        state.id, token, failed, AttemptStatus.FAILED, error={"code": "timeout"}
    )
    done = await store.begin_attempt(state.id, token, 0, "reserve", ACTION, key, RESERVE)
    await store.finish_attempt(
        state.id, token, done, AttemptStatus.SUCCEEDED, response={"reserved": True}
    )

    attempts = await harness.attempts(state.id)
    assert [(a.attempt, a.status, a.response, a.error) for a in attempts] == [
        (1, AttemptStatus.FAILED, None, {"code": "timeout"}),
        (2, AttemptStatus.SUCCEEDED, {"reserved": True}, None),
    ]
    assert {a.key for a in attempts} == {key}


@pytest.mark.parametrize(
    ("status", "unknown"),
    [
        (AttemptStatus.FAILED, True),  # a transient fault: it may have applied
        (AttemptStatus.REFUSED, False),
        (AttemptStatus.SUCCEEDED, False),
    ],
)
async def test_a_call_whose_attempt_got_no_answer_has_an_unknown_outcome(
    harness: Harness, status: AttemptStatus, unknown: bool
):
    store = harness.store
    state, token = await _started(store)
    attempt = await store.begin_attempt(state.id, token, 0, "reserve", ACTION, "k", RESERVE)
    await store.finish_attempt(state.id, token, attempt, status)

    assert await store.had_unknown_outcome(state.id, 0, ACTION) is unknown
    assert not await store.had_unknown_outcome(state.id, 0, COMPENSATION)
    assert not await store.had_unknown_outcome(state.id, 1, ACTION)


async def test_a_write_ahead_tried_again_leaves_the_unseen_one_interrupted(harness: Harness):
    store = harness.store
    state, token = await _started(store)
    key = _key(state.id, 1, ACTION)
    await store.begin_attempt(state.id, token, 1, "confirm", ACTION, key, CONFIRM)
    await store.begin_attempt(state.id, token, 1, "confirm", ACTION, key, CONFIRM, again=True)

    assert [(a.attempt, a.status) for a in await harness.attempts(state.id)] == [
        (1, AttemptStatus.INTERRUPTED),
        (2, AttemptStatus.STARTED),
    ]
    assert await store.had_unknown_outcome(state.id, 1, ACTION)


async def test_a_run_without_the_lease_cannot_write_attempts(harness: Harness):
    store = harness.store
    state, token = await _started(store)
    attempt = await store.begin_attempt(state.id, token, 0, "reserve", ACTION, "k", RESERVE)
    intruder = OWNER.lease_token()

    with pytest.raises(LeaseLost):
        await store.begin_attempt(state.id, intruder, 0, "reserve", ACTION, "k", RESERVE)
    with pytest.raises(LeaseLost):
        await store.finish_attempt(state.id, intruder, attempt, AttemptStatus.SUCCEEDED)
    with pytest.raises(LeaseLost):
        await store.begin_attempt(uuid.uuid4(), token, 0, "reserve", ACTION, "k", RESERVE)

    [only] = await harness.attempts(state.id)
    assert (only.attempt, only.status) == (1, AttemptStatus.STARTED)


# -- moves -------------------------------------------------------------------------------------


async def test_a_move_records_the_answer_and_writes_the_next_call_ahead(harness: Harness):
    store = harness.store
    state, token = await _started(store, first=RESERVE)
    assert state.first_attempt is not None
    key = _key(state.id, 1, ACTION)

    ahead = (
        await store.move(
            state,
            token,
            CONFIRMING,
            result=("reserve", {"reserved": True}),
            finished_attempt=(state.first_attempt, AttemptStatus.SUCCEEDED, {"reserved": True}),
            ahead=NextAttempt(1, "confirm", ACTION, key, CONFIRM),
        )
    ).ahead

    moved = await store.get(state.id)
    assert moved is not None and moved.position == CONFIRMING
    assert moved.results == {"reserve": {"reserved": True}}
    assert moved.lease_owner == token and moved.finished_at is None
    first, written_ahead = await harness.attempts(state.id)
    assert (first.status, first.response) == (AttemptStatus.SUCCEEDED, {"reserved": True})
    assert (written_ahead.step, written_ahead.attempt, written_ahead.status) == (
        1,
        1,
        AttemptStatus.STARTED,
    )
    assert (written_ahead.key, written_ahead.owner) == (key, token)
    assert ahead is not None
    await store.finish_attempt(state.id, token, ahead, AttemptStatus.SUCCEEDED)  # that one


async def test_a_call_written_ahead_and_never_sent_is_withdrawn_only_by_its_run(
    harness: Harness,
):
    store = harness.store
    state, token = await _started(store, first=RESERVE)
    assert state.first_attempt is not None
    moved = await store.move(
        state,
        token,
        CONFIRMING,
        result=("reserve", {"reserved": True}),
        finished_attempt=(state.first_attempt, AttemptStatus.SUCCEEDED, {"reserved": True}),
        ahead=NextAttempt(1, "confirm", ACTION, _key(state.id, 1, ACTION), CONFIRM),
    )
    assert moved.ahead is not None

    await store.withdraw_attempt(state.id, "another-run", moved.ahead)  # fenced: nothing
    await store.withdraw_attempt(state.id, token, state.first_attempt)  # not STARTED: nothing
    assert len(await harness.attempts(state.id)) == 2
    await store.withdraw_attempt(state.id, token, moved.ahead)

    [reserved] = await harness.attempts(state.id)
    assert reserved.status is AttemptStatus.SUCCEEDED
    after = await store.get(state.id)
    assert after is not None and after.position == CONFIRMING  # the saga itself is unmoved


async def test_a_move_keeps_the_first_error_until_another_replaces_it(harness: Harness):
    store = harness.store
    state = await _at(store, CONFIRMING)
    token = state.lease_owner
    assert token is not None
    refused = {"code": "not_confirmed", "step": "confirm"}

    await store.move(state, token, COMPENSATING, error=refused)
    compensating = await store.get(state.id)
    assert compensating is not None and compensating.error == refused
    await store.move(compensating, token, COMPENSATED)

    done = await store.get(state.id)
    assert done is not None and done.error == refused and done.results == {}


async def test_a_final_move_gives_up_the_lease_and_writes_its_event_with_it(harness: Harness):
    store = harness.store
    state = await _at(store, CONFIRMING)
    assert state.lease_owner is not None

    assert await store.move(state, state.lease_owner, COMPLETED, event=EVENT) == Moved()

    done = await store.get(state.id)
    assert done is not None and done.is_final
    assert (done.lease_owner, done.attention) == (None, None)
    assert done.finished_at is not None
    assert await harness.events(state.id) == [
        Event("order:1", "order.confirmed", {"order_id": 1}, OutboxStatus.PENDING)
    ]


async def test_a_move_to_needs_attention_says_why_and_gives_up_the_lease(harness: Harness):
    store = harness.store
    state = await _at(store, CONFIRMING)
    token = state.lease_owner
    assert token is not None
    why = {"code": "timeout", "step": "confirm", "phase": "action"}

    await store.move(state, token, STUCK, attention=why)

    stuck = await store.get(state.id)
    assert stuck is not None and stuck.position == STUCK
    assert (stuck.attention, stuck.lease_owner, stuck.finished_at) == (why, None, None)
    with pytest.raises(LeaseLost):
        await store.begin_attempt(state.id, token, 1, "confirm", ACTION, "k", CONFIRM)
    assert await harness.events(state.id) == []


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (COMPLETED, CONFIRMING),
        (COMPENSATED, CONFIRMING),
        (COMPENSATING, CONFIRMING),
        (COMPENSATING, COMPLETED),
        (STUCK, COMPLETED),
    ],
    ids=lambda p: str(p.status),
)
async def test_an_illegal_move_is_refused_before_anything_is_written(
    harness: Harness, start: Position, to: Position
):
    store = harness.store
    state = await _at(store, start)
    before = await harness.attempts(state.id), await harness.events(state.id)

    with pytest.raises(IllegalSagaTransition):
        await store.move(state, state.lease_owner or "t", to, event=EVENT)

    assert await store.get(state.id) == state
    assert (await harness.attempts(state.id), await harness.events(state.id)) == before


async def test_a_move_by_a_run_without_the_lease_writes_nothing(harness: Harness):
    store = harness.store
    state, token = await _started(store)
    attempt = await store.begin_attempt(state.id, token, 0, "reserve", ACTION, "k", RESERVE)
    before = await store.get(state.id), await harness.attempts(state.id)

    with pytest.raises(LeaseLost):
        await store.move(
            state,
            OWNER.lease_token(),
            COMPENSATED,
            error={"code": "refused"},
            event=EVENT,
            finished_attempt=(attempt, AttemptStatus.SUCCEEDED, {}),
            ahead=NextAttempt(0, "reserve", COMPENSATION, "k", RELEASE),
        )

    assert (await store.get(state.id), await harness.attempts(state.id)) == before
    assert await harness.events(state.id) == []


async def test_a_move_from_a_status_the_saga_has_left_is_refused(harness: Harness):
    store = harness.store
    state = await _at(store, CONFIRMING)
    token = state.lease_owner
    assert token is not None
    await store.move(state, token, COMPENSATING)

    with pytest.raises(LeaseLost):  # the move is fenced by the status it starts from
        await store.move(state, token, COMPLETED, event=EVENT)
    assert await harness.events(state.id) == []


async def test_a_final_move_tried_again_after_it_committed_unseen_stands(harness: Harness):
    store = harness.store
    state = await _at(store, CONFIRMING)
    token = state.lease_owner
    assert token is not None

    await store.move(state, token, COMPLETED, event=EVENT)
    assert await store.move(state, token, COMPLETED, event=EVENT, again=True) == Moved()
    with pytest.raises(LeaseLost):  # a first try that matches nothing: not ours
        await store.move(state, token, COMPLETED, event=EVENT)

    assert [e.type for e in await harness.events(state.id)] == ["order.confirmed"]


async def test_a_move_tried_again_writes_nothing_ahead(harness: Harness):
    store = harness.store
    state, token = await _started(store)
    ahead = NextAttempt(1, "confirm", ACTION, "k", CONFIRM)

    assert (await store.move(state, token, CONFIRMING, ahead=ahead)).ahead is not None
    assert (await store.move(state, token, CONFIRMING, ahead=ahead, again=True)).ahead is None

    assert [(a.step, a.attempt) for a in await harness.attempts(state.id)] == [(1, 1)]


async def test_a_move_tried_again_on_a_saga_another_run_took_is_a_lost_lease(harness: Harness):
    store = harness.store
    state, _ = await _started(store)

    with pytest.raises(LeaseLost):
        await store.move(state, "someone-else#x.y", COMPLETED, again=True)


async def test_a_move_tried_again_that_finds_the_saga_elsewhere_is_a_lost_lease(
    harness: Harness,
):
    store = harness.store
    state = await _at(store, CONFIRMING)
    token = state.lease_owner
    assert token is not None
    await store.move(state, token, STUCK, attention={"code": "timeout"})

    with pytest.raises(LeaseLost):  # the saga is released, but not where this move leads
        await store.move(state, token, COMPLETED, event=EVENT, again=True)
    assert await harness.events(state.id) == []


# -- leases and recovery -----------------------------------------------------------------------


async def test_a_saga_whose_lease_expired_is_claimed_by_another_run(harness: Harness):
    store = harness.store
    state, token = await _started(store, first=RESERVE)
    await store.accept(state.id, token)

    assert await store.claim_expired(ANOTHER, 10) == []
    await harness.pass_time(LEASE_SECONDS + 1)
    [(saga_id, claimed)] = await store.claim_expired(ANOTHER, 10)

    assert saga_id == state.id and claimed.startswith(ANOTHER.prefix) and claimed != token
    taken = await store.get(state.id)
    assert taken is not None and taken.lease_owner == claimed and taken.position == state.position
    # The call the first run made has an unknown outcome now: the new run repeats it.
    assert [a.status for a in await harness.attempts(state.id)] == [AttemptStatus.INTERRUPTED]
    assert await store.had_unknown_outcome(state.id, 0, ACTION)
    with pytest.raises(LeaseLost):
        await store.begin_attempt(state.id, token, 0, "reserve", ACTION, "k", RESERVE)
    with pytest.raises(LeaseLost):
        await store.move(state, token, CONFIRMING)
    await store.begin_attempt(state.id, claimed, 0, "reserve", ACTION, "k", RESERVE)
    assert await store.claim_expired(OWNER, 10) == []


async def test_every_write_of_a_run_renews_its_lease(harness: Harness):
    store = harness.store
    state, token = await _started(store)

    await harness.pass_time(LEASE_SECONDS - 5)
    await store.begin_attempt(state.id, token, 0, "reserve", ACTION, "k", RESERVE)
    await harness.pass_time(LEASE_SECONDS - 5)
    assert await store.claim_expired(ANOTHER, 10) == []
    await harness.pass_time(10)
    assert [saga_id for saga_id, _ in await store.claim_expired(ANOTHER, 10)] == [state.id]


async def test_only_running_and_compensating_sagas_are_claimed(harness: Harness):
    store = harness.store
    live = {(await _at(store, position)).id for position in (CONFIRMING, COMPENSATING)}
    for position in (COMPLETED, COMPENSATED, STUCK):
        await _at(store, position)

    await harness.pass_time(LEASE_SECONDS + 1)

    assert {saga_id for saga_id, _ in await store.claim_expired(ANOTHER, 10)} == live


async def test_a_claim_takes_at_most_its_limit_the_longest_expired_first(harness: Harness):
    store = harness.store
    started = []
    for _ in range(3):
        started.append((await _started(store))[0].id)
        await harness.pass_time(1)
    await harness.pass_time(LEASE_SECONDS)

    first = await store.claim_expired(ANOTHER, 2)
    assert sorted(saga_id for saga_id, _ in first) == sorted(started[:2])
    assert [saga_id for saga_id, _ in await store.claim_expired(ANOTHER, 2)] == started[2:]


async def test_at_start_a_replica_takes_back_at_once_what_its_earlier_incarnation_left(
    harness: Harness,
):
    store = harness.store
    earlier, restarted = Owner("replica-a", "before"), Owner("replica-a", "after")
    orphan, _ = await _started(store, owner=earlier)
    await _started(store, owner=restarted)  # its own, running now
    await _started(store, owner=ANOTHER)  # another replica's, alive

    assert await store.claim_expired(restarted, 10) == []
    [(saga_id, token)] = await store.claim_expired(restarted, 10, own_orphans=True)
    assert saga_id == orphan.id and token.startswith(restarted.prefix)


async def test_released_leases_can_be_claimed_at_once(harness: Harness):
    store = harness.store
    leaving, _ = await _started(store, owner=OWNER)
    await _started(store, owner=ANOTHER)

    await store.release_leases(OWNER)

    third = Owner("replica-c", "first")
    assert [saga_id for saga_id, _ in await store.claim_expired(third, 10)] == [leaving.id]


async def test_an_operator_retry_resumes_a_stuck_saga_under_a_new_lease(harness: Harness):
    store = harness.store
    stuck = await _at(store, STUCK)

    token = await store.claim_for_retry(stuck.id, ANOTHER, CONFIRMING)

    assert token is not None and token.startswith(ANOTHER.prefix)
    resumed = await store.get(stuck.id)
    assert resumed is not None and resumed.position == CONFIRMING
    assert (resumed.attention, resumed.lease_owner) == (None, token)
    assert await store.claim_for_retry(stuck.id, ANOTHER, CONFIRMING) is None  # once
    await store.begin_attempt(stuck.id, token, 1, "confirm", ACTION, "k", CONFIRM)


async def test_only_a_stuck_saga_can_be_retried_and_only_forward_or_back(harness: Harness):
    store = harness.store
    running = await _at(store, CONFIRMING)
    stuck = await _at(store, STUCK)

    assert await store.claim_for_retry(running.id, ANOTHER, CONFIRMING) is None
    assert await store.claim_for_retry(uuid.uuid4(), ANOTHER, CONFIRMING) is None
    with pytest.raises(IllegalSagaTransition):
        await store.claim_for_retry(stuck.id, ANOTHER, COMPLETED)
    assert await store.get(stuck.id) == stuck


# -- watching ----------------------------------------------------------------------------------


async def test_live_counts_are_the_sagas_not_final_by_type_and_status(harness: Harness):
    store = harness.store
    first = await _at(store, CONFIRMING)
    second = await _at(store, CONFIRMING)
    compensating = await _at(store, COMPENSATING)
    stuck = await _at(store, STUCK)
    await _at(store, COMPLETED)
    await _at(store, COMPENSATED)
    other, _ = await _started(store, definition=OTHER_TYPE)

    counts = {(c.type, c.status): (c.count, c.oldest) for c in await store.live_counts()}

    assert counts == {
        ("contract", SagaStatus.RUNNING): (2, min(first.created_at, second.created_at)),
        ("contract", SagaStatus.COMPENSATING): (1, compensating.created_at),
        ("contract", SagaStatus.NEEDS_ATTENTION): (1, stuck.created_at),
        ("other", SagaStatus.RUNNING): (1, other.created_at),
    }


async def test_live_counts_of_no_saga_are_empty(harness: Harness):
    await _at(harness.store, COMPLETED)
    assert await harness.store.live_counts() == []


async def test_a_saga_keeps_the_trace_it_was_started_in(harness: Harness):
    store = harness.store
    traceparent = f"00-{'a1' * 16}-{'b2' * 8}-01"
    state = await store.create(
        DEFINITION, {}, None, "order:traced", OWNER.lease_token(), trace_parent=traceparent
    )
    untraced, _ = await _started(store)

    assert state is not None and state.trace_parent == traceparent
    stored = await store.get(state.id)
    assert stored is not None and stored.trace_parent == traceparent
    assert untraced.trace_parent is None


async def test_a_saga_keeps_its_business_keys_until_a_move_brings_new_ones(harness: Harness):
    store = harness.store
    token = OWNER.lease_token()
    state = await store.create(
        DEFINITION, {"order_id": 5}, None, "order:5", token, keys={"order_id": 5}
    )
    assert state is not None and state.keys == {"order_id": 5}

    await store.move(state, token, CONFIRMING)  # nothing learned: the keys stay
    confirming = await store.get(state.id)
    assert confirming is not None and confirming.keys == {"order_id": 5}
    learned = {"order_id": 5, "user_id": 7}
    await store.move(confirming, token, COMPLETED, keys=learned)

    done = await store.get(state.id)
    assert done is not None and done.keys == learned
    untold, _ = await _started(store)
    assert untold.keys == {}


# -- cancelling ----------------------------------------------------------------------------------

BEFORE_PIVOT = 1  # DEFINITION's pivot is its step 1


async def test_a_cancel_is_recorded_on_a_saga_going_forward_before_its_pivot(harness: Harness):
    store = harness.store
    state, token = await _started(store)

    cancelled = await store.request_cancel(state.id, "the customer called", BEFORE_PIVOT)

    assert cancelled is not None and cancelled.cancel_reason == "the customer called"
    assert cancelled.lease_owner == token  # the run keeps its lease, and learns with its move
    moved = await store.move(cancelled, token, CONFIRMING)
    assert moved.cancel_reason == "the customer called"
    assert await store.request_cancel(state.id, "again", BEFORE_PIVOT + 1) is None  # once


async def test_a_stuck_saga_can_be_cancelled_before_its_pivot(harness: Harness):
    stuck = await _at(harness.store, Position(SagaStatus.NEEDS_ATTENTION, 0, COMPENSATION))
    cancelled = await harness.store.request_cancel(stuck.id, "give up", BEFORE_PIVOT)
    assert cancelled is not None and cancelled.status is SagaStatus.NEEDS_ATTENTION


@pytest.mark.parametrize(
    "position",
    [CONFIRMING, COMPENSATING, COMPLETED, COMPENSATED, STUCK],
    ids=["at its pivot", "compensating", "completed", "compensated", "stuck at its pivot"],
)
async def test_a_saga_at_or_past_its_pivot_or_going_back_or_final_is_not_cancelled(
    harness: Harness, position: Position
):
    state = await _at(harness.store, position)
    assert await harness.store.request_cancel(state.id, "too late", BEFORE_PIVOT) is None
    after = await harness.store.get(state.id)
    assert after is not None and after.cancel_reason is None


async def test_a_starting_saga_or_an_unknown_one_is_not_cancelled(harness: Harness):
    starting, _ = await _started(harness.store, first=RESERVE)
    assert await harness.store.request_cancel(starting.id, "no", BEFORE_PIVOT) is None
    assert await harness.store.request_cancel(uuid.uuid4(), "no", BEFORE_PIVOT) is None


# -- the port itself ---------------------------------------------------------------------------

PORT_METHODS = sorted(
    name
    for name, member in vars(SagaStore).items()
    if inspect.iscoroutinefunction(member) and not name.startswith("_")
)


@pytest.mark.parametrize("store", [PostgresSagaStore, InMemorySagaStore])
@pytest.mark.parametrize("method", PORT_METHODS)
def test_each_store_takes_each_method_of_the_port_as_the_port_declares_it(store: type, method: str):
    """No type checker runs here: the signatures are compared instead, names, kinds, defaults
    and annotations alike."""
    assert inspect.signature(getattr(store, method)) == inspect.signature(
        getattr(SagaStore, method)
    )
