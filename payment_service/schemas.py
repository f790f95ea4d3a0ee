from pydantic import BaseModel

from common.fields import Id, IdempotencyKeyValue, Money


class ApprovePayment(BaseModel):
    order_id: Id
    user_id: Id
    amount: Money


class CancelPayment(BaseModel):
    approval_key: IdempotencyKeyValue  # the Idempotency-Key of the approval it refunds


class PaymentOut(BaseModel):
    id: int
    order_id: int
    user_id: int
    amount: int
    status: str
