"""Use cases of the payment service, each one local transaction, idempotent by key."""

from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.db import reading
from payment_service.domain import (
    PaymentAlreadyApproved,
    PaymentNotRefundable,
    PaymentStatus,
    PaymentView,
)
from payment_service.models import IdempotencyRecord, Payment
from sagaengine.participant import IdempotencyStore, NotThatAction, StoredResponse

idempotency = IdempotencyStore(IdempotencyRecord)


def _view(payment: Payment) -> PaymentView:
    return PaymentView(
        id=payment.id,
        order_id=payment.order_id,
        reservation_id=payment.reservation_id,
        user_id=payment.user_id,
        amount=payment.amount,
        status=PaymentStatus(payment.status),
    )


def to_json(view: PaymentView) -> dict[str, Any]:
    return asdict(view)


def list_payments(
    session: Session,
    order_id: int | None,
    reservation_id: int | None = None,
    *,
    after: int | None = None,
    limit: int = 100,
) -> list[PaymentView]:
    with reading(session):
        query = select(Payment).order_by(Payment.id).limit(limit)
        if after is not None:
            query = query.where(Payment.id > after)
        if order_id is not None:
            query = query.where(Payment.order_id == order_id)
        if reservation_id is not None:
            query = query.where(Payment.reservation_id == reservation_id)
        return [_view(p) for p in session.scalars(query)]


def approve_payment(
    session: Session,
    order_id: int | None,
    user_id: int,
    amount: int,
    key: str,
    reservation_id: int | None = None,
) -> StoredResponse:
    """Saga action: record an approved payment of `amount` for the order (or reservation)."""
    what = f"order {order_id}" if order_id is not None else f"reservation {reservation_id}"

    def apply() -> tuple[int, dict[str, Any]]:
        payment = Payment(
            order_id=order_id,
            reservation_id=reservation_id,
            user_id=user_id,
            amount=amount,
            status=PaymentStatus.APPROVED,
            approval_key=key,
        )
        session.add(payment)
        try:
            session.flush()
        except IntegrityError as exc:
            raise PaymentAlreadyApproved(what) from exc
        return 201, to_json(_view(payment))

    return idempotency.execute(
        session,
        key,
        "approve_payment",
        {
            "order_id": order_id,
            "reservation_id": reservation_id,
            "user_id": user_id,
            "amount": amount,
        },
        apply,
    )


def _cancel_approved(session: Session, approval_key: str) -> dict[str, Any]:
    """Cancel the payment an approval created, as JSON. An approval's record without its
    payment names something else (a record older than the operation column, of another kind):
    refused, so that nothing changes, never a 500."""
    payment = session.execute(
        update(Payment)
        .where(Payment.approval_key == approval_key)
        .values(status=PaymentStatus.CANCELLED, cancelled_at=func.now())
        .returning(Payment)
    ).scalar_one_or_none()
    if payment is None:
        raise NotThatAction(f"key {approval_key!r} approved no payment")
    return to_json(_view(payment))


def cancel_payment(session: Session, approval_key: str, key: str) -> StoredResponse:
    """Saga compensation of an approval (a refund): cancel the payment that approval created.
    If the approval never arrived, a tombstone makes sure it never will."""

    def apply() -> tuple[int, dict[str, Any]]:
        approval = idempotency.reverse_once(session, approval_key, key, "approve_payment")
        if approval is None:
            return 200, {"payment": None, "cancelled": False}
        return 200, {"payment": _cancel_approved(session, approval_key), "cancelled": True}

    return idempotency.execute(
        session, key, "cancel_payment", {"approval_key": approval_key}, apply
    )


def refund_payment(session: Session, approval_key: str, key: str) -> StoredResponse:
    """A refund (the refund saga's pivot): cancel the payment that approval created, as its
    compensation does, but refuse when there is nothing to cancel (an approval that never went
    through, or a payment cancelled already): a refund must take back a payment, or say no."""

    def apply() -> tuple[int, dict[str, Any]]:
        approval = idempotency.reverse_once(session, approval_key, key, "approve_payment")
        if approval is None:
            raise PaymentNotRefundable(f"no approved payment of approval {approval_key}")
        return 200, {"payment": _cancel_approved(session, approval_key), "cancelled": True}

    return idempotency.execute(
        session, key, "refund_payment", {"approval_key": approval_key}, apply
    )
