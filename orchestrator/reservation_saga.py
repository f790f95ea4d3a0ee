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

from orchestrator.money_steps import approve_payment_step, deduct_balance_step
from sagaengine.definition import (
    OutcomeEvent,
    RemoteCall,
    SagaDefinition,
    SagaOutcome,
    SagaStatus,
    Step,
    StepContext,
    StepKind,
)

CONCERT = "concert"


def _hold(ctx: StepContext) -> Mapping[str, Any]:
    return ctx.results["hold_seat"]


def hold_seat(ctx: StepContext) -> RemoteCall:
    p = ctx.payload
    return RemoteCall(
        CONCERT,
        "POST",
        f"/concerts/{p['concert_id']}/seats/{p['seat_id']}/holds",
        {"user_id": p["user_id"]},
    )


def release_hold(ctx: StepContext) -> RemoteCall:
    return RemoteCall(CONCERT, "POST", "/holds/release", {"hold_key": ctx.action_key})


def _money(ctx: StepContext) -> tuple[int, int]:
    hold = _hold(ctx)
    return hold["user_id"], hold["price"]


def _payment(ctx: StepContext) -> dict[str, Any]:
    hold = _hold(ctx)
    return {
        "reservation_id": hold["reservation_id"],
        "user_id": hold["user_id"],
        "amount": hold["price"],
    }


def confirm_reservation(ctx: StepContext) -> RemoteCall:
    return RemoteCall(CONCERT, "POST", f"/reservations/{_hold(ctx)['reservation_id']}/confirm")


def settle_confirmation(ctx: StepContext) -> RemoteCall:
    return RemoteCall(CONCERT, "POST", "/_idempotency/settle", {"key": ctx.action_key})


def describe(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: payload[k] for k in ("concert_id", "seat_id", "user_id")}


def outcome_event(outcome: SagaOutcome) -> OutcomeEvent:
    """`reservation.confirmed` or `reservation.failed`, keyed by the seat."""
    hold = outcome.results.get("hold_seat") or {}
    payload = {
        "saga_id": outcome.saga_id,
        **describe(outcome.payload),
        "reservation_id": hold.get("reservation_id"),
        "amount": hold.get("price", outcome.payload.get("price")),
    }
    aggregate = f"seat:{outcome.payload['seat_id']}"
    if outcome.status is SagaStatus.COMPLETED:
        return OutcomeEvent(aggregate, "reservation.confirmed", payload)
    reason = dict(outcome.error) if outcome.error else None
    return OutcomeEvent(aggregate, "reservation.failed", {**payload, "reason": reason})


RESERVATION_SAGA = SagaDefinition(
    name="reservation",
    version=1,
    steps=(
        Step("hold_seat", hold_seat, release_hold),
        deduct_balance_step(_money),
        approve_payment_step(_payment),
        Step(
            "confirm_reservation",
            confirm_reservation,
            settle=settle_confirmation,
            kind=StepKind.PIVOT,
        ),
    ),
    describe=describe,
    outcome_event=outcome_event,
    # Step 1 is the start's check: no such concert or seat, or a seat another holds or has.
    start_refusals=frozenset({"concert_not_found", "seat_not_found", "seat_taken"}),
)
