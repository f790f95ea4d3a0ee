"""The concert seat reservation saga, on the same engine as the payment saga.

| # | step                 | service | action                       | compensation            |
|---|----------------------|---------|------------------------------|-------------------------|
| 1 | hold_seat            | concert | hold the seat (with expiry)  | release the hold        |
| 2 | deduct_balance       | user    | balance -= price             | charge the price back   |
| 3 | approve_payment      | payment | approve a payment            | cancel it (a refund)    |
| 4 | confirm_reservation  | concert | HELD -> CONFIRMED (pivot)    | none: the pivot         |

The price comes from the hold (step 1), as the concert service read it.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from common.errors import DomainError
from common.fields import Id
from orchestrator.money_steps import approve_payment_step, deduct_balance_step
from orchestrator.participants import CONCERT, PAYMENT, USER
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


class ReserveSeat(BaseModel):
    """`POST /reservations`: a seat of a concert, for a user."""

    concert_id: Id
    seat_id: Id
    user_id: Id


class Reservation(BaseModel):
    concert_id: int
    seat_id: int
    user_id: int
    # From the hold (step 1), as the concert service read it.
    reservation_id: int | None = None
    price: int | None = None

    def money(self) -> tuple[int, int]:
        assert self.price is not None, "step 1 reads it"
        return self.user_id, self.price


Ctx = StepContext[Reservation]


def hold_seat(ctx: Ctx) -> RemoteCall:
    d = ctx.data
    return CONCERT.post(f"/concerts/{d.concert_id}/seats/{d.seat_id}/holds", {"user_id": d.user_id})


def release_hold(ctx: Ctx) -> RemoteCall:
    return CONCERT.post("/holds/release", {"hold_key": ctx.action_key})


def learn_hold(data: Reservation, hold: Mapping[str, Any]) -> Reservation:
    update = {"reservation_id": hold["reservation_id"], "price": hold["price"]}
    return data.model_copy(update=update)


def payment_body(data: Reservation) -> dict[str, Any]:
    user_id, amount = data.money()
    return {"reservation_id": data.reservation_id, "user_id": user_id, "amount": amount}


def confirm_reservation(ctx: Ctx) -> RemoteCall:
    return CONCERT.post(f"/reservations/{ctx.data.reservation_id}/confirm")


def keys(data: Reservation) -> dict[str, Any]:
    return {"concert_id": data.concert_id, "seat_id": data.seat_id, "user_id": data.user_id}


def outcome_event(outcome: SagaOutcome[Reservation]) -> OutcomeEvent:
    """`reservation.confirmed` or `reservation.failed`, keyed by the seat."""
    data = outcome.data
    payload = {
        "saga_id": outcome.saga_id,
        **keys(data),
        "reservation_id": data.reservation_id,
        "amount": data.price,
    }
    aggregate = f"seat:{data.seat_id}"
    if outcome.status is SagaStatus.COMPLETED:
        return OutcomeEvent(aggregate, "reservation.confirmed", payload)
    reason = dict(outcome.error) if outcome.error else None
    return OutcomeEvent(aggregate, "reservation.failed", {**payload, "reason": reason})


def already_reserved(data: Reservation) -> DomainError:
    return DomainError(
        f"user {data.user_id} already reserved seat {data.seat_id}", code="seat_taken"
    )


RESERVATION_SAGA = SagaDefinition(
    name="reservation",
    version=1,
    data=Reservation,
    participants=(CONCERT, USER, PAYMENT),
    steps=(
        Step("hold_seat", hold_seat, release_hold, learn=learn_hold),
        deduct_balance_step(Reservation.money),
        approve_payment_step(payment_body),
        Step("confirm_reservation", confirm_reservation, kind=StepKind.PIVOT),
    ),
    start=StartRules(
        request=ReserveSeat,
        # Each user's attempt at a seat is its own saga: two users racing for one seat are two
        # sagas, and one of them wins the hold.
        lock_key=lambda data: f"seat:{data.seat_id}:user:{data.user_id}",
        # Step 1 is the start's check: no such concert or seat, or a seat another holds or has.
        refusals=frozenset({"concert_not_found", "seat_not_found", "seat_taken"}),
        busy="payment_in_progress",
        done=already_reserved,
    ),
    keys=keys,
    outcome_event=outcome_event,
)
