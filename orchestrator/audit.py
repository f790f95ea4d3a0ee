"""The audit trail: every operator action (a retry, a cancellation), who took it (the role of
the token), when, on which saga, why, and what came of it, in the orchestrator's database.

An action is recorded once it is decided, whatever it decided: a retry refused because the saga
was not stuck is an action an auditor wants to see too. A request refused before it was an
action (no token: 401, a viewer's token: 403) is not recorded.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, func, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.auth import Role


class Base(DeclarativeBase):
    pass


class OperatorAction(Base):
    __tablename__ = "operator_actions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    saga_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[str] = mapped_column(String(200))  # "accepted", or the refusal's code
    request_id: Mapped[str | None] = mapped_column(String(200))


@dataclass(frozen=True)
class Action:
    id: int
    at: datetime
    role: str
    action: str
    saga_id: str | None
    reason: str | None
    result: str
    request_id: str | None


class AuditTrail:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]):
        self.sessionmaker = sessionmaker

    async def record(
        self,
        *,
        role: Role,
        action: str,
        saga_id: str | None,
        reason: str | None,
        result: str,
        request_id: str | None,
    ) -> None:
        async with self.sessionmaker() as session, session.begin():
            session.add(
                OperatorAction(
                    role=str(role),
                    action=action,
                    saga_id=_uuid(saga_id),
                    reason=reason,
                    result=result,
                    request_id=request_id,
                )
            )

    async def page(
        self, limit: int, before: int | None = None, saga_id: str | None = None
    ) -> list[Action]:
        """The actions, newest first; with `before`, those older than that action's id; with
        `saga_id`, those on that saga (through its index)."""
        query = select(OperatorAction).order_by(OperatorAction.id.desc()).limit(limit)
        if before is not None:
            query = query.where(OperatorAction.id < before)
        if saga_id is not None:
            query = query.where(OperatorAction.saga_id == _uuid(saga_id))
        async with self.sessionmaker() as session:
            rows = await session.scalars(query)
            return [
                Action(
                    r.id,
                    r.at,
                    r.role,
                    r.action,
                    str(r.saga_id) if r.saga_id else None,
                    r.reason,
                    r.result,
                    r.request_id,
                )
                for r in rows
            ]


def _uuid(value: str | None) -> uuid.UUID | None:
    """The saga's id, if the operator named a real one (an unknown id is still an action)."""
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
