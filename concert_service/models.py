from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sagaengine.participant import IdempotencyRecordMixin


class Base(DeclarativeBase):
    pass


class Concert(Base):
    __tablename__ = "concerts"
    __table_args__ = (CheckConstraint("price > 0", name="price_positive"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(200))
    price: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Seat(Base):
    __tablename__ = "seats"
    __table_args__ = (UniqueConstraint("concert_id", "number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    concert_id: Mapped[int] = mapped_column(ForeignKey("concerts.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        # A seat is held or reserved by at most one reservation at a time.
        Index(
            "uq_reservations_one_active_per_seat",
            "seat_id",
            unique=True,
            postgresql_where=text("status IN ('HELD', 'CONFIRMED', 'CANCELLING')"),
        ),
        CheckConstraint(
            "status IN ('HELD', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'CANCELLING', 'CANCELLED')",
            name="status_known",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    seat_id: Mapped[int] = mapped_column(ForeignKey("seats.id"), index=True)
    concert_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    hold_key: Mapped[str] = mapped_column(String(200), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyRecord(IdempotencyRecordMixin, Base):
    pass
