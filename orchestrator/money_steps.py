"""The steps every saga that takes money shares: deduct a balance (compensated by charging it
back, the same operation as a top-up) and approve a payment (compensated by cancelling it, a
refund). A saga definition says only whose money and how much, and what the payment is for."""

from collections.abc import Callable
from typing import Any

from sagaengine.definition import RemoteCall, Step, StepContext

# (user id, amount) of a saga, from its context
Money = Callable[[StepContext], tuple[int, int]]


def deduct_balance_step(money: Money) -> Step:
    def deduct(ctx: StepContext) -> RemoteCall:
        user_id, amount = money(ctx)
        return RemoteCall("user", "POST", f"/users/{user_id}/deductions", {"amount": amount})

    def charge_back(ctx: StepContext) -> RemoteCall:
        user_id, amount = money(ctx)
        body = {"amount": amount, "deduction_key": ctx.action_key}
        return RemoteCall("user", "POST", f"/users/{user_id}/charge-backs", body)

    return Step("deduct_balance", deduct, charge_back)


def approve_payment_step(payment: Callable[[StepContext], dict[str, Any]]) -> Step:
    """`payment` gives the approval's body: what it pays for, the user, the amount."""

    def approve(ctx: StepContext) -> RemoteCall:
        return RemoteCall("payment", "POST", "/payments", payment(ctx))

    def cancel(ctx: StepContext) -> RemoteCall:
        body = {"approval_key": ctx.action_key}
        return RemoteCall("payment", "POST", "/payments/cancellations", body)

    return Step("approve_payment", approve, cancel)
