"""Orders and their status machine. Standard library only.

The status is the sagas' semantic lock: PAYMENT_IN_PROGRESS (a payment saga) and
REFUND_IN_PROGRESS (a refund saga) tell every other actor that a saga owns this order, so nobody
else pays, cancels or refunds it until the saga moves it on.
"""

from dataclasses import dataclass
from enum import Enum, StrEnum

from common.errors import DomainError, NotFound


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    PAYMENT_IN_PROGRESS = "PAYMENT_IN_PROGRESS"
    PAID = "PAID"
    CANCELLED = "CANCELLED"
    REFUND_IN_PROGRESS = "REFUND_IN_PROGRESS"
    REFUNDED = "REFUNDED"


class OrderMove(Enum):
    """Every legal move of an order's status, and the refusal's code when the order is not where
    the move starts (the compare-and-set failed): this table is the order's status machine."""

    CANCEL = (OrderStatus.PENDING, OrderStatus.CANCELLED, "order_not_cancellable")
    START_PAYMENT = (OrderStatus.PENDING, OrderStatus.PAYMENT_IN_PROGRESS, "order_not_payable")
    COMPLETE_PAYMENT = (OrderStatus.PAYMENT_IN_PROGRESS, OrderStatus.PAID, "order_not_in_payment")
    RELEASE_PAYMENT = (OrderStatus.PAYMENT_IN_PROGRESS, OrderStatus.PENDING, "order_not_in_payment")
    START_REFUND = (OrderStatus.PAID, OrderStatus.REFUND_IN_PROGRESS, "order_not_refundable")
    COMPLETE_REFUND = (OrderStatus.REFUND_IN_PROGRESS, OrderStatus.REFUNDED, "order_not_in_refund")
    RELEASE_REFUND = (OrderStatus.REFUND_IN_PROGRESS, OrderStatus.PAID, "order_not_in_refund")

    def __init__(self, source: OrderStatus, target: OrderStatus, refusal: str):
        self.source = source
        self.target = target
        self.refusal = refusal


@dataclass(frozen=True)
class OrderLine:
    product_id: int
    quantity: int
    unit_price: int


@dataclass(frozen=True)
class OrderView:
    id: int
    user_id: int
    amount: int
    status: OrderStatus
    items: list[OrderLine]


def order_amount(lines: list[OrderLine], limit: int) -> int:
    amount = sum(line.quantity * line.unit_price for line in lines)
    if amount > limit:
        raise AmountTooLarge(f"the order amount {amount} exceeds the largest storable amount")
    return amount


class OrderNotFound(NotFound):
    code = "order_not_found"

    def __init__(self, order_id: int):
        super().__init__(f"order {order_id} does not exist")


class IllegalTransition(DomainError):
    """The order is not in the status the move starts from (the compare-and-set failed)."""

    def __init__(self, order_id: int, current: OrderStatus, wanted: OrderStatus, code: str):
        super().__init__(f"order {order_id} is {current}, it cannot become {wanted}", code=code)
        self.current = current


class AmountTooLarge(DomainError):
    status_code = 422
    code = "amount_too_large"
