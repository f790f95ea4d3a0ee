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

from collections.abc import Mapping
from typing import Any

from orchestrator.refund_saga import credit_balance, refund_payment, settle_refund
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


def _reservation(ctx: StepContext) -> str:
    return f"/reservations/{ctx.payload['reservation_id']}"


def start_cancellation(ctx: StepContext) -> RemoteCall:
    return RemoteCall(CONCERT, "POST", f"{_reservation(ctx)}/cancel-start")


def release_cancellation(ctx: StepContext) -> RemoteCall:
    return RemoteCall(
        CONCERT, "POST", f"{_reservation(ctx)}/cancel-release", {"start_key": ctx.action_key}
    )


def complete_cancellation(ctx: StepContext) -> RemoteCall:
    return RemoteCall(CONCERT, "POST", f"{_reservation(ctx)}/cancel-complete")


def describe(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: payload.get(k) for k in ("concert_id", "seat_id", "user_id")}


def outcome_event(outcome: SagaOutcome) -> OutcomeEvent | None:
    """`reservation.cancelled` once the seat is free and the money back, keyed by the seat (so
    it follows the seat's `reservation.confirmed`)."""
    if outcome.status is not SagaStatus.COMPLETED:
        return None
    p = outcome.payload
    payload = {
        "saga_id": outcome.saga_id,
        "reservation_id": p["reservation_id"],
        "reservation_saga_id": p["reservation_saga_id"],
        **describe(p),
        "amount": p["amount"],
    }
    return OutcomeEvent(f"seat:{p['seat_id']}", "reservation.cancelled", payload)


RESERVATION_CANCELLATION_SAGA = SagaDefinition(
    name="reservation_cancellation",
    version=1,
    steps=(
        Step("start_cancellation", start_cancellation, release_cancellation),
        Step("refund_payment", refund_payment, settle=settle_refund, kind=StepKind.PIVOT),
        Step("credit_balance", credit_balance, kind=StepKind.RETRIABLE),
        Step("complete_cancellation", complete_cancellation, kind=StepKind.RETRIABLE),
    ),
    describe=describe,
    outcome_event=outcome_event,
    start_refusals=frozenset({"reservation_not_found", "reservation_not_cancellable"}),
)
