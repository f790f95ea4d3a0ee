"""Use cases of the concert service, each one local transaction, idempotent by key."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.db import reading
from concert_service.domain import (
    ACTIVE,
    ConcertNotFound,
    HoldLost,
    ReservationNotCancellable,
    ReservationNotFound,
    ReservationStatus,
    SeatNotFound,
    SeatTaken,
    SeatView,
    seat_status,
)
from concert_service.models import Concert, IdempotencyRecord, Reservation, Seat
from sagaengine.participant import IdempotencyStore, NotThatAction, StoredResponse

idempotency = IdempotencyStore(IdempotencyRecord)


def create_concert(
    session: Session, title: str, seats: int, price: int
) -> tuple[Concert, list[SeatView]]:
    with session.begin():
        concert = Concert(title=title, price=price)
        session.add(concert)
        session.flush()
        session.add_all(Seat(concert_id=concert.id, number=n) for n in range(1, seats + 1))
    return concert, list_seats(session, concert.id)


def get_concert(session: Session, concert_id: int) -> Concert:
    with reading(session):
        concert = session.get(Concert, concert_id)
        if concert is None:
            raise ConcertNotFound(f"concert {concert_id} does not exist")
        return concert


def list_seats(session: Session, concert_id: int) -> list[SeatView]:
    with reading(session):
        get_concert(session, concert_id)
        rows = session.execute(
            select(Seat.id, Seat.number, Reservation.status, Reservation.expires_at)
            .outerjoin(
                Reservation,
                (Reservation.seat_id == Seat.id) & Reservation.status.in_(ACTIVE),
            )
            .where(Seat.concert_id == concert_id)
            .order_by(Seat.number)
        ).all()
        now = datetime.now(UTC)
        return [
            SeatView(
                seat_id, number, seat_status(ReservationStatus(s) if s else None, expires, now)
            )
            for seat_id, number, s, expires in rows
        ]


def _reservation_json(r: Reservation) -> dict[str, Any]:
    return {
        "reservation_id": r.id,
        "concert_id": r.concert_id,
        "seat_id": r.seat_id,
        "user_id": r.user_id,
        "price": r.price,
        "status": r.status,
        "expires_at": r.expires_at.isoformat(),
    }


def hold_seat(
    session: Session, concert_id: int, seat_id: int, user_id: int, hold_seconds: float, key: str
) -> StoredResponse:
    """Saga action: hold the seat for a new reservation, or refuse if another holds it. A hold
    that ran out is superseded here (EXPIRED), in the same transaction: its saga can no longer
    confirm it."""

    def apply() -> tuple[int, dict[str, Any]]:
        price = get_concert(session, concert_id).price  # an unknown concert: concert_not_found
        seat = session.get(Seat, seat_id)
        if seat is None or seat.concert_id != concert_id:
            raise SeatNotFound(f"concert {concert_id} has no seat {seat_id}")
        session.execute(
            update(Reservation)
            .where(
                Reservation.seat_id == seat_id,
                Reservation.status == ReservationStatus.HELD,
                Reservation.expires_at <= func.now(),
            )
            .values(status=ReservationStatus.EXPIRED, updated_at=func.now())
        )
        reservation = Reservation(
            seat_id=seat_id,
            concert_id=concert_id,
            user_id=user_id,
            price=price,
            status=ReservationStatus.HELD,
            hold_key=key,
            expires_at=datetime.now(UTC) + timedelta(seconds=hold_seconds),
        )
        session.add(reservation)
        try:
            session.flush()
        except IntegrityError as exc:  # the one-active-reservation-per-seat index
            raise SeatTaken(f"seat {seat_id} is held or reserved by another reservation") from exc
        return 201, _reservation_json(reservation)

    return idempotency.execute(
        session,
        key,
        "hold_seat",
        {"concert_id": concert_id, "seat_id": seat_id, "user_id": user_id},
        apply,
    )


def release_hold(session: Session, hold_key: str, key: str) -> StoredResponse:
    """Saga compensation of a hold: release it if it is still held. If the hold never arrived,
    a tombstone makes sure it never will."""

    def apply() -> tuple[int, dict[str, Any]]:
        hold = idempotency.reverse_once(session, hold_key, key, "hold_seat")
        if hold is None:
            return 200, {"reservation_id": None, "released": False}
        released = session.execute(
            update(Reservation)
            .where(Reservation.hold_key == hold_key, Reservation.status == ReservationStatus.HELD)
            .values(status=ReservationStatus.RELEASED, updated_at=func.now())
            .returning(Reservation.id)
        ).scalar_one_or_none()
        # Not HELD any more: it expired and another reservation took the seat. Nothing to free.
        return 200, {
            "reservation_id": hold.body.get("reservation_id"),
            "released": released is not None,
        }

    return idempotency.execute(session, key, "release_hold", {"hold_key": hold_key}, apply)


def confirm_reservation(session: Session, reservation_id: int, key: str) -> StoredResponse:
    """Saga pivot: HELD -> CONFIRMED, the seat is RESERVED. Refused if the hold was lost."""

    def apply() -> tuple[int, dict[str, Any]]:
        confirmed = session.execute(
            update(Reservation)
            .where(Reservation.id == reservation_id, Reservation.status == ReservationStatus.HELD)
            .values(status=ReservationStatus.CONFIRMED, updated_at=func.now())
            .returning(Reservation)
        ).scalar_one_or_none()
        if confirmed is None:
            current = session.get(Reservation, reservation_id)
            if current is None:
                raise ReservationNotFound(f"reservation {reservation_id} does not exist")
            raise HoldLost(f"reservation {reservation_id} is {current.status}, not held")
        return 200, _reservation_json(confirmed)

    return idempotency.execute(
        session, key, "confirm_reservation", {"reservation_id": reservation_id}, apply
    )


def _cancellation_move(
    session: Session, reservation_id: int, expected: ReservationStatus, new: ReservationStatus
) -> dict[str, Any]:
    moved = session.execute(
        update(Reservation)
        .where(Reservation.id == reservation_id, Reservation.status == expected)
        .values(status=new, updated_at=func.now())
        .returning(Reservation)
    ).scalar_one_or_none()
    if moved is None:
        current = session.get(Reservation, reservation_id)
        if current is None:
            raise ReservationNotFound(f"reservation {reservation_id} does not exist")
        raise ReservationNotCancellable(
            f"reservation {reservation_id} is {current.status}, not {expected}"
        )
    return _reservation_json(moved)


def start_cancellation(session: Session, reservation_id: int, key: str) -> StoredResponse:
    """Cancellation saga action: CONFIRMED -> CANCELLING (the seat stays RESERVED until the
    money is back: the saga's semantic lock)."""
    return idempotency.execute(
        session,
        key,
        "start_cancellation",
        {"reservation_id": reservation_id},
        lambda: (
            200,
            _cancellation_move(
                session, reservation_id, ReservationStatus.CONFIRMED, ReservationStatus.CANCELLING
            ),
        ),
    )


def complete_cancellation(session: Session, reservation_id: int, key: str) -> StoredResponse:
    """Cancellation saga's last step: CANCELLING -> CANCELLED, the seat AVAILABLE for anyone."""
    return idempotency.execute(
        session,
        key,
        "complete_cancellation",
        {"reservation_id": reservation_id},
        lambda: (
            200,
            _cancellation_move(
                session, reservation_id, ReservationStatus.CANCELLING, ReservationStatus.CANCELLED
            ),
        ),
    )


def release_cancellation(
    session: Session, reservation_id: int, start_key: str, key: str
) -> StoredResponse:
    """Compensation of `start_cancellation`: CANCELLING -> CONFIRMED, only if that start went
    through; if it never arrived, a tombstone makes sure it never will."""

    def apply() -> tuple[int, dict[str, Any]]:
        start = idempotency.reverse_once(session, start_key, key, "start_cancellation")
        if start is not None and start.body.get("reservation_id") != reservation_id:
            raise NotThatAction(
                f"key {start_key!r} started reservation {start.body.get('reservation_id')}, "
                f"not {reservation_id}"
            )
        if start is None:
            return 200, {"reservation_id": reservation_id, "released": False}
        reservation = _cancellation_move(
            session, reservation_id, ReservationStatus.CANCELLING, ReservationStatus.CONFIRMED
        )
        return 200, {**reservation, "released": True}

    return idempotency.execute(
        session,
        key,
        "release_cancellation",
        {"reservation_id": reservation_id, "start_key": start_key},
        apply,
    )
