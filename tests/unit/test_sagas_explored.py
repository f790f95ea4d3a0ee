"""Each saga of this project, run through every failure point by the saga test kit
(`sagaengine.testing.explore`): refused, transient, answer lost, budget exhausted, arriving
late, the orchestrator dying before and after each call; every scenario must end where the
definition says, each action applied at most once and undone exactly when the saga compensates,
compensations in reverse order, nothing past the pivot's decision."""

import uuid
from functools import cache
from typing import Any

import pytest

from orchestrator.payment_saga import PAYMENT_SAGA, Payment
from orchestrator.refund_saga import REFUND_SAGA, Refund
from orchestrator.reservation_cancellation_saga import (
    RESERVATION_CANCELLATION_SAGA,
    Cancellation,
)
from orchestrator.reservation_saga import RESERVATION_SAGA, Reservation
from sagaengine.definition import SagaDefinition, StepKind
from sagaengine.testing import Exploration, FaultKind, Point, explore

# As the order service answers the payment's start (`OrderOut`), read under the order's lock.
ORDER = {
    "id": 7,
    "user_id": 3,
    "amount": 25_000,
    "status": "PAYMENT_IN_PROGRESS",
    "items": [{"product_id": 1, "quantity": 2, "unit_price": 12_500}],
}
# As the concert service answers a hold (`_reservation_json`).
HOLD = {
    "reservation_id": 11,
    "concert_id": 1,
    "seat_id": 2,
    "user_id": 3,
    "price": 90_000,
    "status": "HELD",
    "expires_at": "2030-01-01T00:10:00+00:00",
}
PAID_BY = str(uuid.UUID(int=1))  # the saga that paid: the refunds name its keys
RESERVED_BY = str(uuid.UUID(int=2))

SAGAS: dict[str, tuple[SagaDefinition[Any], Any, dict[str, Any]]] = {
    "payment": (PAYMENT_SAGA, Payment(order_id=7), {"start_order_payment": ORDER}),
    "reservation": (
        RESERVATION_SAGA,
        Reservation(concert_id=1, seat_id=2, user_id=3),
        {"hold_seat": HOLD},
    ),
    "refund": (
        REFUND_SAGA,
        Refund(
            order_id=7,
            paying_saga_id=PAID_BY,
            user_id=3,
            amount=25_000,
            items=ORDER["items"],
        ),
        {"start_order_refund": {**ORDER, "status": "REFUND_IN_PROGRESS"}},
    ),
    "reservation_cancellation": (
        RESERVATION_CANCELLATION_SAGA,
        Cancellation(
            reservation_saga_id=RESERVED_BY,
            reservation_id=11,
            concert_id=1,
            seat_id=2,
            user_id=3,
            amount=90_000,
            paying_saga_id=RESERVED_BY,
        ),
        {"start_cancellation": {**HOLD, "status": "CANCELLING"}},
    ),
}


@cache
def _explored(name: str) -> Exploration:
    definition, data, answers = SAGAS[name]
    return explore(definition, data, answers=answers)


@pytest.mark.parametrize("name", SAGAS)
def test_the_saga_survives_every_failure_point(name: str):
    _explored(name).assert_ok()


@pytest.mark.parametrize("name", SAGAS)
def test_the_exploration_puts_every_fault_at_every_step_and_phase(name: str):
    definition, _, _ = SAGAS[name]
    exploration = _explored(name)

    faults = {
        (r.scenario.fault.step, r.scenario.fault.point, r.scenario.fault.kind)
        for r in exploration.results
        if r.scenario.fault is not None
    }
    calls = set(FaultKind) - {FaultKind.LATE, FaultKind.LATE_THEN_REFUSED}
    expected: set[tuple[str, Point, FaultKind]] = set()
    for step in definition.steps:
        late = set() if step.kind is StepKind.RETRIABLE else set(FaultKind) - calls
        expected |= {(step.name, Point.ACTION, kind) for kind in calls | late}
        if step.compensation is not None:
            expected |= {(step.name, Point.COMPENSATION, kind) for kind in calls}
        if step.kind is StepKind.PIVOT:
            expected |= {(step.name, Point.SETTLE, kind) for kind in calls}
    assert faults == expected
    # Each of these sagas: no fault; the start refused; 7 faults at each of its 4 actions, and
    # 2 late ones at the steps up to the pivot; 7 at each compensation; 7 at the pivot's settle
    # call, its action applied and not.
    compensations = sum(step.compensation is not None for step in definition.steps)
    late = 2 * (compensations + 1)
    assert len(exploration.results) == 1 + 1 + 4 * 7 + late + 7 * compensations + 2 * 7
