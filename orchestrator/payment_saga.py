"""The payment saga (ARCHITECTURE.md): lock the order, deduct the balance, approve the payment,
mark the order PAID (the pivot). A failure runs the compensations of the earlier steps in reverse.

| # | step                   | service | action            | compensation              |
|---|------------------------|---------|-------------------|---------------------------|
| 1 | start_order_payment    | order   | PENDING -> IN_PAY | IN_PAY -> PENDING         |
| 2 | deduct_balance         | user    | balance -= amount | charge the amount back    |
| 3 | approve_payment        | payment | approve a payment | cancel it (a refund)      |
| 4 | complete_order_payment | order   | IN_PAY -> PAID    | none: the pivot           |

IN_PAY stands for PAYMENT_IN_PROGRESS. The amount and the user are read from the order by step 1,
under the order's semantic lock, not taken from the caller: later steps reuse that reread value.
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

ORDER = "order"


def _order(ctx: StepContext) -> Mapping[str, Any]:
    return ctx.results["start_order_payment"]


def start_order_payment(ctx: StepContext) -> RemoteCall:
    return RemoteCall(ORDER, "POST", f"/orders/{ctx.payload['order_id']}/payment-start")


def release_order(ctx: StepContext) -> RemoteCall:
    return RemoteCall(
        ORDER,
        "POST",
        f"/orders/{ctx.payload['order_id']}/payment-release",
        {"start_key": ctx.action_key},
    )


def _money(ctx: StepContext) -> tuple[int, int]:
    order = _order(ctx)
    return order["user_id"], order["amount"]


def _payment(ctx: StepContext) -> dict[str, Any]:
    order = _order(ctx)
    return {"order_id": order["id"], "user_id": order["user_id"], "amount": order["amount"]}


def complete_order_payment(ctx: StepContext) -> RemoteCall:
    return RemoteCall(ORDER, "POST", f"/orders/{ctx.payload['order_id']}/payment-complete")


def settle_order_completion(ctx: StepContext) -> RemoteCall:
    return RemoteCall(ORDER, "POST", "/_idempotency/settle", {"key": ctx.action_key})


def describe(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"order_id": payload["order_id"]}


def outcome_event(outcome: SagaOutcome) -> OutcomeEvent:
    """`order.paid` or `order.payment_failed`, with the order as step 1 read it under its lock
    (if step 1 never went through, the user and the amount are not known: null)."""
    order = outcome.results.get("start_order_payment") or {}
    payload = {
        "saga_id": outcome.saga_id,
        "order_id": outcome.payload["order_id"],
        "user_id": order.get("user_id"),
        "amount": order.get("amount"),
        "items": order.get("items", []),
    }
    if outcome.status is SagaStatus.COMPLETED:
        return OutcomeEvent(f"order:{payload['order_id']}", "order.paid", payload)
    reason = dict(outcome.error) if outcome.error else None
    return OutcomeEvent(
        f"order:{payload['order_id']}", "order.payment_failed", {**payload, "reason": reason}
    )


PAYMENT_SAGA = SagaDefinition(
    name="payment",
    version=1,
    steps=(
        Step("start_order_payment", start_order_payment, release_order),
        deduct_balance_step(_money),
        approve_payment_step(_payment),
        Step(
            "complete_order_payment",
            complete_order_payment,
            settle=settle_order_completion,
            kind=StepKind.PIVOT,
        ),
    ),
    describe=describe,
    outcome_event=outcome_event,
    # Step 1 is the start's check: no such order, or one that cannot be paid now.
    start_refusals=frozenset({"order_not_found", "order_not_payable"}),
)
