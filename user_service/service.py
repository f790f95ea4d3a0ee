"""Use cases of the user service: each one local transaction, idempotent by key where remote
callers retry.

Balance updates are single conditional UPDATE statements (`balance = balance - :amount WHERE
balance >= :amount`): commutative and atomic, so concurrent sagas never lose an update and a
balance never goes negative, whatever the interleaving.

A charge-back must never be refused (a compensation that fails leaves a saga stuck), so it must
never overflow the balance: every deduction moves its amount from `balance` to `reversible`, a
charge-back moves it back, and a top-up is refused if `balance + reversible` would pass the
largest storable amount. The sum of the two only grows by top-ups, so every charge-back fits.
"""

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from common.db import reading
from common.fields import INT64_MAX
from sagaengine.participant import IdempotencyStore, Outcome, StoredResponse
from user_service.domain import (
    BalanceOverflow,
    ChargeBackMismatch,
    InsufficientBalance,
    LedgerReason,
    UserNotFound,
    UserView,
)
from user_service.models import IdempotencyRecord, LedgerEntry, User

idempotency = IdempotencyStore(IdempotencyRecord)


def _view(user: User) -> UserView:
    return UserView(id=user.id, name=user.name, balance=user.balance)


def _record(
    session: Session, user_id: int, delta: int, balance: int, reason: LedgerReason, key: str | None
) -> None:
    session.add(
        LedgerEntry(
            user_id=user_id, delta=delta, balance_after=balance, reason=reason, idempotency_key=key
        )
    )


def create_user(session: Session, name: str, balance: int) -> UserView:
    with session.begin():
        user = User(name=name, balance=balance)
        session.add(user)
        session.flush()
        _record(session, user.id, balance, balance, LedgerReason.OPENING, None)
        return _view(user)


def get_user(session: Session, user_id: int) -> UserView:
    with reading(session):
        user = session.get(User, user_id)
        if user is None:
            raise UserNotFound(user_id)
        return _view(user)


def _deduct(session: Session, user_id: int, amount: int, key: str) -> dict[str, Any]:
    balance = session.execute(
        update(User)
        .where(User.id == user_id, User.balance >= amount)
        .values(balance=User.balance - amount, reversible=User.reversible + amount)
        .returning(User.balance)
    ).scalar_one_or_none()
    if balance is None:
        if session.get(User, user_id) is None:
            raise UserNotFound(user_id)
        raise InsufficientBalance(user_id, amount)
    _record(session, user_id, -amount, balance, LedgerReason.DEDUCTION, key)
    return {"user_id": user_id, "amount": amount, "balance": balance}


def _charge(session: Session, user_id: int, amount: int, key: str | None) -> UserView:
    """A top-up: refused if it would leave no room for the deductions that may come back."""
    row = session.execute(
        update(User)
        .where(User.id == user_id, User.balance + User.reversible <= INT64_MAX - amount)
        .values(balance=User.balance + amount)
        .returning(User.id, User.name, User.balance)
    ).one_or_none()
    if row is None:
        if session.get(User, user_id) is None:
            raise UserNotFound(user_id)
        raise BalanceOverflow(user_id)
    _record(session, user_id, amount, row.balance, LedgerReason.CHARGE, key)
    return UserView(id=row.id, name=row.name, balance=row.balance)


def _give_back(session: Session, user_id: int, amount: int, key: str) -> int:
    """A deduction given back: its room was kept, so this always fits. Returns the balance."""
    balance = session.execute(
        update(User)
        .where(User.id == user_id)
        .values(balance=User.balance + amount, reversible=User.reversible - amount)
        .returning(User.balance)
    ).scalar_one()
    _record(session, user_id, amount, balance, LedgerReason.CHARGE, key)
    return balance


def deduct_balance(session: Session, user_id: int, amount: int, key: str) -> StoredResponse:
    """Saga action: take `amount` from the balance, or refuse if it is short."""
    return idempotency.execute(
        session,
        key,
        "deduct",
        {"user_id": user_id, "amount": amount},
        lambda: (200, _deduct(session, user_id, amount, key)),
    )


def charge_balance(session: Session, user_id: int, amount: int, key: str | None) -> StoredResponse:
    """A point top-up: add `amount` to the balance."""

    def apply() -> tuple[int, dict[str, Any]]:
        return 200, _charge(session, user_id, amount, key).__dict__

    if key is None:
        with session.begin():
            status, body = apply()
        return StoredResponse(status, body, Outcome.APPLIED)
    # A client's key lives in its own namespace: it can never take (or squat) one of the keys
    # the orchestrator derives for its steps.
    return idempotency.execute(
        session, f"client:{key}", "charge", {"user_id": user_id, "amount": amount}, apply
    )


def charge_back(
    session: Session, user_id: int, amount: int, deduction_key: str, key: str
) -> StoredResponse:
    """Saga compensation of a deduction: the same charge as a top-up, applied only if the
    deduction named by `deduction_key` went through and was not charged back already. If it never
    arrived, a tombstone makes sure it never will."""

    def apply() -> tuple[int, dict[str, Any]]:
        deduction = idempotency.reverse_once(session, deduction_key, key, "deduct")
        if deduction is None:
            # Nothing to undo. This must succeed whatever else is true (even for a user that
            # does not exist): a refusal would roll back the tombstone just placed.
            user = session.get(User, user_id)
            balance = user.balance if user is not None else None
            return 200, {"user_id": user_id, "amount": 0, "balance": balance, "reversed": False}
        # .get: a record older than the operation column may be of another kind (no amount).
        deducted = deduction.body.get("amount")
        if deduction.body.get("user_id") != user_id or deducted != amount:
            raise ChargeBackMismatch(  # a caller bug: refuse loudly rather than guess
                f"charge-back of {amount} to user {user_id} does not match deduction "
                f"{deduction_key} of {deducted} from user {deduction.body.get('user_id')}"
            )
        balance = _give_back(session, user_id, amount, key)
        return 200, {"user_id": user_id, "amount": amount, "balance": balance, "reversed": True}

    return idempotency.execute(
        session,
        key,
        "charge_back",
        {"user_id": user_id, "amount": amount, "deduction_key": deduction_key},
        apply,
    )
