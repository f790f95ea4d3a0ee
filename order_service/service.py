"""Use cases of the order service, each one local transaction.

Every status change is a compare-and-set (`UPDATE ... WHERE status = :from`), so two actors
racing for one order cannot both win: the status is the saga's semantic lock.
"""

from dataclasses import asdict
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from common.db import reading
from common.fields import INT64_MAX
from order_service.domain import (
    IllegalTransition,
    OrderLine,
    OrderMove,
    OrderNotFound,
    OrderStatus,
    OrderView,
    order_amount,
)
from order_service.models import IdempotencyRecord, Order, OrderItem
from sagaengine.participant import IdempotencyStore, NotThatAction, StoredResponse

idempotency = IdempotencyStore(IdempotencyRecord)


def _view(order: Order) -> OrderView:
    return OrderView(
        id=order.id,
        user_id=order.user_id,
        amount=order.amount,
        status=OrderStatus(order.status),
        items=[OrderLine(i.product_id, i.quantity, i.unit_price) for i in order.items],
    )


def to_json(view: OrderView) -> dict[str, Any]:
    return asdict(view)


def create_order(session: Session, user_id: int, lines: list[OrderLine]) -> OrderView:
    amount = order_amount(lines, INT64_MAX)
    with session.begin():
        order = Order(
            user_id=user_id,
            amount=amount,
            status=OrderStatus.PENDING,
            items=[OrderItem(**asdict(line)) for line in lines],
        )
        session.add(order)
        session.flush()
        return _view(order)


def get_order(session: Session, order_id: int) -> OrderView:
    with reading(session):
        order = session.get(Order, order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return _view(order)


def _compare_and_set(session: Session, order_id: int, move: OrderMove) -> OrderView:
    """Make `move`, or refuse with its code if the order is not where it starts: one conditional
    UPDATE, so two racing actors cannot both win."""
    order = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == move.source)
        .values(status=move.target, updated_at=func.now())
        .returning(Order)
    ).scalar_one_or_none()
    if order is None:
        current = session.get(Order, order_id)
        if current is None:
            raise OrderNotFound(order_id)
        raise IllegalTransition(order_id, OrderStatus(current.status), move.target, move.refusal)
    return _view(order)


def cancel_order(session: Session, order_id: int) -> OrderView:
    with session.begin():
        return _compare_and_set(session, order_id, OrderMove.CANCEL)


def start_payment(session: Session, order_id: int, key: str) -> StoredResponse:
    """Saga action: take the order's semantic lock (PENDING -> PAYMENT_IN_PROGRESS)."""
    return _move(session, order_id, key, "start_payment", OrderMove.START_PAYMENT)


def complete_payment(session: Session, order_id: int, key: str) -> StoredResponse:
    """Saga pivot: PAYMENT_IN_PROGRESS -> PAID. Once this commits, the payment has happened."""
    return _move(session, order_id, key, "complete_payment", OrderMove.COMPLETE_PAYMENT)


def release_payment(session: Session, order_id: int, start_key: str, key: str) -> StoredResponse:
    """Saga compensation of `start_payment`: PAYMENT_IN_PROGRESS -> PENDING, only if that start
    went through; if it never arrived, a tombstone makes sure it never will."""
    return _release(
        session,
        order_id,
        start_key,
        key,
        "release_payment",
        "start_payment",
        OrderMove.RELEASE_PAYMENT,
    )


def start_refund(session: Session, order_id: int, key: str) -> StoredResponse:
    """Refund saga action: take the order's semantic lock for a refund (PAID ->
    REFUND_IN_PROGRESS); an order that is not PAID cannot be refunded."""
    return _move(session, order_id, key, "start_refund", OrderMove.START_REFUND)


def complete_refund(session: Session, order_id: int, key: str) -> StoredResponse:
    """Refund saga's last step: REFUND_IN_PROGRESS -> REFUNDED, the money being back."""
    return _move(session, order_id, key, "complete_refund", OrderMove.COMPLETE_REFUND)


def release_refund(session: Session, order_id: int, start_key: str, key: str) -> StoredResponse:
    """Refund saga compensation of `start_refund`: REFUND_IN_PROGRESS -> PAID, only if that
    start went through; if it never arrived, a tombstone makes sure it never will."""
    return _release(
        session,
        order_id,
        start_key,
        key,
        "release_refund",
        "start_refund",
        OrderMove.RELEASE_REFUND,
    )


def _move(
    session: Session, order_id: int, key: str, operation: str, move: OrderMove
) -> StoredResponse:
    """A saga action moving the order's status, once per key."""
    return idempotency.execute(
        session,
        key,
        operation,
        {"order_id": order_id},
        lambda: (200, to_json(_compare_and_set(session, order_id, move))),
    )


def _release(
    session: Session,
    order_id: int,
    start_key: str,
    key: str,
    operation: str,
    start_operation: str,
    move: OrderMove,
) -> StoredResponse:
    """A compensation giving back the semantic lock its start took, only if that start went
    through; if it never arrived, a tombstone makes sure it never will."""

    def apply() -> tuple[int, dict[str, Any]]:
        start = idempotency.reverse_once(session, start_key, key, start_operation)
        if start is not None and start.body.get("id") != order_id:
            raise NotThatAction(
                f"key {start_key!r} started order {start.body.get('id')}, not {order_id}"
            )
        if start is None:
            # Nothing to undo: this must succeed whatever else is true, or the tombstone just
            # placed would be rolled back with the refusal.
            current = session.get(Order, order_id)
            return 200, {"order": to_json(_view(current)) if current else None, "released": False}
        released = _compare_and_set(session, order_id, move)
        return 200, {"order": to_json(released), "released": True}

    return idempotency.execute(
        session, key, operation, {"order_id": order_id, "start_key": start_key}, apply
    )
