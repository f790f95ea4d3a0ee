"""Users and balances. Standard library only."""

from dataclasses import dataclass
from enum import StrEnum

from common.errors import DomainError, NotFound


class LedgerReason(StrEnum):
    OPENING = "OPENING"
    DEDUCTION = "DEDUCTION"
    CHARGE = "CHARGE"  # a top-up, and the compensation of a deduction alike


@dataclass(frozen=True)
class UserView:
    id: int
    name: str
    balance: int


class UserNotFound(NotFound):
    code = "user_not_found"

    def __init__(self, user_id: int):
        super().__init__(f"user {user_id} does not exist")


class InsufficientBalance(DomainError):
    code = "insufficient_balance"

    def __init__(self, user_id: int, amount: int):
        super().__init__(f"user {user_id} cannot pay {amount}: balance too low")


class BalanceOverflow(DomainError):
    status_code = 422
    code = "balance_overflow"

    def __init__(self, user_id: int):
        super().__init__(
            f"the balance of user {user_id} would exceed the largest storable amount, "
            "counting the payments that may still be given back to it"
        )


class ChargeBackMismatch(DomainError):
    code = "charge_back_mismatch"
