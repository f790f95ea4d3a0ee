"""The saga test kit (`sagaengine.testing`): its model participants keep the participant kit's
promises, and an exploration reports nothing for a healthy saga and a violation, naming the
step and the scenario, for each planted fault: compensations that are not idempotent, a
participant that applies a late action after its tombstone, a step whose compensation undoes
nothing, and an engine that takes a refusal after a lost answer at its word.

The saga here is a small one of its own (a trip), so that these tests do not move when the
application's sagas do; tests/unit/test_sagas_explored.py explores those."""

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel

from sagaengine.definition import (
    SETTLE_PATH,
    Participant,
    Phase,
    RemoteCall,
    RetryPolicy,
    SagaDefinition,
    SagaStatus,
    StartRules,
    Step,
    StepKind,
    step_key,
)
from sagaengine.http import BusinessRefusal
from sagaengine.memory import InMemorySagaStore
from sagaengine.testing import (
    AppliesLateActions,
    Effect,
    FaultKind,
    ModelParticipants,
    Point,
    UndoesEveryTime,
    explore,
)

HOTEL = Participant("hotel", "HOTEL_URL", "http://hotel")
AIRLINE = Participant("airline", "AIRLINE_URL", "http://airline")
BANK = Participant("bank", "BANK_URL", "http://bank")
MAILER = Participant("mailer", "MAILER_URL", "http://mailer")


class Trip(BaseModel):
    trip_id: int
    booking: str | None = None  # the hotel's, learnt from its answer


def _learn_booking(trip: Trip, answer: Mapping[str, Any]) -> Trip:
    return trip.model_copy(update={"booking": answer["booking"]})


def _undo(participant: Participant, path: str) -> Any:
    return lambda ctx: participant.post(path, {"action_key": ctx.action_key})


def _trip_saga(*steps: Step[Trip]) -> SagaDefinition[Trip]:
    return SagaDefinition(
        name="trip",
        version=1,
        data=Trip,
        participants=(HOTEL, AIRLINE, BANK, MAILER),
        steps=steps,
        start=StartRules(lock_key=lambda trip: f"trip:{trip.trip_id}", refusals=frozenset({"no"})),
    )


BOOK_HOTEL = Step(
    "book_hotel",
    lambda ctx: HOTEL.post("/bookings", {"trip": ctx.data.trip_id}),
    _undo(HOTEL, "/bookings/cancellations"),
    learn=_learn_booking,
)
BOOK_FLIGHT = Step(
    "book_flight",
    lambda ctx: AIRLINE.post("/seats", {"trip": ctx.data.trip_id, "hotel": ctx.data.booking}),
    _undo(AIRLINE, "/seats/releases"),
    # Its own policy, with long waits: an exploration keeps its attempts, not its waits.
    retry=RetryPolicy(attempts=2, initial_backoff=5, max_backoff=5),
)
CHARGE = Step(
    "charge", lambda ctx: BANK.post("/charges", {"trip": ctx.data.trip_id}), kind=StepKind.PIVOT
)
SEND_TICKETS = Step(
    "send_tickets",
    lambda ctx: MAILER.post("/tickets", {"trip": ctx.data.trip_id}),
    kind=StepKind.RETRIABLE,
)
TRIP_SAGA = _trip_saga(BOOK_HOTEL, BOOK_FLIGHT, CHARGE, SEND_TICKETS)
TRIP = Trip(trip_id=1)
ANSWERS = {"book_hotel": {"booking": "H-1"}}
LATE_THEN_REFUSED = FaultKind.LATE_THEN_REFUSED


def _explored(**options: Any) -> list[str]:
    return explore(TRIP_SAGA, TRIP, answers=ANSWERS, **options).violations


# -- the model participants ------------------------------------------------------------------

KEY = step_key("saga-1", "book_hotel", Phase.ACTION)
UNDO_KEY = step_key("saga-1", "book_hotel", Phase.COMPENSATION)
BOOK = RemoteCall("hotel", "POST", "/bookings", {"trip": 1})
CANCEL = RemoteCall("hotel", "POST", "/bookings/cancellations", {"action_key": KEY})


def test_an_action_applies_once_and_its_retry_replays_the_answer():
    model = ModelParticipants({"book_hotel": {"booking": "H-1"}})

    first, again = model.receive(BOOK, KEY), model.receive(BOOK, KEY)

    assert first == again == {"booking": "H-1"}
    assert model.ledger[KEY].applied == 1
    assert [a.effect for a in model.arrivals] == [Effect.APPLIED, Effect.REPLAYED]


def test_a_compensation_undoes_its_action_once_however_often_it_is_sent():
    model = ModelParticipants()
    model.receive(BOOK, KEY)

    model.receive(CANCEL, UNDO_KEY)
    model.receive(CANCEL, UNDO_KEY)

    assert (model.ledger[KEY].applied, model.ledger[KEY].undone) == (1, 1)


def test_a_compensation_before_its_action_leaves_a_tombstone_that_refuses_it():
    model = ModelParticipants()

    model.receive(CANCEL, UNDO_KEY)
    with pytest.raises(BusinessRefusal) as refused:
        model.receive(BOOK, KEY)

    assert refused.value.code == "action_compensated"
    assert model.ledger[KEY].applied == 0 and model.ledger[KEY].tombstoned


def test_settle_answers_as_the_kits_settle_route_and_tombstones_what_never_came():
    model = ModelParticipants({"book_hotel": {"booking": "H-1"}})
    settle = RemoteCall("hotel", "POST", SETTLE_PATH, {"key": KEY})
    other = step_key("saga-2", "book_hotel", Phase.ACTION)

    model.receive(BOOK, KEY)
    applied = model.receive(settle, None)
    never = model.receive(replace(settle, body={"key": other}), None)

    assert applied == {
        "key": KEY,
        "outcome": "APPLIED",
        "status_code": 200,
        "response": {"booking": "H-1"},
    }
    assert never == {"key": other, "outcome": "TOMBSTONE", "status_code": None, "response": None}
    with pytest.raises(BusinessRefusal):
        model.receive(BOOK, other)


def test_a_compensation_sent_to_another_service_than_its_action_undoes_nothing():
    model = ModelParticipants()
    model.receive(BOOK, KEY)

    model.receive(replace(CANCEL, service="airline"), UNDO_KEY)

    assert model.ledger[KEY].undone == 0


# -- exploring ---------------------------------------------------------------------------------


def test_a_healthy_saga_passes_every_scenario_at_every_point():
    exploration = explore(TRIP_SAGA, TRIP, answers=ANSWERS)

    assert exploration.violations == []
    assert exploration.points == {
        ("book_hotel", Point.ACTION),
        ("book_hotel", Point.COMPENSATION),
        ("book_flight", Point.ACTION),
        ("book_flight", Point.COMPENSATION),
        ("charge", Point.ACTION),
        ("charge", Point.SETTLE),
        ("send_tickets", Point.ACTION),
    }
    statuses = {r.scenario.name: r.status for r in exploration.results}
    assert statuses["book_flight action refused"] is SagaStatus.COMPENSATED
    assert statuses["charge action exhausted_applied"] is SagaStatus.COMPLETED
    assert statuses["send_tickets action exhausted"] is SagaStatus.NEEDS_ATTENTION
    assert statuses["book_hotel action refused (no)"] is None  # the start's refusal: no saga


def test_an_exploration_waits_for_no_retry_backoff_and_no_lease():
    started = time.perf_counter()
    exploration = explore(TRIP_SAGA, TRIP, answers=ANSWERS, only="book_flight")

    assert exploration.results and exploration.violations == []
    assert time.perf_counter() - started < 5  # book_flight's policy alone would wait 5 s a retry


def test_every_kind_of_fault_is_put_at_every_action():
    exploration = explore(
        TRIP_SAGA,
        TRIP,
        answers=ANSWERS,
        only=lambda s: s.fault is not None and s.fault.point is Point.ACTION,
    )

    kinds = {
        (r.scenario.fault.step, r.scenario.fault.kind)
        for r in exploration.results
        if r.scenario.fault
    }
    late = {FaultKind.LATE, FaultKind.LATE_THEN_REFUSED}
    for step in TRIP_SAGA.steps:
        expected = set(FaultKind) - (late if step.kind is StepKind.RETRIABLE else set())
        assert {kind for name, kind in kinds if name == step.name} == expected


def test_compensations_that_are_not_idempotent_are_caught():
    found = _explored(participants=UndoesEveryTime)

    assert (
        "trip, book_hotel compensation answer_lost, after charge action refused: "
        "book_hotel's action undone 2 times"
    ) in found
    assert any(
        v.startswith("trip, book_flight compensation stop_after") and "undone 2 times" in v
        for v in found
    )


def test_a_participant_that_applies_a_late_action_after_its_tombstone_is_caught():
    found = _explored(participants=AppliesLateActions)

    assert (
        "trip, book_flight action late: "
        "the saga is COMPENSATED but book_flight's action stands (applied 1, undone 0)"
    ) in found
    assert any(v.startswith("trip, charge action late:") for v in found)


def test_a_step_whose_compensation_undoes_nothing_is_caught():
    forgetful = replace(
        BOOK_FLIGHT,
        compensation=lambda ctx: AIRLINE.post("/seats/releases", {"trip": ctx.data.trip_id}),
    )
    saga = _trip_saga(BOOK_HOTEL, forgetful, CHARGE, SEND_TICKETS)

    found = explore(saga, TRIP, answers=ANSWERS, only="charge action refused").violations

    assert len(found) == 2
    assert found[0] == (
        "trip, charge action refused: "
        "the saga is COMPENSATED but book_flight's action stands (applied 1, undone 0)"
    )
    assert found[1].startswith(
        "trip, charge action refused: book_flight's compensation does not name its action's key"
    )


def test_an_engine_that_takes_a_refusal_after_a_lost_answer_at_its_word_is_caught(
    monkeypatch: pytest.MonkeyPatch,
):
    async def never_unknown(*_: Any) -> bool:
        return False

    monkeypatch.setattr(InMemorySagaStore, "had_unknown_outcome", never_unknown)

    found = _explored(only=lambda s: s.fault is not None and s.fault.kind is LATE_THEN_REFUSED)

    assert found == [
        f"trip, {step} action late_then_refused: "
        f"the saga is COMPENSATED but {step}'s action stands (applied 1, undone 0)"
        for step in ("book_hotel", "book_flight", "charge")
    ]
