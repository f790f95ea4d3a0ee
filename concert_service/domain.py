"""Concerts, seats and reservations. Standard library only.

A reservation holds its seat (HELD, until it expires), then is CONFIRMED (the seat is RESERVED),
or RELEASED by its saga's compensation, or EXPIRED when another reservation took the seat after
its hold ran out. A CONFIRMED reservation can be cancelled: CANCELLING while its cancellation saga
runs (the seat still RESERVED: the saga's semantic lock), then CANCELLED, and the seat is free for
anyone. At most one reservation per seat is HELD, CONFIRMED or CANCELLING at a time: the database
enforces it.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from common.errors import DomainError, NotFound

MAX_SEATS = 10_000


class SeatStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    HELD = "HELD"
    RESERVED = "RESERVED"


class ReservationStatus(StrEnum):
    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


# The statuses that take a seat: one reservation per seat at most (a unique index).
ACTIVE = (ReservationStatus.HELD, ReservationStatus.CONFIRMED, ReservationStatus.CANCELLING)


def seat_status(
    reservation: ReservationStatus | None, expires_at: datetime | None, now: datetime
) -> SeatStatus:
    """What a seat shows, from its active reservation (if any)."""
    if reservation in (ReservationStatus.CONFIRMED, ReservationStatus.CANCELLING):
        return SeatStatus.RESERVED
    if reservation is ReservationStatus.HELD and expires_at is not None and expires_at > now:
        return SeatStatus.HELD
    return SeatStatus.AVAILABLE  # free, or held by a hold that ran out and may be taken


@dataclass(frozen=True)
class SeatView:
    id: int
    number: int
    status: SeatStatus


class ConcertNotFound(NotFound):
    code = "concert_not_found"


class SeatNotFound(NotFound):
    code = "seat_not_found"


class ReservationNotFound(NotFound):
    code = "reservation_not_found"


class SeatTaken(DomainError):
    code = "seat_taken"


class HoldLost(DomainError):
    """The reservation no longer holds its seat (released, or expired and taken by another)."""

    code = "hold_lost"


class ReservationNotCancellable(DomainError):
    """Only a CONFIRMED reservation can be cancelled (and only once)."""

    code = "reservation_not_cancellable"
