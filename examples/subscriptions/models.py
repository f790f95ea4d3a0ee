"""The subscriptions service's tables (its database, `saga_subscriptions`; its migrations,
migrations/subscriptions/)."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, String, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sagaengine.participant import IdempotencyRecordMixin


class Base(DeclarativeBase):
    pass


class IdempotencyRecord(IdempotencyRecordMixin, Base):
    pass


class RenewalStatus(StrEnum):
    PENDING = "PENDING"  # reserved: the subscription's lock, until activated or released
    ACTIVE = "ACTIVE"
    RELEASED = "RELEASED"


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (CheckConstraint("price > 0", name="price_positive"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[int] = mapped_column(BigInteger)
    paid_through: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Renewal(Base):
    __tablename__ = "renewals"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'ACTIVE', 'RELEASED')", name="status_known"),
        # The semantic lock, as a fact of the database: one PENDING renewal per subscription.
        Index(
            "uq_renewals_one_pending",
            "subscription_id",
            unique=True,
            postgresql_where=text("status = 'PENDING'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    month: Mapped[str] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(16))
