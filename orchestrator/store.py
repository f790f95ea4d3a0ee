"""Persistence of sagas and their step attempts. Every write is one short transaction, never open
across a remote call, and every write to a running saga is fenced by its lease token."""

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Row,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from orchestrator.models import OutboxMessage, SagaRecord, StepAttempt
from orchestrator.saga import (
    FINAL_STATUSES,
    OutcomeEvent,
    Phase,
    Position,
    RemoteCall,
    SagaDefinition,
    SagaStatus,
    check_transition,
)

LIVE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
# The hot path (a saga's run) speaks SQLAlchemy Core on these tables: no ORM unit of work, no
# identity map, a handful of statements per step. Reads for the admin API use the ORM.
SAGAS = SagaRecord.__table__
STEPS = StepAttempt.__table__
OUTBOX = OutboxMessage.__table__

# Write-ahead of one call, in one statement: renew the lease (fenced by its token) and, only if
# that matched, insert the attempt numbered after the earlier attempts of the same call.
BEGIN_ATTEMPT = text("""
    WITH renewed AS (
        UPDATE sagas SET lease_expires_at = now() + :lease, updated_at = now()
        WHERE id = :saga_id AND lease_owner = :token
        RETURNING id
    )
    INSERT INTO saga_steps
        (saga_id, step, step_name, phase, attempt, status, idempotency_key, owner, request)
    SELECT renewed.id, CAST(:step AS integer), :step_name, CAST(:phase AS varchar),
           (SELECT coalesce(max(attempt), 0) + 1 FROM saga_steps
            WHERE saga_id = :saga_id AND step = CAST(:step AS integer)
              AND phase = CAST(:phase AS varchar)),
           'STARTED', :key, :token, :request
    FROM renewed
    RETURNING id
""").bindparams(bindparam("request", type_=JSONB))


# Before a write-ahead is tried again after its answer was lost: an earlier try may have committed
# its attempt unseen, and that call never left. Its outcome is marked unknown, as recovery marks
# the calls of a run that died (a later refusal of the step is then not taken at its word).
INTERRUPT_UNSENT = text("""
    UPDATE saga_steps SET status = 'INTERRUPTED', finished_at = now()
    WHERE saga_id = :saga_id AND owner = :token AND status = 'STARTED'
""")


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


class LeaseLost(Exception):
    """Another run owns this saga now; this one must stop without writing."""


@dataclass(frozen=True)
class SagaState:
    id: uuid.UUID
    type: str
    version: int
    status: SagaStatus
    phase: Phase
    step: int
    payload: dict[str, Any]
    results: dict[str, Any]
    error: dict[str, Any] | None
    attention: dict[str, Any] | None
    client_key: str | None
    request_id: str | None
    lease_owner: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def position(self) -> Position:
        return Position(self.status, self.step, self.phase)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def of(cls, row: SagaRecord | Row) -> "SagaState":
        return cls(
            id=row.id,
            type=row.type,
            version=row.definition_version,
            status=SagaStatus(row.status),
            phase=Phase(row.phase),
            step=row.step,
            payload=row.payload,
            results=row.results,
            error=row.error,
            attention=row.attention,
            client_key=row.client_key,
            request_id=row.request_id,
            lease_owner=row.lease_owner,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
        )


@dataclass(frozen=True)
class Owner:
    """Who runs sagas: a replica (its instance id, stable across restarts) in one incarnation
    (one process lifetime). Lease tokens are `<instance id>#<incarnation>.<nonce>`."""

    instance_id: str
    incarnation: str

    @classmethod
    def new(cls, instance_id: str) -> "Owner":
        return cls(instance_id, uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"{self.instance_id}#{self.incarnation}."

    @property
    def instance_prefix(self) -> str:
        return f"{self.instance_id}#"

    def lease_token(self) -> str:
        return f"{self.prefix}{uuid.uuid4().hex[:12]}"


def _starts_with(prefix: str):
    return func.left(SagaRecord.lease_owner, len(prefix)) == prefix


class SagaStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], lease_seconds: float):
        self.sessionmaker = sessionmaker
        self.engine = sessionmaker.kw["bind"]
        # A single statement is atomic by itself: run alone, it needs no BEGIN and no COMMIT
        # (two round trips fewer, for every write-ahead, every start and every read).
        self.single = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.lease = timedelta(seconds=lease_seconds)

    # -- starting ------------------------------------------------------------------------------

    async def create(
        self,
        definition: SagaDefinition,
        payload: dict[str, Any],
        client_key: str | None,
        lock_key: str,
        lease_token: str,
        request_id: str | None = None,
    ) -> SagaState | None:
        """Insert a RUNNING saga owned by `lease_token`; None if a saga with this client key, or a
        live one with this lock key, exists already."""
        async with self.single.connect() as conn:
            row = (
                await conn.execute(
                    pg_insert(SAGAS)
                    .values(
                        id=uuid.uuid4(),
                        type=definition.name,
                        definition_version=definition.version,
                        status=SagaStatus.RUNNING,
                        phase=Phase.ACTION,
                        step=0,
                        payload=payload,
                        results={},
                        client_key=client_key,
                        lock_key=lock_key,
                        request_id=request_id,
                        lease_owner=lease_token,
                        lease_expires_at=func.now() + self.lease,
                    )
                    .on_conflict_do_nothing()
                    .returning(SAGAS)
                )
            ).one_or_none()
            return SagaState.of(row) if row else None

    async def find_by_client_key(self, saga_type: str, client_key: str) -> SagaState | None:
        async with self.sessionmaker() as session:
            row = await session.scalar(
                select(SagaRecord).where(
                    SagaRecord.type == saga_type, SagaRecord.client_key == client_key
                )
            )
            return SagaState.of(row) if row else None

    async def find_live_by_lock_key(self, lock_key: str) -> SagaState | None:
        async with self.sessionmaker() as session:
            row = await session.scalar(
                select(SagaRecord).where(
                    SagaRecord.lock_key == lock_key, SagaRecord.status != SagaStatus.COMPENSATED
                )
            )
            return SagaState.of(row) if row else None

    # -- reading -------------------------------------------------------------------------------

    async def get(self, saga_id: uuid.UUID) -> SagaState | None:
        async with self.single.connect() as conn:
            row = (await conn.execute(select(SAGAS).where(SAGAS.c.id == saga_id))).one_or_none()
            return SagaState.of(row) if row else None

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
    ) -> list[SagaState]:
        """Newest first; `after` is the (created_at, id) of the last saga of the previous page."""
        query = select(SagaRecord).order_by(SagaRecord.created_at.desc(), SagaRecord.id.desc())
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
            return [SagaState.of(r) for r in await session.scalars(query.limit(limit))]

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
        unfinished = (*LIVE, SagaStatus.NEEDS_ATTENTION)
        async with self.single.connect() as conn:
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

    # -- running (fenced by the lease token) ---------------------------------------------------

    async def _renew(self, conn: AsyncConnection, saga_id: uuid.UUID, token: str) -> None:
        renewed = await conn.scalar(
            update(SAGAS)
            .where(SAGAS.c.id == saga_id, SAGAS.c.lease_owner == token)
            .values(lease_expires_at=func.now() + self.lease, updated_at=func.now())
            .returning(SAGAS.c.id)
        )
        if renewed is None:
            raise LeaseLost(f"saga {saga_id} is no longer leased to {token}")

    async def begin_attempt(
        self,
        saga_id: uuid.UUID,
        token: str,
        step_index: int,
        step_name: str,
        phase: Phase,
        key: str,
        call: RemoteCall,
        *,
        again: bool = False,
    ) -> int:
        """Write-ahead: record the attempt before the call leaves (one statement). `again`: an
        earlier try may have recorded one whose answer was lost (see INTERRUPT_UNSENT)."""
        async with self.single.connect() as conn:
            if again:
                await conn.execute(INTERRUPT_UNSENT, {"saga_id": saga_id, "token": token})
            attempt_id = await conn.scalar(
                BEGIN_ATTEMPT,
                {
                    "lease": self.lease,
                    "saga_id": saga_id,
                    "token": token,
                    "step": step_index,
                    "step_name": step_name,
                    "phase": str(phase),
                    "key": key,
                    "request": asdict(call),
                },
            )
        if attempt_id is None:
            raise LeaseLost(f"saga {saga_id} is no longer leased to {token}")
        return attempt_id

    async def had_unknown_outcome(self, saga_id: uuid.UUID, step_index: int, phase: Phase) -> bool:
        """Whether an attempt of this call ended without an answer (a transient fault, or a run
        that died mid-call): it may have applied whatever a later attempt was told."""
        async with self.single.connect() as conn:
            found = await conn.scalar(
                select(STEPS.c.id)
                .where(
                    STEPS.c.saga_id == saga_id,
                    STEPS.c.step == step_index,
                    STEPS.c.phase == phase,
                    STEPS.c.status.in_(("FAILED", "INTERRUPTED")),
                )
                .limit(1)
            )
            return found is not None

    @staticmethod
    def _finish(attempt_id: int, status: str, response: dict | None, error: dict | None):
        return (
            update(STEPS)
            .where(STEPS.c.id == attempt_id)
            .values(status=status, response=response, error=error, finished_at=func.now())
        )

    async def finish_attempt(
        self,
        saga_id: uuid.UUID,
        token: str,
        attempt_id: int,
        status: str,
        *,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        async with self.engine.begin() as conn:
            await self._renew(conn, saga_id, token)
            await conn.execute(self._finish(attempt_id, status, response, error))

    async def move(
        self,
        state: SagaState,
        token: str,
        to: Position,
        *,
        result: tuple[str, dict[str, Any]] | None = None,
        error: dict[str, Any] | None = None,
        attention: dict[str, Any] | None = None,
        event: OutcomeEvent | None = None,
        finished_attempt: tuple[int, str, dict[str, Any] | None] | None = None,
        again: bool = False,
    ) -> None:
        """Persist the saga's next position; a final or stuck saga gives up its lease. The
        outcome's event goes into the outbox in the same statement: it exists if and only if
        the outcome committed. `finished_attempt` (attempt id, status, response) records the
        end of the call that led here in the same statement too.

        `again`: an earlier try of this same move may have committed unseen. If this one then
        matches nothing, the saga is read: standing where the move leads, and still this run's
        (or released, as a final or stuck saga is), the move was made; otherwise the lease is
        lost."""
        check_transition(state.status, to.status)
        values: dict[str, Any] = {
            "status": to.status,
            "step": to.step,
            "phase": to.phase,
            "updated_at": func.now(),
            "attention": attention,
        }
        if result is not None:
            # Whole-value write: the lease fence below guarantees nobody else writes this row.
            name, response = result
            values["results"] = {**state.results, name: response}
        if error is not None:
            values["error"] = error
        if to.status in FINAL_STATUSES or to.status is SagaStatus.NEEDS_ATTENTION:
            values.update(lease_owner=None, lease_expires_at=None)
        else:
            values["lease_expires_at"] = func.now() + self.lease
        if to.status in FINAL_STATUSES:
            values["finished_at"] = func.now()
        # One statement, atomic on its own: the fenced move, and only if it matched, the end of
        # the call that led here and the outcome's event (data-modifying CTEs of the move).
        moved = (
            update(SAGAS)
            .where(
                SAGAS.c.id == state.id,
                SAGAS.c.lease_owner == token,
                SAGAS.c.status == state.status,
            )
            .values(**values)
            .returning(SAGAS.c.id)
            .cte("moved")
        )
        statement = select(moved.c.id)
        if finished_attempt is not None:
            attempt_id, status, response = finished_attempt
            finish = (
                self._finish(attempt_id, status, response, None)
                .where(exists(select(moved.c.id)))
                .returning(STEPS.c.id)
                .cte("finished")
            )
            statement = statement.add_cte(finish)
        if event is not None:
            row = select(
                literal(uuid.uuid4(), UUID(as_uuid=True)),
                moved.c.id,
                literal(event.aggregate_id),
                literal(event.type),
                literal(event.payload, JSONB),
            )
            columns = ["event_id", "saga_id", "aggregate_id", "type", "payload"]
            written = insert(OUTBOX).from_select(columns, row).returning(OUTBOX.c.id).cte("event")
            statement = statement.add_cte(written)
        async with self.single.connect() as conn:
            if await conn.scalar(statement) is not None:
                return
            if again and await self._stands_at(conn, state.id, token, to):
                return
        raise LeaseLost(f"saga {state.id} is no longer leased to {token}")

    async def _stands_at(
        self, conn: AsyncConnection, saga_id: uuid.UUID, token: str, to: Position
    ) -> bool:
        row = (
            await conn.execute(
                select(SAGAS.c.status, SAGAS.c.step, SAGAS.c.phase, SAGAS.c.lease_owner).where(
                    SAGAS.c.id == saga_id
                )
            )
        ).one_or_none()
        if row is None or (row.status, row.step, row.phase) != (to.status, to.step, to.phase):
            return False
        released = to.status in FINAL_STATUSES or to.status is SagaStatus.NEEDS_ATTENTION
        return row.lease_owner == token or (released and row.lease_owner is None)

    # -- recovery ------------------------------------------------------------------------------

    async def claim_expired(
        self, owner: Owner, limit: int, *, own_orphans: bool = False
    ) -> list[tuple[uuid.UUID, str]]:
        """Take over unfinished sagas whose lease expired (or, at start, the ones an earlier
        incarnation of this same instance left behind), skipping rows another replica is
        claiming."""
        expired = SagaRecord.lease_expires_at < func.now()
        if own_orphans:
            orphaned = and_(_starts_with(owner.instance_prefix), ~_starts_with(owner.prefix))
            expired = or_(expired, orphaned)
        candidates = (
            select(SagaRecord.id)
            .where(SagaRecord.status.in_(LIVE), expired)
            .order_by(SagaRecord.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed: list[tuple[uuid.UUID, str]] = []
        async with self.sessionmaker.begin() as session:
            ids = list(await session.scalars(candidates))
            for saga_id in ids:
                token = owner.lease_token()
                await session.execute(
                    update(SagaRecord)
                    .where(SagaRecord.id == saga_id)
                    .values(lease_owner=token, lease_expires_at=func.now() + self.lease)
                )
                claimed.append((saga_id, token))
            if ids:
                # The previous owner's unfinished calls: their outcome is unknown; the new run
                # repeats them under the same keys.
                await session.execute(
                    update(StepAttempt)
                    .where(StepAttempt.saga_id.in_(ids), StepAttempt.status == "STARTED")
                    .values(status="INTERRUPTED", finished_at=func.now())
                )
        return claimed

    async def claim_for_retry(self, saga_id: uuid.UUID, owner: Owner, to: Position) -> str | None:
        """An operator's retry of a NEEDS_ATTENTION saga: resume it under a new lease."""
        check_transition(SagaStatus.NEEDS_ATTENTION, to.status)
        token = owner.lease_token()
        async with self.sessionmaker.begin() as session:
            claimed = await session.scalar(
                update(SagaRecord)
                .where(SagaRecord.id == saga_id, SagaRecord.status == SagaStatus.NEEDS_ATTENTION)
                .values(
                    status=to.status,
                    lease_owner=token,
                    lease_expires_at=func.now() + self.lease,
                    updated_at=func.now(),
                    attention=None,
                )
                .returning(SagaRecord.id)
            )
        return token if claimed else None

    async def release_leases(self, owner: Owner) -> None:
        """On a clean shutdown: let any replica (or our restart) take our sagas at once."""
        async with self.sessionmaker.begin() as session:
            await session.execute(
                update(SagaRecord)
                .where(SagaRecord.status.in_(LIVE), _starts_with(owner.prefix))
                .values(lease_expires_at=func.now() - text("interval '1 second'"))
            )
