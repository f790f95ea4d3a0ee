"""A confirmed seat reservation cancelled: the seat free again, the price back.

| # | step                  | service | action                                | compensation      |
|---|-----------------------|---------|---------------------------------------|-------------------|
| 1 | start_cancellation    | concert | CONFIRMED -> CANCELLING (seat kept)   | back to CONFIRMED |
| 2 | refund_payment        | payment | cancel its payment (pivot)            | none: the pivot   |
| 3 | credit_balance        | user    | the price back to the balance         | none: forward     |
| 4 | complete_cancellation | concert | CANCELLING -> CANCELLED, seat free    | none: forward     |

The same shape as the refund saga (orchestrator/refund_saga.py), and the same reuse of the
reservation saga's inverse operations by its keys. The seat stays RESERVED until the money is
back: freed at step 1, a compensation after a refused cancellation could not take it back from
whoever reserved it meanwhile. Its data comes from the reservation saga it cancels.
"""

from typing import Any

from pydantic import BaseModel

from common.errors import DomainError
from orchestrator.participants import CONCERT, PAYMENT, USER
from orchestrator.refund_saga import MoneyBack, credit_balance, refund_payment
from orchestrator.reservation_saga import RESERVATION_SAGA, Reservation
from sagaengine.definition import (
    OutcomeEvent,
    RemoteCall,
    SagaDefinition,
    SagaOutcome,
    SagaStatus,
    StartRules,
    Step,
    StepContext,
    StepKind,
)
from sagaengine.starting import Lookup


class CancelReservation(BaseModel):
    """`POST /reservations/{saga_id}/cancel`: the reservation saga whose seat to give back."""

    reservation_saga_id: str


class Cancellation(MoneyBack):
    reservation_saga_id: str
    reservation_id: int
    concert_id: int
    seat_id: int


Ctx = StepContext[Cancellation]


def _reservation(ctx: Ctx) -> str:
    return f"/reservations/{ctx.data.reservation_id}"


def start_cancellation(ctx: Ctx) -> RemoteCall:
    return CONCERT.post(f"{_reservation(ctx)}/cancel-start")


def release_cancellation(ctx: Ctx) -> RemoteCall:
    return CONCERT.post(f"{_reservation(ctx)}/cancel-release", {"start_key": ctx.action_key})


def complete_cancellation(ctx: Ctx) -> RemoteCall:
    return CONCERT.post(f"{_reservation(ctx)}/cancel-complete")


def keys(data: Cancellation) -> dict[str, Any]:
    return {"concert_id": data.concert_id, "seat_id": data.seat_id, "user_id": data.user_id}


def outcome_event(outcome: SagaOutcome[Cancellation]) -> OutcomeEvent | None:
    """`reservation.cancelled` once the seat is free and the money back, keyed by the seat (so
    it follows the seat's `reservation.confirmed`)."""
    if outcome.status is not SagaStatus.COMPLETED:
        return None
    d = outcome.data
    payload = {
        "saga_id": outcome.saga_id,
        "reservation_id": d.reservation_id,
        "reservation_saga_id": d.reservation_saga_id,
        **keys(d),
        "amount": d.amount,
    }
    return OutcomeEvent(f"seat:{d.seat_id}", "reservation.cancelled", payload)


def not_cancellable(message: str) -> DomainError:
    return DomainError(message, code="reservation_not_cancellable")


async def prepare(request: CancelReservation, lookup: Lookup) -> Cancellation:
    """A COMPLETED reservation's data, from its saga (404 if there is none)."""
    reservation = await lookup.saga(request.reservation_saga_id, RESERVATION_SAGA.name)
    if reservation.status is not SagaStatus.COMPLETED:
        raise not_cancellable(
            f"reservation saga {request.reservation_saga_id} is {reservation.status}, not COMPLETED"
        )
    held: Reservation = lookup.data(reservation)
    assert held.reservation_id is not None and held.price is not None
    return Cancellation(
        reservation_saga_id=str(reservation.id),
        reservation_id=held.reservation_id,
        concert_id=held.concert_id,
        seat_id=held.seat_id,
        user_id=held.user_id,
        amount=held.price,
        # The inverse operations find what they give back by the keys of the saga that paid.
        paying_saga_id=str(reservation.id),
    )


RESERVATION_CANCELLATION_SAGA = SagaDefinition(
    name="reservation_cancellation",
    version=1,
    data=Cancellation,
    participants=(CONCERT, PAYMENT, USER),
    steps=(
        Step("start_cancellation", start_cancellation, release_cancellation),
        Step("refund_payment", refund_payment, kind=StepKind.PIVOT),
        Step("credit_balance", credit_balance, kind=StepKind.RETRIABLE),
        Step("complete_cancellation", complete_cancellation, kind=StepKind.RETRIABLE),
    ),
    start=StartRules(
        request=CancelReservation,
        prepare=prepare,
        # One cancellation per reservation, ever.
        lock_key=lambda data: f"cancel:reservation:{data.reservation_id}",
        refusals=frozenset({"reservation_not_found", "reservation_not_cancellable"}),
        identity=lambda data: {"reservation_saga_id": data.reservation_saga_id},
        busy="cancellation_in_progress",
        done=lambda data: not_cancellable(
            f"reservation saga {data.reservation_saga_id} is cancelled"
        ),
    ),
    keys=keys,
    outcome_event=outcome_event,
)
