"""The steps every saga that takes money shares: deduct a balance (compensated by charging it
back, the same operation as a top-up) and approve a payment (compensated by cancelling it, a
refund). A saga definition says only whose money and how much, and what the payment is for."""

from collections.abc import Callable
from typing import Any

from orchestrator.participants import PAYMENT, USER
from sagaengine.definition import D, RemoteCall, Step, StepContext

# Their names are part of the keys the refund sagas name to give the money back (`paid_by`).
DEDUCT_BALANCE = "deduct_balance"
APPROVE_PAYMENT = "approve_payment"


def deduct_balance_step(money: Callable[[D], tuple[int, int]]) -> Step[D]:
    """`money` gives (user id, amount) from the saga's data."""

    def deduct(ctx: StepContext[D]) -> RemoteCall:
        user_id, amount = money(ctx.data)
        return USER.post(f"/users/{user_id}/deductions", {"amount": amount})

    def charge_back(ctx: StepContext[D]) -> RemoteCall:
        user_id, amount = money(ctx.data)
        body = {"amount": amount, "deduction_key": ctx.action_key}
        return USER.post(f"/users/{user_id}/charge-backs", body)

    return Step(DEDUCT_BALANCE, deduct, charge_back)


def approve_payment_step(payment: Callable[[D], dict[str, Any]]) -> Step[D]:
    """`payment` gives the approval's body: what it pays for, the user, the amount."""

    def approve(ctx: StepContext[D]) -> RemoteCall:
        return PAYMENT.post("/payments", payment(ctx.data))

    def cancel(ctx: StepContext[D]) -> RemoteCall:
        return PAYMENT.post("/payments/cancellations", {"approval_key": ctx.action_key})

    return Step(APPROVE_PAYMENT, approve, cancel)
