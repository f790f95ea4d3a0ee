"""The refund saga (the seed's payment cancellation, "결제 취소"): a paid order's money back.

| # | step                  | service | action                              | compensation        |
|---|-----------------------|---------|-------------------------------------|---------------------|
| 1 | start_order_refund    | order   | PAID -> REFUND_IN_PROGRESS          | back to PAID        |
| 2 | refund_payment        | payment | cancel the order's payment (pivot)  | none: the pivot     |
| 3 | credit_balance        | user    | the amount back to the balance      | none: forward only  |
| 4 | complete_order_refund | order   | REFUND_IN_PROGRESS -> REFUNDED      | none: forward only  |

Steps 2 and 3 are the payment saga's own compensations, reused as the seed asks ("반대로 동작하는
기존의 기능을 활용"): the payment is cancelled by the key of the approval that created it, and the
amount comes back by the key of the deduction that took it, so each is given back at most once,
whoever asks. The cancellation is the pivot: a payment provider's cancellation cannot be taken
back, so nothing before it may still fail in a way that needs it undone, and nothing after it
may be undone: the credit and the order's last move only go forward (retried, or an operator's
NEEDS_ATTENTION). The money is credited only once the payment is cancelled: never both a
payment standing and its money back.

The refund's data comes from the payment saga that paid the order (its id, the user, the
amount), read from the orchestrator's own store when the refund starts.
"""

from collections.abc import Mapping
from typing import Any

from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.definition import (
    OutcomeEvent,
    Phase,
    RemoteCall,
    SagaDefinition,
    SagaOutcome,
    SagaStatus,
    Step,
    StepContext,
    StepKind,
    idempotency_key,
)

ORDER = "order"


def paid_by(ctx: StepContext, step_name: str) -> str:
    """The key of an action of the saga that paid (the payload's `paying_saga_id`: a payment or
    a reservation saga, whose money steps share their names): what the inverse operation names
    to find what it gives back."""
    step = next(s for s in PAYMENT_SAGA.steps if s.name == step_name)
    return idempotency_key(ctx.payload["paying_saga_id"], step, Phase.ACTION)


def start_order_refund(ctx: StepContext) -> RemoteCall:
    return RemoteCall(ORDER, "POST", f"/orders/{ctx.payload['order_id']}/refund-start")


def release_order_refund(ctx: StepContext) -> RemoteCall:
    return RemoteCall(
        ORDER,
        "POST",
        f"/orders/{ctx.payload['order_id']}/refund-release",
        {"start_key": ctx.action_key},
    )


def refund_payment(ctx: StepContext) -> RemoteCall:
    body = {"approval_key": paid_by(ctx, "approve_payment")}
    return RemoteCall("payment", "POST", "/payments/refunds", body)


def settle_refund(ctx: StepContext) -> RemoteCall:
    return RemoteCall("payment", "POST", "/_idempotency/settle", {"key": ctx.action_key})


def credit_balance(ctx: StepContext) -> RemoteCall:
    p = ctx.payload
    body = {"amount": p["amount"], "deduction_key": paid_by(ctx, "deduct_balance")}
    return RemoteCall("user", "POST", f"/users/{p['user_id']}/charge-backs", body)


def complete_order_refund(ctx: StepContext) -> RemoteCall:
    return RemoteCall(ORDER, "POST", f"/orders/{ctx.payload['order_id']}/refund-complete")


def describe(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"order_id": payload["order_id"], "user_id": payload.get("user_id")}


def outcome_event(outcome: SagaOutcome) -> OutcomeEvent | None:
    """`order.refunded` once the money is back; a refund that was undone tells nobody."""
    if outcome.status is not SagaStatus.COMPLETED:
        return None
    p = outcome.payload
    payload = {
        "saga_id": outcome.saga_id,
        "order_id": p["order_id"],
        "user_id": p["user_id"],
        "amount": p["amount"],
        "items": p.get("items", []),
        "payment_saga_id": p["paying_saga_id"],
    }
    return OutcomeEvent(f"order:{p['order_id']}", "order.refunded", payload)


REFUND_SAGA = SagaDefinition(
    name="refund",
    version=1,
    steps=(
        Step("start_order_refund", start_order_refund, release_order_refund),
        Step("refund_payment", refund_payment, settle=settle_refund, kind=StepKind.PIVOT),
        Step("credit_balance", credit_balance, kind=StepKind.RETRIABLE),
        Step("complete_order_refund", complete_order_refund, kind=StepKind.RETRIABLE),
    ),
    describe=describe,
    outcome_event=outcome_event,
    # Step 1 is the start's check: no such order, or one that is not PAID (now).
    start_refusals=frozenset({"order_not_found", "order_not_refundable"}),
)
