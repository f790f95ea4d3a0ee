from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, String, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sagaengine.participant import IdempotencyRecordMixin


class Base(DeclarativeBase):
    pass


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('APPROVED', 'CANCELLED')", name="status_known"),
        # An order, or a reservation, is paid at most once, whatever the callers do.
        Index(
            "uq_payments_one_approved_per_order",
            "order_id",
            unique=True,
            postgresql_where=text("status = 'APPROVED'"),
        ),
        Index(
            "uq_payments_one_approved_per_reservation",
            "reservation_id",
            unique=True,
            postgresql_where=text("status = 'APPROVED'"),
        ),
        CheckConstraint("(order_id IS NULL) <> (reservation_id IS NULL)", name="pays_one_thing"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    reservation_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    # The Idempotency-Key of the approval: a cancellation finds its payment by it.
    approval_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyRecord(IdempotencyRecordMixin, Base):
    pass
