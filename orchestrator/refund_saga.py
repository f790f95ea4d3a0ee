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

from typing import Any, TypeVar

from pydantic import BaseModel

from common.errors import DomainError, NotFound
from common.fields import Id
from orchestrator.money_steps import APPROVE_PAYMENT, DEDUCT_BALANCE
from orchestrator.participants import ORDER, PAYMENT, USER
from orchestrator.payment_saga import PAYMENT_SAGA, Payment
from sagaengine.definition import (
    OutcomeEvent,
    Phase,
    RemoteCall,
    SagaDefinition,
    SagaOutcome,
    SagaStatus,
    StartRules,
    Step,
    StepContext,
    StepKind,
    step_key,
)
from sagaengine.http import BusinessRefusal, TransientFault
from sagaengine.starting import DependencyUnavailable, Lookup


class RefundOrder(BaseModel):
    """`POST /refunds`: the paid order to refund."""

    order_id: Id


class MoneyBack(BaseModel):
    """What every saga that gives money back knows, from the saga that paid (a payment or a
    reservation saga): whose money, how much, and that saga's id (its keys name the money)."""

    paying_saga_id: str
    user_id: int
    amount: int


M = TypeVar("M", bound=MoneyBack)


class Refund(MoneyBack):
    order_id: int
    items: list[dict[str, Any]] = []


def paid_by(data: MoneyBack, step_name: str) -> str:
    """The key of an action of the saga that paid (its money steps share their names): what
    the inverse operation names to find what it gives back."""
    return step_key(data.paying_saga_id, step_name, Phase.ACTION)


def refund_payment(ctx: StepContext[M]) -> RemoteCall:
    return PAYMENT.post("/payments/refunds", {"approval_key": paid_by(ctx.data, APPROVE_PAYMENT)})


def credit_balance(ctx: StepContext[M]) -> RemoteCall:
    d = ctx.data
    body = {"amount": d.amount, "deduction_key": paid_by(d, DEDUCT_BALANCE)}
    return USER.post(f"/users/{d.user_id}/charge-backs", body)


Ctx = StepContext[Refund]


def start_order_refund(ctx: Ctx) -> RemoteCall:
    return ORDER.post(f"/orders/{ctx.data.order_id}/refund-start")


def release_order_refund(ctx: Ctx) -> RemoteCall:
    body = {"start_key": ctx.action_key}
    return ORDER.post(f"/orders/{ctx.data.order_id}/refund-release", body)


def complete_order_refund(ctx: Ctx) -> RemoteCall:
    return ORDER.post(f"/orders/{ctx.data.order_id}/refund-complete")


def keys(data: Refund) -> dict[str, Any]:
    return {"order_id": data.order_id, "user_id": data.user_id}


def outcome_event(outcome: SagaOutcome[Refund]) -> OutcomeEvent | None:
    """`order.refunded` once the money is back; a refund that was undone tells nobody."""
    if outcome.status is not SagaStatus.COMPLETED:
        return None
    d = outcome.data
    payload = {
        "saga_id": outcome.saga_id,
        "order_id": d.order_id,
        "user_id": d.user_id,
        "amount": d.amount,
        "items": d.items,
        "payment_saga_id": d.paying_saga_id,
    }
    return OutcomeEvent(f"order:{d.order_id}", "order.refunded", payload)


def not_refundable(message: str) -> DomainError:
    return DomainError(message, code="order_not_refundable")


async def prepare(request: RefundOrder, lookup: Lookup) -> Refund:
    """The refund's data comes from the saga that paid the order; an order with no completed
    payment saga here is refused: it does not exist (404), or is not paid, or (paid long ago)
    the saga that paid it was purged (409)."""
    order_id = request.order_id
    payment = await lookup.live_saga(f"order:{order_id}")
    if payment is None or payment.type != PAYMENT_SAGA.name:
        raise await _why_not_refundable(lookup, order_id)
    if payment.status is not SagaStatus.COMPLETED:
        raise not_refundable(f"order {order_id} is being paid, not paid (saga {payment.id})")
    paid: Payment = lookup.data(payment)
    user_id, amount = paid.money()
    return Refund(
        order_id=order_id,
        paying_saga_id=str(payment.id),
        user_id=user_id,
        amount=amount,
        items=paid.items,
    )


async def _why_not_refundable(lookup: Lookup, order_id: int) -> DomainError:
    try:
        order = await lookup.call(ORDER.get(f"/orders/{order_id}"))
    except BusinessRefusal as refusal:
        if refusal.status_code == 404:
            return NotFound(f"order {order_id} does not exist", code="order_not_found")
        return DependencyUnavailable(f"the order service refused a read: {refusal.code}")
    except TransientFault as fault:
        return DependencyUnavailable(f"the order service is unavailable: {fault.message}")
    if order["status"] != "PAID":
        return not_refundable(f"order {order_id} is {order['status']}, not PAID")
    return not_refundable(
        f"order {order_id} was paid longer ago than sagas are kept (purged): refund it by hand"
    )


REFUND_SAGA = SagaDefinition(
    name="refund",
    version=1,
    data=Refund,
    participants=(ORDER, PAYMENT, USER),
    steps=(
        Step("start_order_refund", start_order_refund, release_order_refund),
        Step("refund_payment", refund_payment, kind=StepKind.PIVOT),
        Step("credit_balance", credit_balance, kind=StepKind.RETRIABLE),
        Step("complete_order_refund", complete_order_refund, kind=StepKind.RETRIABLE),
    ),
    start=StartRules(
        request=RefundOrder,
        prepare=prepare,
        # One refund per order, ever.
        lock_key=lambda data: f"refund:order:{data.order_id}",
        # Step 1 is the start's check: no such order, or one that is not PAID (now).
        refusals=frozenset({"order_not_found", "order_not_refundable"}),
        identity=lambda data: {"order_id": data.order_id},
        busy="refund_in_progress",
        done=lambda data: not_refundable(f"order {data.order_id} is refunded already"),
    ),
    keys=keys,
    outcome_event=outcome_event,
)
