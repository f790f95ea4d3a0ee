"""The saga store in memory (`sagaengine.store.SagaStore`), for tests of the runner without a
database: the promises of `sagaengine.postgres.PostgresSagaStore`, statement by statement, kept
by plain Python, with a clock a test can move (a lease expires when the clock says so).

Each method runs to its end without awaiting anything, so on one event loop it is atomic as a
statement is; and it checks everything it can fail on before it changes anything. What it keeps
goes through JSON, as the database's JSONB columns do: a caller never shares a dict with it.
Nothing is shared between two instances and nothing survives the process: not for production.
"""

import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sagaengine.decisions import Position, check_transition
from sagaengine.definition import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    OutcomeEvent,
    Phase,
    RemoteCall,
    SagaDefinition,
    SagaStatus,
    idempotency_key,
)
from sagaengine.store import (
    AttemptStatus,
    LeaseLost,
    LiveCount,
    Moved,
    NextAttempt,
    OutboxStatus,
    Owner,
    SagaState,
)

Clock = Callable[[], datetime]


def _json(value: Any) -> Any:
    """A copy of `value` as a JSONB column would give it back (what JSON cannot hold fails)."""
    return None if value is None else json.loads(json.dumps(value))


@dataclass
class StoredAttempt:
    """One call of one step (a row of `saga_steps`)."""

    id: int
    saga_id: uuid.UUID
    step: int
    step_name: str
    phase: Phase
    attempt: int
    status: AttemptStatus
    idempotency_key: str
    owner: str
    request: dict[str, Any]
    started_at: datetime
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    finished_at: datetime | None = None


@dataclass
class StoredEvent:
    """An outcome's event (a row of `outbox`). Nothing delivers it here: a test reads it."""

    id: int
    event_id: uuid.UUID
    saga_id: uuid.UUID
    aggregate_id: str
    type: str
    payload: dict[str, Any]
    occurred_at: datetime
    status: OutboxStatus = OutboxStatus.PENDING


@dataclass
class _Saga:
    state: SagaState  # as stored: handed out only as a copy (`_snapshot`)
    lock_key: str
    lease_expires_at: datetime | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class InMemorySagaStore:
    """The saga store in memory. `attempts` and `outbox` are every attempt and every event, in
    the order they were written, for a test to read."""

    def __init__(self, lease_seconds: float, clock: Clock = _utc_now):
        self.lease = timedelta(seconds=lease_seconds)
        self.clock = clock
        self.attempts: list[StoredAttempt] = []
        self.outbox: list[StoredEvent] = []
        self._sagas: dict[uuid.UUID, _Saga] = {}
        self._attempt_ids = itertools.count(1)  # as BIGSERIAL columns give them
        self._event_ids = itertools.count(1)

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
        saga_id = saga_id or uuid.uuid4()
        stored_payload = _json(payload)
        request = _json(asdict(first)) if first is not None else None
        if saga_id in self._sagas or self._taken(definition.name, client_key, lock_key):
            return None  # as ON CONFLICT DO NOTHING
        now = self.clock()
        state = SagaState(
            id=saga_id,
            type=definition.name,
            version=definition.version,
            status=SagaStatus.RUNNING,
            phase=Phase.ACTION,
            step=0,
            payload=stored_payload,
            results={},
            error=None,
            attention=None,
            client_key=client_key,
            request_id=request_id,
            lease_owner=lease_token,
            created_at=now,
            updated_at=now,
            finished_at=None,
            starting=first is not None,
            trace_parent=trace_parent,
            keys=_json(keys or {}),
        )
        self._sagas[saga_id] = _Saga(state, lock_key, now + self.lease)
        if request is None:
            return self._snapshot(saga_id)
        step = definition.steps[0]
        key = idempotency_key(str(saga_id), step, Phase.ACTION)
        attempt = self._write_ahead(saga_id, lease_token, 0, step.name, Phase.ACTION, key, request)
        return replace(self._snapshot(saga_id), first_attempt=attempt)

    def _taken(self, saga_type: str, client_key: str | None, lock_key: str) -> bool:
        """The unique keys of `sagas`: (type, client key), and the lock key of a live saga."""
        return any(
            (
                client_key is not None
                and (s.state.type, s.state.client_key) == (saga_type, client_key)
            )
            or (s.lock_key == lock_key and s.state.status is not SagaStatus.COMPENSATED)
            for s in self._sagas.values()
        )

    async def withdraw(self, saga_id: uuid.UUID, token: str) -> bool:
        saga = self._sagas.get(saga_id)
        if saga is None or saga.state.lease_owner != token or not saga.state.starting:
            return False
        del self._sagas[saga_id]
        self.attempts = [a for a in self.attempts if a.saga_id != saga_id]
        return True

    async def accept(self, saga_id: uuid.UUID, token: str) -> None:
        saga = self._leased(saga_id, token)
        saga.state = replace(saga.state, starting=False)

    async def find_by_client_key(self, saga_type: str, client_key: str) -> SagaState | None:
        for saga_id, saga in self._sagas.items():
            if (saga.state.type, saga.state.client_key) == (saga_type, client_key):
                return self._snapshot(saga_id)
        return None

    async def find_live_by_lock_key(self, lock_key: str) -> SagaState | None:
        for saga_id, saga in self._sagas.items():
            if saga.lock_key == lock_key and saga.state.status is not SagaStatus.COMPENSATED:
                return self._snapshot(saga_id)
        return None

    # -- reading -------------------------------------------------------------------------------

    async def get(self, saga_id: uuid.UUID) -> SagaState | None:
        return self._snapshot(saga_id) if saga_id in self._sagas else None

    def _snapshot(self, saga_id: uuid.UUID) -> SagaState:
        state = self._sagas[saga_id].state
        return replace(
            state,
            payload=_json(state.payload),
            results=_json(state.results),
            error=_json(state.error),
            attention=_json(state.attention),
        )

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
        request = _json(asdict(call))
        if again:  # not fenced: it touches this run's own attempts only
            self._interrupt(saga_id, owner=token)
        saga = self._leased(saga_id, token)
        self._renew(saga)
        return self._write_ahead(saga_id, token, step_index, step_name, phase, key, request)

    async def had_unknown_outcome(self, saga_id: uuid.UUID, step_index: int, phase: Phase) -> bool:
        unknown = (AttemptStatus.FAILED, AttemptStatus.INTERRUPTED)
        return any(
            (a.saga_id, a.step, a.phase) == (saga_id, step_index, phase) and a.status in unknown
            for a in self.attempts
        )

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
        response, error = _json(response), _json(error)
        saga = self._leased(saga_id, token)
        self._renew(saga)
        attempt = self._attempt(attempt_id)
        if attempt is None:  # as the statement, which then returns nothing
            raise LeaseLost(f"saga {saga_id}: no attempt {attempt_id} to finish")
        attempt.status = AttemptStatus(status)
        attempt.response, attempt.error, attempt.finished_at = response, error, self.clock()

    async def withdraw_attempt(self, saga_id: uuid.UUID, token: str, attempt_id: int) -> None:
        saga = self._sagas.get(saga_id)
        if saga is None or saga.state.lease_owner != token:
            return
        self.attempts = [
            a
            for a in self.attempts
            if not (
                a.id == attempt_id and a.saga_id == saga_id and a.status is AttemptStatus.STARTED
            )
        ]

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
        check_transition(state.status, to.status)
        final = to.status in FINAL_STATUSES
        release = final or to.status is SagaStatus.NEEDS_ATTENTION
        attempt_id, _, response = finished_attempt or (None, None, None)
        if result is not None and finished_attempt is None:
            response = result[1]
        response, error, attention = _json(response), _json(error), _json(attention)
        event_payload = _json(event.payload) if event is not None else None
        # Not on a try again: that one's answer may be lost with a move that was made.
        ahead = None if again else ahead
        request = _json(asdict(ahead.call)) if ahead is not None else None
        saga = self._sagas.get(state.id)
        if saga is None or saga.state.lease_owner != token or saga.state.status != state.status:
            if again and saga is not None and self._stands_at(saga, token, to, released=release):
                return Moved(ahead=None, cancel_reason=saga.state.cancel_reason)
            raise LeaseLost(f"saga {state.id} is no longer leased to {token}")
        now = self.clock()
        results = saga.state.results
        if result is not None:
            results = {**results, result[0]: response}
        saga.state = replace(
            saga.state,
            status=to.status,
            step=to.step,
            phase=to.phase,
            updated_at=now,
            attention=attention,
            starting=False,
            results=results,
            error=error if error is not None else saga.state.error,
            keys=_json(keys) if keys is not None else saga.state.keys,
            lease_owner=None if release else saga.state.lease_owner,
            finished_at=now if final else saga.state.finished_at,
        )
        saga.lease_expires_at = None if release else now + self.lease
        finished = self._attempt(attempt_id) if attempt_id is not None else None
        if finished is not None:
            finished.status = AttemptStatus.SUCCEEDED
            finished.response, finished.finished_at = response, now
        if event is not None:
            self.outbox.append(
                StoredEvent(
                    id=next(self._event_ids),
                    event_id=uuid.uuid4(),
                    saga_id=state.id,
                    aggregate_id=event.aggregate_id,
                    type=event.type,
                    payload=event.payload if event_payload is None else event_payload,
                    occurred_at=now,
                )
            )
        cancel_reason = saga.state.cancel_reason
        if ahead is None:
            return Moved(ahead=None, cancel_reason=cancel_reason)
        attempt = self._write_ahead(
            state.id, token, ahead.step, ahead.step_name, ahead.phase, ahead.key, request or {}
        )
        return Moved(ahead=attempt, cancel_reason=cancel_reason)

    @staticmethod
    def _stands_at(saga: _Saga | None, token: str, to: Position, *, released: bool) -> bool:
        """Whether a move tried again was made by its first try (see SagaStore.move)."""
        if saga is None or saga.state.position != to:
            return False
        owner = saga.state.lease_owner
        return owner == token or (released and owner is None)

    # -- recovery ------------------------------------------------------------------------------

    async def claim_expired(
        self, owner: Owner, limit: int, *, own_orphans: bool = False
    ) -> list[tuple[uuid.UUID, str]]:
        now = self.clock()

        def claimable(saga: _Saga) -> bool:
            if saga.state.status not in LIVE_STATUSES:
                return False
            if saga.lease_expires_at is not None and saga.lease_expires_at < now:
                return True
            leased_to = saga.state.lease_owner or ""
            return (
                own_orphans
                and leased_to.startswith(owner.instance_prefix)
                and not leased_to.startswith(owner.prefix)
            )

        candidates = sorted(
            (saga for saga in self._sagas.values() if claimable(saga)),
            # ORDER BY lease_expires_at: the longest expired first, no expiry last
            key=lambda saga: (saga.lease_expires_at is None, saga.lease_expires_at or now),
        )
        claimed = []
        for saga in candidates[: max(limit, 0)]:
            token = owner.lease_token()
            saga.state = replace(saga.state, lease_owner=token)
            saga.lease_expires_at = now + self.lease
            self._interrupt(saga.state.id)
            claimed.append((saga.state.id, token))
        return claimed

    async def claim_for_retry(self, saga_id: uuid.UUID, owner: Owner, to: Position) -> str | None:
        check_transition(SagaStatus.NEEDS_ATTENTION, to.status)
        token = owner.lease_token()
        saga = self._sagas.get(saga_id)
        if saga is None or saga.state.status is not SagaStatus.NEEDS_ATTENTION:
            return None
        now = self.clock()
        saga.state = replace(
            saga.state, status=to.status, lease_owner=token, updated_at=now, attention=None
        )
        saga.lease_expires_at = now + self.lease
        return token

    async def live_counts(self) -> list[LiveCount]:
        groups: dict[tuple[str, SagaStatus], list[datetime]] = {}
        for saga in self._sagas.values():
            state = saga.state
            if state.status in (*LIVE_STATUSES, SagaStatus.NEEDS_ATTENTION):
                groups.setdefault((state.type, state.status), []).append(state.created_at)
        return [
            LiveCount(kind, status, len(started), min(started))
            for (kind, status), started in groups.items()
        ]

    async def request_cancel(
        self, saga_id: uuid.UUID, reason: str, before_step: int
    ) -> SagaState | None:
        saga = self._sagas.get(saga_id)
        if saga is None:
            return None
        state = saga.state
        going_forward = state.status is SagaStatus.RUNNING and state.phase is Phase.ACTION
        stuck = state.status is SagaStatus.NEEDS_ATTENTION
        if (
            state.cancel_reason is not None
            or state.starting
            or state.step >= before_step
            or not (going_forward or stuck)
        ):
            return None
        saga.state = replace(state, cancel_reason=reason, updated_at=self.clock())
        return self._snapshot(saga_id)

    async def release_leases(self, owner: Owner) -> None:
        expired = self.clock() - timedelta(seconds=1)
        for saga in self._sagas.values():
            leased_to = saga.state.lease_owner or ""
            if saga.state.status in LIVE_STATUSES and leased_to.startswith(owner.prefix):
                saga.lease_expires_at = expired

    # -- the rows ------------------------------------------------------------------------------

    def _leased(self, saga_id: uuid.UUID, token: str) -> _Saga:
        saga = self._sagas.get(saga_id)
        if saga is None or saga.state.lease_owner != token:
            raise LeaseLost(f"saga {saga_id} is no longer leased to {token}")
        return saga

    def _renew(self, saga: _Saga) -> None:
        now = self.clock()
        saga.lease_expires_at = now + self.lease
        saga.state = replace(saga.state, updated_at=now)

    def _attempt(self, attempt_id: int) -> StoredAttempt | None:
        return next((a for a in self.attempts if a.id == attempt_id), None)

    def _write_ahead(
        self,
        saga_id: uuid.UUID,
        token: str,
        step: int,
        step_name: str,
        phase: Phase,
        key: str,
        request: dict[str, Any],
    ) -> int:
        """A STARTED attempt, numbered after the earlier ones of the same step and phase."""
        earlier = (
            a.attempt
            for a in self.attempts
            if (a.saga_id, a.step, a.phase) == (saga_id, step, phase)
        )
        attempt = StoredAttempt(
            id=next(self._attempt_ids),
            saga_id=saga_id,
            step=step,
            step_name=step_name,
            phase=Phase(phase),
            attempt=max(earlier, default=0) + 1,
            status=AttemptStatus.STARTED,
            idempotency_key=key,
            owner=token,
            request=request,
            started_at=self.clock(),
        )
        self.attempts.append(attempt)
        return attempt.id

    def _interrupt(self, saga_id: uuid.UUID, *, owner: str | None = None) -> None:
        """The saga's STARTED attempts (of `owner` only, if given) become INTERRUPTED."""
        now = self.clock()
        for attempt in self.attempts:
            if (
                attempt.saga_id == saga_id
                and attempt.status is AttemptStatus.STARTED
                and owner in (None, attempt.owner)
            ):
                attempt.status, attempt.finished_at = AttemptStatus.INTERRUPTED, now
