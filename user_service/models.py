from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sagaengine.participant import IdempotencyRecordMixin


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    # The database, not only the code, refuses a negative balance, and keeps room for every
    # deduction that a charge-back or a refund may still give back (see `reversible`).
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("reversible >= 0", name="reversible_not_negative"),
        CheckConstraint(
            "balance::numeric + reversible <= 9223372036854775807", name="room_for_reversals"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    balance: Mapped[int] = mapped_column(BigInteger)
    # The deductions not given back (yet): a charge-back gives one back, and can never overflow
    # the balance, because a top-up that would leave no room for them is refused.
    reversible: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LedgerEntry(Base):
    """Every balance change, with the balance it left: the audit trail that proves no money was
    made or lost and that no balance was ever negative."""

    __tablename__ = "balance_ledger"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    delta: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyRecord(IdempotencyRecordMixin, Base):
    pass
