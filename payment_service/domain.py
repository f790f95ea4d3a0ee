"""Payments. Standard library only."""

from dataclasses import dataclass
from enum import StrEnum

from common.errors import DomainError


class PaymentStatus(StrEnum):
    APPROVED = "APPROVED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class PaymentView:
    id: int
    order_id: int | None
    reservation_id: int | None
    user_id: int
    amount: int
    status: PaymentStatus


class PaymentAlreadyApproved(DomainError):
    code = "payment_already_approved"

    def __init__(self, what: str):
        super().__init__(f"{what} already has an approved payment")


class PaymentNotRefundable(DomainError):
    code = "payment_not_refundable"
