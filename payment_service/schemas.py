from pydantic import BaseModel, model_validator

from common.fields import Id, Money
from sagaengine.participant.fields import IdempotencyKeyValue


class ApprovePayment(BaseModel):
    """A payment for an order or for a seat reservation: exactly one of the two."""

    order_id: Id | None = None
    reservation_id: Id | None = None
    user_id: Id
    amount: Money

    @model_validator(mode="after")
    def _pays_one_thing(self) -> "ApprovePayment":
        if (self.order_id is None) == (self.reservation_id is None):
            raise ValueError("give exactly one of order_id and reservation_id")
        return self


class CancelPayment(BaseModel):
    approval_key: IdempotencyKeyValue  # the Idempotency-Key of the approval it refunds


class PaymentOut(BaseModel):
    id: int
    order_id: int | None
    reservation_id: int | None
    user_id: int
    amount: int
    status: str
