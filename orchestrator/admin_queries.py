"""The admin's reads: pages of sagas, their attempts, counts and the outbox's backlog.

They run on an operator's request, not once per step, so they stay on SQLAlchemy (the engine's
hot path is plain SQL in `sagaengine.postgres`).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from sagaengine.definition import LIVE_STATUSES, SagaStatus
from sagaengine.postgres import state_of_record
from sagaengine.schema import OutboxMessage, SagaRecord, StepAttempt
from sagaengine.store import OutboxStatus, SagaState

SAGAS = SagaRecord.__table__

# Below this many rows (by the planner's statistics) a table is counted exactly on every page.
EXACT_BELOW = 100_000


@dataclass(frozen=True)
class Count:
    n: int
    estimated: bool = False

    def __str__(self) -> str:
        return f"≈{self.n:,}" if self.estimated else f"{self.n:,}"


async def planner_estimates(
    conn: AsyncConnection, table: str, column: str
) -> tuple[float, dict[str, float]]:
    """The table's estimated rows and the share of each common value of `column`, from
    pg_class and pg_stats (no row is read); (-1, {}) before the first ANALYZE."""
    total = await conn.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
    )
    row = (
        await conn.execute(
            text(
                "SELECT CAST(most_common_vals AS text), most_common_freqs FROM pg_stats"
                " WHERE schemaname = current_schema() AND tablename = :t AND attname = :c"
            ),
            {"t": table, "c": column},
        )
    ).first()
    shares: dict[str, float] = {}
    if row is not None and row[0] is not None:
        values = [v.strip('"') for v in row[0].strip("{}").split(",")]
        shares = dict(zip(values, row[1], strict=True))
    return float(total if total is not None else -1), shares


class AdminQueries:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]):
        self.sessionmaker = sessionmaker

    async def attempts(self, saga_id: uuid.UUID) -> list[StepAttempt]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(StepAttempt).where(StepAttempt.saga_id == saga_id).order_by(StepAttempt.id)
            )
            return list(rows)

    async def page(
        self,
        *,
        status: SagaStatus | None,
        saga_type: str | None,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
        since: datetime | None = None,
        keys: dict[str, Any] | None = None,
        request_id: str | None = None,
        before: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[SagaState]:
        """Newest first; `after` is the (created_at, id) of the last saga of the previous page;
        `keys`: business keys the saga carries (all of them), through the GIN index on keys.
        `before` (instead of `after`): the `limit` sagas just newer than that one, oldest
        first (a page back towards the newest)."""
        if before is not None:
            query = select(SagaRecord).order_by(SagaRecord.created_at, SagaRecord.id)
            query = query.where(tuple_(SagaRecord.created_at, SagaRecord.id) > tuple_(*before))
        else:
            query = select(SagaRecord).order_by(SagaRecord.created_at.desc(), SagaRecord.id.desc())
        if keys:
            query = query.where(SagaRecord.keys.contains(keys))
        if request_id is not None:
            query = query.where(SagaRecord.request_id == request_id)
        if status is not None:
            query = query.where(SagaRecord.status == status)
        if saga_type is not None:
            query = query.where(SagaRecord.type == saga_type)
        if since is not None:
            query = query.where(SagaRecord.created_at >= since)
        if after is not None:
            # A row comparison, so the index on (created_at, id) seeks straight to the page.
            query = query.where(tuple_(SagaRecord.created_at, SagaRecord.id) < tuple_(*after))
        async with self.sessionmaker() as session:
            return [state_of_record(r) for r in await session.scalars(query.limit(limit))]

    async def needing_attention(
        self,
        *,
        saga_type: str | None,
        step: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> tuple[int, list[SagaState]]:
        """NEEDS_ATTENTION sagas of a type, stuck at a step, started in [since, until): how many
        there are, and the oldest `limit` of them (a bulk retry takes the oldest first)."""
        query = select(SagaRecord).where(SagaRecord.status == SagaStatus.NEEDS_ATTENTION)
        if saga_type is not None:
            query = query.where(SagaRecord.type == saga_type)
        if step is not None:
            query = query.where(SagaRecord.attention["step"].astext == step)
        if since is not None:
            query = query.where(SagaRecord.created_at >= since)
        if until is not None:
            query = query.where(SagaRecord.created_at < until)
        counted = select(func.count()).select_from(query.subquery())
        oldest = query.order_by(SagaRecord.created_at, SagaRecord.id).limit(limit)
        async with self.sessionmaker() as session:
            total = (await session.execute(counted)).scalar_one()
            return total, [state_of_record(r) for r in await session.scalars(oldest)]

    async def redeliver(self, event_id: uuid.UUID) -> bool:
        """Make a pending event due now, whatever its backoff (an operator fixed the platform):
        the next relay pass claims it. False if it is not pending (delivered, or unknown)."""
        query = (
            update(OutboxMessage)
            .where(OutboxMessage.event_id == event_id, OutboxMessage.status == "PENDING")
            .values(next_attempt_at=func.now())
            .returning(OutboxMessage.id)
        )
        async with self.sessionmaker() as session, session.begin():
            return (await session.execute(query)).first() is not None

    async def count_by_status(self) -> dict[str, int]:
        """Exact counts: reads every saga's status (GET /admin/stats, not on any page)."""
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(SagaRecord.status, func.count()).group_by(SagaRecord.status)
            )
            return {status: count for status, count in rows}

    async def counts_at_a_glance(self, exact_below: int = EXACT_BELOW) -> dict[str, Count]:
        """The counts the admin page shows on every load, in constant time: sagas that are not
        final are counted exactly (there are few, and an index holds them); final ones are
        counted exactly while the table is small, else estimated from the planner's
        statistics (kept by autovacuum's ANALYZE), and marked as estimates."""
        unfinished = (*LIVE_STATUSES, SagaStatus.NEEDS_ATTENTION)
        async with self.sessionmaker() as session:
            conn = await session.connection()
            rows = await conn.execute(
                select(SAGAS.c.status, func.count())
                .where(SAGAS.c.status.in_(unfinished))
                .group_by(SAGAS.c.status)
            )
            counts = {status: Count(n) for status, n in rows}
            total, by_status = await planner_estimates(conn, "sagas", "status")
            if total < exact_below or not by_status:  # small, or no statistics yet: count
                rows = await conn.execute(
                    select(SAGAS.c.status, func.count())
                    .where(SAGAS.c.status.not_in(unfinished))
                    .group_by(SAGAS.c.status)
                )
                counts.update({status: Count(n) for status, n in rows})
            else:
                counts.update(
                    {
                        status: Count(round(total * share), estimated=True)
                        for status, share in by_status.items()
                        if status not in unfinished
                    }
                )
        return dict(sorted(counts.items()))

    async def outbox_backlog(
        self, *, at_a_glance: bool = False, exact_below: int = EXACT_BELOW
    ) -> dict[str, Any]:
        """Pending and delivered events, and the age of the oldest pending one. `at_a_glance`
        (the admin page, on every load): pending exactly, through their index; delivered
        estimated from the planner's statistics once the table is large (see
        counts_at_a_glance), instead of counted row by row."""
        pending_only = OutboxMessage.status == OutboxStatus.PENDING
        async with self.sessionmaker() as session:
            oldest = await session.scalar(
                select(
                    func.extract("epoch", func.now() - func.min(OutboxMessage.occurred_at))
                ).where(pending_only)
            )
            if at_a_glance:
                conn = await session.connection()
                pending = await session.scalar(
                    select(func.count()).select_from(OutboxMessage).where(pending_only)
                )
                total, _ = await planner_estimates(conn, "outbox", "status")
                if total >= exact_below:
                    delivered = Count(round(max(total - (pending or 0), 0)), estimated=True)
                    return {
                        "pending": pending,
                        "delivered": delivered,
                        "oldest_pending_seconds": float(oldest) if oldest is not None else None,
                    }
            counts = dict(
                (
                    await session.execute(
                        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
                    )
                ).all()
            )
        return {
            "pending": counts.get(OutboxStatus.PENDING, 0),
            "delivered": counts.get(OutboxStatus.DELIVERED, 0),
            "oldest_pending_seconds": float(oldest) if oldest is not None else None,
        }

    async def outbox_messages(self, status: OutboxStatus | None, limit: int) -> list[OutboxMessage]:
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if status is not None:
            query = query.where(OutboxMessage.status == status)
        async with self.sessionmaker() as session:
            return list(await session.scalars(query))
