"""The saga store on PostgreSQL (`sagaengine.store.SagaStore`). Every write is one statement,
atomic on its own (autocommit: no BEGIN, no COMMIT), never open across a remote call, and every
write to a running saga is fenced by its lease token in the statement itself.

The hot path (a saga's run, its start, recovery) is plain SQL through a psycopg connection pool:
each statement below is written once, sent with its parameters, and prepared by the server after
a few uses, with no ORM unit of work, no statement compilation and no result processing beyond
psycopg's own. The admin reads (pages, counts, a saga's attempts) stay on SQLAlchemy: they run
on an operator's request, not once per step.
"""

import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection as PgConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Row

from sagaengine.decisions import Position, check_transition
from sagaengine.definition import (
    FINAL_STATUSES,
    OutcomeEvent,
    Phase,
    RemoteCall,
    SagaDefinition,
    SagaStatus,
    idempotency_key,
)
from sagaengine.schema import SagaRecord
from sagaengine.store import (
    AttemptStatus,
    LeaseLost,
    LiveCount,
    Moved,
    NextAttempt,
    Owner,
    SagaState,
)

# The columns of a saga, in the order state_of_row takes them (the fields' order of SagaState).
SAGA_COLUMNS = """id, type, definition_version, status, phase, step, payload, results, error,
    attention, client_key, request_id, lease_owner, created_at, updated_at, finished_at,
    starting, trace_parent, keys, cancel_reason"""

# A start, in one statement: the saga (unless its client key, or a live saga of its lock key,
# exists already: then nothing), `starting` while its first step decides whether the start
# stands, and the write-ahead of that first call.
CREATE = f"""
    WITH created AS (
        INSERT INTO sagas (id, type, definition_version, status, phase, step, payload, results,
                           client_key, lock_key, request_id, lease_owner, lease_expires_at,
                           starting, trace_parent, keys)
        VALUES (%(id)s, %(type)s, %(version)s, %(status)s, %(phase)s, 0, %(payload)s, '{{}}',
                %(client_key)s, %(lock_key)s, %(request_id)s, %(token)s, now() + %(lease)s,
                %(starting)s, %(trace_parent)s, %(keys)s)
        ON CONFLICT DO NOTHING
        RETURNING {SAGA_COLUMNS}
    ), ahead AS (
        INSERT INTO saga_steps
            (saga_id, step, step_name, phase, attempt, status, idempotency_key, owner, request)
        SELECT created.id, 0, %(first_step_name)s::varchar, %(phase)s::varchar, 1,
               '{AttemptStatus.STARTED}', %(first_key)s::varchar, %(token)s, %(first_request)s
        FROM created WHERE %(first_key)s::varchar IS NOT NULL
        RETURNING id
    )
    SELECT {SAGA_COLUMNS}, (SELECT id FROM ahead) FROM created
"""
# A start refused by its first step: the saga and its attempts go, as if never recorded. Only a
# saga still `starting`, and still this run's.
WITHDRAW = """
    WITH gone AS (
        DELETE FROM sagas WHERE id = %(saga_id)s AND lease_owner = %(token)s AND starting
        RETURNING id
    ), attempts AS (
        DELETE FROM saga_steps WHERE saga_id IN (SELECT id FROM gone)
    )
    SELECT id FROM gone
"""
# A start whose first step did not decide it (no answer yet): the saga stands from now on.
ACCEPT = """
    UPDATE sagas SET starting = false WHERE id = %(saga_id)s AND lease_owner = %(token)s
    RETURNING id
"""
GET = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE id = %s"
BY_CLIENT_KEY = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE type = %s AND client_key = %s"
LIVE_BY_LOCK_KEY = (
    f"SELECT {SAGA_COLUMNS} FROM sagas WHERE lock_key = %s AND status <> 'COMPENSATED'"
)

# Write-ahead of one call, in one statement: renew the lease (fenced by its token) and, only if
# that matched, insert the attempt numbered after the earlier attempts of the same call.
BEGIN_ATTEMPT = f"""
    WITH renewed AS (
        UPDATE sagas SET lease_expires_at = now() + %(lease)s, updated_at = now()
        WHERE id = %(saga_id)s AND lease_owner = %(token)s
        RETURNING id
    )
    INSERT INTO saga_steps
        (saga_id, step, step_name, phase, attempt, status, idempotency_key, owner, request)
    SELECT renewed.id, %(step)s::integer, %(step_name)s, %(phase)s::varchar,
           (SELECT coalesce(max(attempt), 0) + 1 FROM saga_steps
            WHERE saga_id = %(saga_id)s AND step = %(step)s::integer
              AND phase = %(phase)s::varchar),
           '{AttemptStatus.STARTED}', %(key)s, %(token)s, %(request)s
    FROM renewed
    RETURNING id
"""

# Before a write-ahead is tried again after its answer was lost: an earlier try may have committed
# its attempt unseen, and that call never left. Its outcome is marked unknown, as recovery marks
# the calls of a run that died (a later refusal of the step is then not taken at its word).
INTERRUPT_UNSENT = f"""
    UPDATE saga_steps SET status = '{AttemptStatus.INTERRUPTED}', finished_at = now()
    WHERE saga_id = %(saga_id)s AND owner = %(token)s AND status = '{AttemptStatus.STARTED}'
"""

HAD_UNKNOWN_OUTCOME = f"""
    SELECT 1 FROM saga_steps
    WHERE saga_id = %s AND step = %s AND phase = %s
      AND status IN ('{AttemptStatus.FAILED}', '{AttemptStatus.INTERRUPTED}')
    LIMIT 1
"""

# The end of a failed call (before its retry), fenced: the lease is renewed in the same statement.
FINISH_ATTEMPT = """
    WITH renewed AS (
        UPDATE sagas SET lease_expires_at = now() + %(lease)s, updated_at = now()
        WHERE id = %(saga_id)s AND lease_owner = %(token)s
        RETURNING id
    )
    UPDATE saga_steps
    SET status = %(status)s, response = %(response)s, error = %(error)s, finished_at = now()
    WHERE id = %(attempt_id)s AND EXISTS (SELECT 1 FROM renewed)
    RETURNING id
"""

WITHDRAW_ATTEMPT = f"""
    DELETE FROM saga_steps
    WHERE id = %(attempt_id)s AND saga_id = %(saga_id)s AND status = '{AttemptStatus.STARTED}'
      AND EXISTS (SELECT 1 FROM sagas WHERE id = %(saga_id)s AND lease_owner = %(token)s)
"""

# A saga's move, in one statement: the fenced update of its position and, only if that matched,
# the end of the call that led here, the outcome's event (data-modifying CTEs of the move, so
# the event exists if and only if the outcome committed), and the write-ahead of the call the
# saga makes next (so that a step costs one round trip, not two: the call still leaves only once
# its attempt is committed). One text for every move, so that the server prepares it once: what
# a move does not do is passed as NULL or false.
MOVE = f"""
    WITH moved AS (
        UPDATE sagas SET
            status = %(status)s, step = %(step)s, phase = %(phase)s, updated_at = now(),
            attention = %(attention)s, starting = false,
            results = CASE WHEN %(result_step)s::text IS NULL THEN results
                           ELSE results || jsonb_build_object(%(result_step)s::text,
                                                              %(response)s::jsonb) END,
            error = coalesce(%(error)s, error),
            keys = coalesce(%(keys)s, keys),
            lease_owner = CASE WHEN %(release)s THEN NULL ELSE lease_owner END,
            lease_expires_at = CASE WHEN %(release)s THEN NULL ELSE now() + %(lease)s END,
            finished_at = CASE WHEN %(final)s THEN now() ELSE finished_at END
        WHERE id = %(saga_id)s AND lease_owner = %(token)s AND status = %(from_status)s
        RETURNING id, cancel_reason
    ), finished AS (
        UPDATE saga_steps
        SET status = '{AttemptStatus.SUCCEEDED}', response = %(response)s, finished_at = now()
        WHERE id = %(attempt_id)s AND EXISTS (SELECT 1 FROM moved)
        RETURNING id
    ), event AS (
        INSERT INTO outbox (event_id, saga_id, aggregate_id, type, payload)
        SELECT %(event_id)s, moved.id, %(aggregate_id)s, %(event_type)s, %(event_payload)s
        FROM moved WHERE %(event_id)s::uuid IS NOT NULL
        RETURNING id
    ), ahead AS (
        INSERT INTO saga_steps
            (saga_id, step, step_name, phase, attempt, status, idempotency_key, owner, request)
        SELECT moved.id, %(next_step)s::integer, %(next_step_name)s::varchar,
               %(next_phase)s::varchar,
               (SELECT coalesce(max(attempt), 0) + 1 FROM saga_steps
                WHERE saga_id = %(saga_id)s AND step = %(next_step)s::integer
                  AND phase = %(next_phase)s::varchar),
               '{AttemptStatus.STARTED}', %(next_key)s::varchar, %(token)s, %(next_request)s
        FROM moved WHERE %(next_key)s::varchar IS NOT NULL
        RETURNING id
    )
    SELECT moved.id, (SELECT id FROM ahead), moved.cancel_reason FROM moved
"""
STANDS_AT = "SELECT status, step, phase, lease_owner, cancel_reason FROM sagas WHERE id = %s"
# An operator's cancellation (SagaStore.request_cancel): only of a saga that may still go back.
REQUEST_CANCEL = f"""
    UPDATE sagas SET cancel_reason = %(reason)s, updated_at = now()
    WHERE id = %(saga_id)s AND cancel_reason IS NULL AND NOT starting AND step < %(before)s
      AND ((status = 'RUNNING' AND phase = 'action') OR status = 'NEEDS_ATTENTION')
    RETURNING {SAGA_COLUMNS}
"""

# Recovery, in one statement: take over unfinished sagas whose lease expired (or, at start, the
# ones an earlier incarnation of this same instance left behind), skipping rows another replica
# is claiming; each gets a token of its own; the previous owner's unfinished calls are marked
# INTERRUPTED (their outcome is unknown: the new run repeats them under the same keys).
CLAIM_EXPIRED = f"""
    WITH candidates AS (
        SELECT id FROM sagas
        WHERE status IN ('RUNNING', 'COMPENSATING')
          AND (lease_expires_at < now()
               OR (%(own_orphans)s AND left(lease_owner, %(instance_length)s) = %(instance)s
                   AND left(lease_owner, %(prefix_length)s) <> %(prefix)s))
        ORDER BY lease_expires_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE sagas SET lease_owner = %(prefix)s || substr(md5(random()::text || id::text), 1, 12),
                         lease_expires_at = now() + %(lease)s
        WHERE id IN (SELECT id FROM candidates)
        RETURNING id, lease_owner
    ), interrupted AS (
        UPDATE saga_steps SET status = '{AttemptStatus.INTERRUPTED}', finished_at = now()
        WHERE saga_id IN (SELECT id FROM claimed) AND status = '{AttemptStatus.STARTED}'
    )
    SELECT id, lease_owner FROM claimed
"""
CLAIM_FOR_RETRY = """
    UPDATE sagas SET status = %(status)s, lease_owner = %(token)s,
                     lease_expires_at = now() + %(lease)s, updated_at = now(), attention = NULL
    WHERE id = %(saga_id)s AND status = 'NEEDS_ATTENTION'
    RETURNING id
"""
# Through the index on (status, created_at): as many rows as sagas not final, whatever the history.
LIVE_COUNTS = """
    SELECT type, status, count(*), min(created_at) FROM sagas
    WHERE status IN ('RUNNING', 'COMPENSATING', 'NEEDS_ATTENTION')
    GROUP BY type, status
"""
RELEASE_LEASES = """
    UPDATE sagas SET lease_expires_at = now() - interval '1 second'
    WHERE status IN ('RUNNING', 'COMPENSATING') AND left(lease_owner, %(length)s) = %(prefix)s
"""


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def state_of_row(row: tuple[Any, ...]) -> SagaState:
    """From the columns of SAGA_COLUMNS, in their order (the fields' order)."""
    return SagaState(*row[:3], SagaStatus(row[3]), Phase(row[4]), *row[5:])  # type: ignore[call-arg]


def state_of_record(row: SagaRecord | Row[Any]) -> SagaState:
    """From a row of the admin's reads (SQLAlchemy)."""
    return SagaState(
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
        starting=row.starting,
        trace_parent=row.trace_parent,
        keys=row.keys,
        cancel_reason=row.cancel_reason,
    )


# Sees every statement of the hot path before it is sent (tools/bench_scale.py explains them).
StatementHook = Callable[[str, Mapping[str, Any] | tuple[Any, ...] | None], None]


class PlainSql:
    """Statements on a pool of autocommit connections, each shown to `statement_hook` first."""

    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool
        self.statement_hook: StatementHook | None = None

    async def execute(self, conn: PgConnection, sql: str, params: Any = None) -> Any:
        if self.statement_hook is not None:
            self.statement_hook(sql, params)
        return await conn.execute(sql, params)

    async def one(self, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        async with self.pool.connection() as conn:
            row: tuple[Any, ...] | None = await (await self.execute(conn, sql, params)).fetchone()
            return row

    async def all(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            rows: list[tuple[Any, ...]] = await (await self.execute(conn, sql, params)).fetchall()
            return rows


class PostgresSagaStore:
    """The saga store (`sagaengine.store.SagaStore`) on a pool of autocommit connections: each
    method sends the one statement above that does it."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        lease_seconds: float,
    ):
        self.sql = PlainSql(pool)  # the hot path
        self.lease = timedelta(seconds=lease_seconds)

    async def _saga(self, sql: str, params: Any) -> SagaState | None:
        row = await self.sql.one(sql, params)
        return state_of_row(row) if row is not None else None

    # -- starting ------------------------------------------------------------------------------

    async def create(
        self,
        definition: SagaDefinition[Any],
        payload: dict[str, Any],
        client_key: str | None,
        lock_key: str,
        lease_token: str,
        request_id: str | None = None,
        *,
        saga_id: uuid.UUID | None = None,
        first: RemoteCall | None = None,
        trace_parent: str | None = None,
        keys: dict[str, Any] | None = None,
    ) -> SagaState | None:
        """The saga and, with `first`, its first call's attempt, in one statement (CREATE)."""
        step = definition.steps[0]
        params = dict(
            id=saga_id or uuid.uuid4(),
            type=definition.name,
            version=definition.version,
            status=SagaStatus.RUNNING,
            phase=str(Phase.ACTION),
            payload=Jsonb(payload),
            client_key=client_key,
            lock_key=lock_key,
            request_id=request_id,
            token=lease_token,
            lease=self.lease,
            starting=first is not None,
            first_step_name=step.name,
            first_key=None,
            first_request=None,
            trace_parent=trace_parent,
            keys=Jsonb(keys or {}),
        )
        if first is not None:
            params["first_key"] = idempotency_key(str(params["id"]), step, Phase.ACTION)
            params["first_request"] = Jsonb(asdict(first))
        row = await self.sql.one(CREATE, params)
        if row is None:
            return None
        return replace(state_of_row(row[:-1]), first_attempt=row[-1])

    async def withdraw(self, saga_id: uuid.UUID, token: str) -> bool:
        """Remove a saga whose start its first step refused (WITHDRAW): whether it went."""
        return await self.sql.one(WITHDRAW, {"saga_id": saga_id, "token": token}) is not None

    async def accept(self, saga_id: uuid.UUID, token: str) -> None:
        """A saga whose first step did not decide its start: it stands (ACCEPT)."""
        if await self.sql.one(ACCEPT, {"saga_id": saga_id, "token": token}) is None:
            raise LeaseLost(f"saga {saga_id} is no longer leased to {token}")

    async def find_by_client_key(self, saga_type: str, client_key: str) -> SagaState | None:
        return await self._saga(BY_CLIENT_KEY, (saga_type, client_key))

    async def find_live_by_lock_key(self, lock_key: str) -> SagaState | None:
        return await self._saga(LIVE_BY_LOCK_KEY, (lock_key,))

    # -- reading -------------------------------------------------------------------------------

    async def get(self, saga_id: uuid.UUID) -> SagaState | None:
        return await self._saga(GET, (saga_id,))

    # -- running (fenced by the lease token) ---------------------------------------------------

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
        params = {
            "lease": self.lease,
            "saga_id": saga_id,
            "token": token,
            "step": step_index,
            "step_name": step_name,
            "phase": str(phase),
            "key": key,
            "request": Jsonb(asdict(call)),
        }
        async with self.sql.pool.connection() as conn:
            if again:
                await self.sql.execute(conn, INTERRUPT_UNSENT, params)
            row = await (await self.sql.execute(conn, BEGIN_ATTEMPT, params)).fetchone()
        if row is None:
            raise LeaseLost(f"saga {saga_id} is no longer leased to {token}")
        attempt_id: int = row[0]
        return attempt_id

    async def had_unknown_outcome(self, saga_id: uuid.UUID, step_index: int, phase: Phase) -> bool:
        """Whether an attempt of this call ended without an answer (a transient fault, or a run
        that died mid-call): it may have applied whatever a later attempt was told."""
        found = await self.sql.one(HAD_UNKNOWN_OUTCOME, (saga_id, step_index, str(phase)))
        return found is not None

    async def finish_attempt(
        self,
        saga_id: uuid.UUID,
        token: str,
        attempt_id: int,
        status: AttemptStatus,
        *,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        params = {
            "lease": self.lease,
            "saga_id": saga_id,
            "token": token,
            "attempt_id": attempt_id,
            "status": str(status),
            "response": _json(response),
            "error": _json(error),
        }
        if await self.sql.one(FINISH_ATTEMPT, params) is None:
            raise LeaseLost(f"saga {saga_id} is no longer leased to {token}")

    async def withdraw_attempt(self, saga_id: uuid.UUID, token: str, attempt_id: int) -> None:
        params = {"saga_id": saga_id, "token": token, "attempt_id": attempt_id}
        async with self.sql.pool.connection() as conn:
            await self.sql.execute(conn, WITHDRAW_ATTEMPT, params)

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
        finished_attempt: tuple[int, AttemptStatus, dict[str, Any] | None] | None = None,
        ahead: NextAttempt | None = None,
        again: bool = False,
        keys: dict[str, Any] | None = None,
    ) -> Moved:
        """The move, with the end of the call that led here, the outcome's event and the next
        call's write-ahead, in one statement (MOVE); on a try `again` that matched nothing, a
        read of where the saga stands (STANDS_AT)."""
        check_transition(state.status, to.status)
        final = to.status in FINAL_STATUSES
        result_step = result[0] if result is not None else None
        attempt_id, _, response = finished_attempt or (None, None, None)
        if result is not None and finished_attempt is None:
            response = result[1]
        params = {
            "saga_id": state.id,
            "token": token,
            "from_status": str(state.status),
            "status": str(to.status),
            "step": to.step,
            "phase": str(to.phase),
            "attention": _json(attention),
            "result_step": result_step,
            "response": _json(response),
            "error": _json(error),
            "keys": _json(keys),
            "release": final or to.status is SagaStatus.NEEDS_ATTENTION,
            "final": final,
            "lease": self.lease,
            "attempt_id": attempt_id,
            "event_id": uuid.uuid4() if event is not None else None,
            "aggregate_id": event.aggregate_id if event is not None else None,
            "event_type": event.type if event is not None else None,
            "event_payload": Jsonb(event.payload) if event is not None else None,
            # Not on a try again: that one's answer may be lost with a move that was made.
            "next_step": ahead.step if ahead and not again else None,
            "next_step_name": ahead.step_name if ahead and not again else None,
            "next_phase": str(ahead.phase) if ahead and not again else None,
            "next_key": ahead.key if ahead and not again else None,
            "next_request": Jsonb(asdict(ahead.call)) if ahead and not again else None,
        }
        async with self.sql.pool.connection() as conn:
            row = await (await self.sql.execute(conn, MOVE, params)).fetchone()
            if row is not None:
                return Moved(ahead=row[1], cancel_reason=row[2])
            if again:
                stands = await self._stands_at(conn, state.id, token, to)
                if stands is not None:
                    return stands
        raise LeaseLost(f"saga {state.id} is no longer leased to {token}")

    async def _stands_at(
        self, conn: PgConnection, saga_id: uuid.UUID, token: str, to: Position
    ) -> Moved | None:
        """The move as made, if the saga stands where it leads and is still this run's."""
        row = await (await self.sql.execute(conn, STANDS_AT, (saga_id,))).fetchone()
        if row is None or tuple(row[:3]) != (to.status, to.step, to.phase):
            return None
        released = to.status in FINAL_STATUSES or to.status is SagaStatus.NEEDS_ATTENTION
        if row[3] == token or (released and row[3] is None):
            return Moved(ahead=None, cancel_reason=row[4])
        return None

    async def request_cancel(
        self, saga_id: uuid.UUID, reason: str, before_step: int
    ) -> SagaState | None:
        params = {"saga_id": saga_id, "reason": reason, "before": before_step}
        return await self._saga(REQUEST_CANCEL, params)

    # -- recovery ------------------------------------------------------------------------------

    async def claim_expired(
        self, owner: Owner, limit: int, *, own_orphans: bool = False
    ) -> list[tuple[uuid.UUID, str]]:
        """Take over unfinished sagas whose lease expired (or, at start, the ones an earlier
        incarnation of this same instance left behind), skipping rows another replica is
        claiming (CLAIM_EXPIRED)."""
        params = {
            "own_orphans": own_orphans,
            "instance": owner.instance_prefix,
            "instance_length": len(owner.instance_prefix),
            "prefix": owner.prefix,
            "prefix_length": len(owner.prefix),
            "limit": limit,
            "lease": self.lease,
        }
        async with self.sql.pool.connection() as conn:
            rows = await (await self.sql.execute(conn, CLAIM_EXPIRED, params)).fetchall()
        return [(row[0], row[1]) for row in rows]

    async def claim_for_retry(self, saga_id: uuid.UUID, owner: Owner, to: Position) -> str | None:
        """An operator's retry of a NEEDS_ATTENTION saga: resume it under a new lease."""
        check_transition(SagaStatus.NEEDS_ATTENTION, to.status)
        token = owner.lease_token()
        params = {"status": str(to.status), "token": token, "lease": self.lease, "saga_id": saga_id}
        return token if await self.sql.one(CLAIM_FOR_RETRY, params) is not None else None

    async def live_counts(self) -> list[LiveCount]:
        rows = await self.sql.all(LIVE_COUNTS)
        return [LiveCount(kind, SagaStatus(status), n, oldest) for kind, status, n, oldest in rows]

    async def release_leases(self, owner: Owner) -> None:
        """On a clean shutdown: let any replica (or our restart) take our sagas at once."""
        async with self.sql.pool.connection() as conn:
            params = {"length": len(owner.prefix), "prefix": owner.prefix}
            await self.sql.execute(conn, RELEASE_LEASES, params)
