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

from pydantic import BaseModel

from common.errors import DomainError
from common.fields import Id
from orchestrator.money_steps import approve_payment_step, deduct_balance_step
from orchestrator.participants import ORDER, PAYMENT, USER
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


class PayOrder(BaseModel):
    """`POST /payments`: the order to pay; the amount and the payer are the order's own."""

    order_id: Id


class Payment(BaseModel):
    order_id: int
    # Read from the order by step 1, under its lock.
    user_id: int | None = None
    amount: int | None = None
    items: list[dict[str, Any]] = []

    def money(self) -> tuple[int, int]:
        assert self.user_id is not None and self.amount is not None, "step 1 reads them"
        return self.user_id, self.amount


Ctx = StepContext[Payment]


def start_order_payment(ctx: Ctx) -> RemoteCall:
    return ORDER.post(f"/orders/{ctx.data.order_id}/payment-start")


def release_order(ctx: Ctx) -> RemoteCall:
    body = {"start_key": ctx.action_key}
    return ORDER.post(f"/orders/{ctx.data.order_id}/payment-release", body)


def learn_order(data: Payment, order: Mapping[str, Any]) -> Payment:
    return data.model_copy(
        update={
            "user_id": order["user_id"],
            "amount": order["amount"],
            "items": order.get("items", []),
        }
    )


def payment_body(data: Payment) -> dict[str, Any]:
    user_id, amount = data.money()
    return {"order_id": data.order_id, "user_id": user_id, "amount": amount}


def complete_order_payment(ctx: Ctx) -> RemoteCall:
    return ORDER.post(f"/orders/{ctx.data.order_id}/payment-complete")


def outcome_event(outcome: SagaOutcome[Payment]) -> OutcomeEvent:
    """`order.paid` or `order.payment_failed`, with the order as step 1 read it under its lock
    (if step 1 never went through, the user and the amount are not known: null)."""
    data = outcome.data
    payload = {
        "saga_id": outcome.saga_id,
        "order_id": data.order_id,
        "user_id": data.user_id,
        "amount": data.amount,
        "items": data.items,
    }
    if outcome.status is SagaStatus.COMPLETED:
        return OutcomeEvent(f"order:{data.order_id}", "order.paid", payload)
    reason = dict(outcome.error) if outcome.error else None
    return OutcomeEvent(
        f"order:{data.order_id}", "order.payment_failed", {**payload, "reason": reason}
    )


def already_paid(data: Payment) -> DomainError:
    return DomainError(f"order {data.order_id} is already paid", code="order_not_payable")


PAYMENT_SAGA = SagaDefinition(
    name="payment",
    version=1,
    data=Payment,
    participants=(ORDER, USER, PAYMENT),
    steps=(
        Step("start_order_payment", start_order_payment, release_order, learn=learn_order),
        deduct_balance_step(Payment.money),
        approve_payment_step(payment_body),
        Step("complete_order_payment", complete_order_payment, kind=StepKind.PIVOT),
    ),
    start=StartRules(
        request=PayOrder,
        lock_key=lambda data: f"order:{data.order_id}",
        # Step 1 is the start's check: no such order, or one that cannot be paid now.
        refusals=frozenset({"order_not_found", "order_not_payable"}),
        busy="payment_in_progress",
        done=already_paid,
    ),
    keys=lambda data: {"order_id": data.order_id, "user_id": data.user_id},
    outcome_event=outcome_event,
)
