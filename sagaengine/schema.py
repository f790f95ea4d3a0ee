import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SagaRecord(Base):
    """One saga: where it stands, what it was given, what its steps answered, and who runs it."""

    __tablename__ = "sagas"
    __table_args__ = (
        # A start request's Idempotency-Key names one saga, forever.
        UniqueConstraint("type", "client_key", name="uq_sagas_type_client_key"),
        # At most one saga per business object (an order) that is not COMPENSATED: concurrent
        # starts without a key get the one saga, and a paid order is never paid again.
        Index(
            "uq_sagas_live_lock_key",
            "lock_key",
            unique=True,
            postgresql_where=text("status <> 'COMPENSATED'"),
        ),
        # The recovery loop looks for unfinished sagas whose lease expired.
        Index(
            "ix_sagas_unfinished_lease",
            "lease_expires_at",
            postgresql_where=text("status IN ('RUNNING', 'COMPENSATING')"),
        ),
        # The purge (sagaengine/purge.py): finished sagas, oldest first.
        Index(
            "ix_sagas_finished",
            "finished_at",
            postgresql_where=text("status IN ('COMPLETED', 'COMPENSATED')"),
        ),
        Index("ix_sagas_created", text("created_at DESC"), text("id DESC")),
        Index("ix_sagas_status_created", "status", text("created_at DESC"), text("id DESC")),
        # The admin finds sagas by business key, and by the request that started them.
        Index(
            "ix_sagas_keys",
            "keys",
            postgresql_using="gin",
            postgresql_ops={"keys": "jsonb_path_ops"},
        ),
        Index("ix_sagas_request_id", "request_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    definition_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    results: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # what made it compensate
    attention: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # why it needs an operator
    client_key: Mapped[str | None] = mapped_column(String(200))
    lock_key: Mapped[str] = mapped_column(String(200))
    # The X-Request-ID of the request that started it: sent with every call the saga makes.
    request_id: Mapped[str | None] = mapped_column(String(200))
    # The lease token of the run that owns the saga (instance id + a nonce per claim): every
    # write is conditional on it, so a run that lost its lease cannot write any more.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Its start is still being decided by its first step, which may refuse it (and then the saga
    # is removed, as if never recorded): see orchestrator/service.py.
    starting: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The W3C traceparent of its start request's span: every run of it, in any process, goes on
    # in that trace (sagaengine/tracing.py). NULL when tracing was off.
    trace_parent: Mapped[str | None] = mapped_column(String(64))
    # Its business keys (`SagaDefinition.keys`: order id, user id...), as the admin filters by
    # them (a GIN index: `keys @> '{"order_id": 5}'`).
    keys: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Why an operator cancelled it (SagaStore.request_cancel): it goes forward no more.
    cancel_reason: Mapped[str | None] = mapped_column(String(500))


class StepAttempt(Base):
    """One call of one step: written before the call (write-ahead), completed after it."""

    __tablename__ = "saga_steps"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    saga_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sagas.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    step_name: Mapped[str] = mapped_column(String(64))
    phase: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(200))
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxMessage(Base):
    """An event for the data platform, written in the same transaction as the saga outcome it
    reports: it exists if and only if that outcome committed. The relay delivers it after."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's claim: pending rows by age, and "is an older one of this aggregate pending?"
        Index("ix_outbox_pending", "id", postgresql_where=text("status = 'PENDING'")),
        Index(
            "ix_outbox_pending_aggregate",
            "aggregate_id",
            "id",
            postgresql_where=text("status = 'PENDING'"),
        ),
        Index("ix_outbox_saga", "saga_id"),
        # The purge keeps a saga while one of its events is not delivered: a small index, of
        # the backlog only, however many delivered rows there are.
        Index("ix_outbox_undelivered", "saga_id", postgresql_where=text("status <> 'DELIVERED'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    saga_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    aggregate_id: Mapped[str] = mapped_column(String(200))  # events of one aggregate go in order
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    status: Mapped[str] = mapped_column(String(16), server_default=text("'PENDING'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
