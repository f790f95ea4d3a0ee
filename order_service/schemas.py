from pydantic import BaseModel, Field

from common.fields import Id, Money, Quantity
from sagaengine.participant.fields import IdempotencyKeyValue


class OrderItemIn(BaseModel):
    product_id: Id
    quantity: Quantity
    unit_price: Money


class CreateOrder(BaseModel):
    user_id: Id
    items: list[OrderItemIn] = Field(min_length=1, max_length=1000)


class ReleasePayment(BaseModel):
    start_key: IdempotencyKeyValue  # the Idempotency-Key of the start (payment or refund) it undoes


class OrderItemOut(BaseModel):
    product_id: int
    quantity: int
    unit_price: int


class OrderOut(BaseModel):
    id: int
    user_id: int
    amount: int
    status: str
    items: list[OrderItemOut]
