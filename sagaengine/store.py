"""The port through which the engine persists sagas: `SagaStore`, and the values it speaks.

Two stores implement it: `sagaengine.postgres.PostgresSagaStore` (the real one) and
`sagaengine.memory.InMemorySagaStore` (for tests of the runner without a database). Both pass
the same contract tests (tests/contract/test_saga_store.py). What every store promises:

- Each method is atomic on its own, and none is ever open across a remote call.
- A saga is run by whoever holds its lease token. Every write to a running saga is fenced by
  that token: a run whose lease was taken over (it expired, and recovery claimed the saga)
  gets `LeaseLost` and must stop without writing.
- A lease lasts `lease` after each write of its run; once expired, `claim_expired` hands the
  saga to another run, and that run's first call repeats, under the same key, any call whose
  end was never recorded (its attempt is INTERRUPTED: its outcome is unknown).
- A client key names one saga of its type, forever; a lock key, one saga that is not
  COMPENSATED.
- A final move writes its outcome's event to the outbox with it: the event exists if and only
  if the move was made.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sagaengine.decisions import Position
from sagaengine.definition import (
    FINAL_STATUSES,
    OutcomeEvent,
    Phase,
    RemoteCall,
    SagaDefinition,
    SagaStatus,
)


class AttemptStatus(StrEnum):
    """Where one call of a step stands (`saga_steps.status`)."""

    STARTED = "STARTED"  # written ahead: the call may have left, its answer is not recorded
    SUCCEEDED = "SUCCEEDED"
    REFUSED = "REFUSED"  # a business refusal
    FAILED = "FAILED"  # a transient fault: its outcome is unknown
    INTERRUPTED = "INTERRUPTED"  # its run died (or its write-ahead was tried again) mid-call


class OutboxStatus(StrEnum):
    """Where one outbox event stands (`outbox.status`)."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"


@dataclass(frozen=True)
class NextAttempt:
    """The call a saga makes after a move, written ahead by that move."""

    step: int
    step_name: str
    phase: Phase
    key: str
    call: RemoteCall


@dataclass(frozen=True)
class LiveCount:
    """How many sagas of a type stand in a status that is not final, and since when the oldest
    of them was started."""

    type: str
    status: SagaStatus
    count: int
    oldest: datetime


@dataclass(frozen=True)
class Moved:
    """What a move tells its run: the attempt it wrote ahead for the next call, and whether an
    operator cancelled the saga meanwhile (then that call must not be made)."""

    ahead: int | None = None
    cancel_reason: str | None = None


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
    starting: bool = False  # its first step may still refuse the start (SagaStore.create)
    trace_parent: str | None = None  # the trace it belongs to (sagaengine/tracing.py)
    # Its business keys (order id, user id...: `SagaDefinition.keys`), as an operator finds it.
    keys: dict[str, Any] = field(default_factory=dict)
    # An operator cancelled it (why): it starts no action any more, and compensates.
    cancel_reason: str | None = None
    # As `create` returns it: the attempt it wrote ahead for the first call (not stored).
    first_attempt: int | None = None

    @property
    def position(self) -> Position:
        return Position(self.status, self.step, self.phase)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


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


class SagaStore(Protocol):
    """What the runner and the start of a saga need of persistence (see the module's promises).
    `token` is always the lease token of the run that writes."""

    lease: timedelta  # how long a run's lease lasts after each of its writes

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
        """Record a saga RUNNING at its first step, leased to `lease_token`; None if a saga of
        this type with this client key, or a live one (not COMPENSATED) with this lock key,
        exists already. With `first` (the call of its first step), the saga is `starting` and
        that call is written ahead: its attempt is `first_attempt`. `trace_parent`: the trace
        its runs go on in; `keys`: its business keys, as known at its start."""
        ...

    async def withdraw(self, saga_id: uuid.UUID, token: str) -> bool:
        """Remove a saga still `starting` and still this run's, with its attempts, as if never
        recorded (its first step refused the start): whether it went."""
        ...

    async def accept(self, saga_id: uuid.UUID, token: str) -> None:
        """A saga whose first step did not decide its start: it stands (no longer `starting`).
        Raises LeaseLost if it is not this run's."""
        ...

    async def find_by_client_key(self, saga_type: str, client_key: str) -> SagaState | None: ...

    async def find_live_by_lock_key(self, lock_key: str) -> SagaState | None:
        """The saga of this lock key that is not COMPENSATED, if any."""
        ...

    # -- reading -------------------------------------------------------------------------------

    async def get(self, saga_id: uuid.UUID) -> SagaState | None: ...

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
        """Write-ahead: record a STARTED attempt of this call (numbered after the earlier ones of
        the same step and phase) before the call leaves, and renew the lease; its id. `again`:
        an earlier try may have recorded one whose answer was lost, and whose call never left:
        this run's STARTED attempts of the saga become INTERRUPTED first."""
        ...

    async def had_unknown_outcome(self, saga_id: uuid.UUID, step_index: int, phase: Phase) -> bool:
        """Whether an attempt of this call ended without an answer (FAILED or INTERRUPTED): it
        may have applied whatever a later attempt was told."""
        ...

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
        """Record the end of an attempt (a failed one, before its retry), and renew the lease."""
        ...

    async def withdraw_attempt(self, saga_id: uuid.UUID, token: str, attempt_id: int) -> None:
        """Remove an attempt written ahead whose call was never sent (its run is handing the
        saga over): the next run makes that call afresh, not as one of unknown outcome. Does
        nothing to an attempt no longer STARTED, or a saga leased to another run."""
        ...

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
        """Move a saga standing at `state.status` to `to`, all at once or not at all:

        - `to` must be a legal transition (IllegalSagaTransition, before anything is written);
        - the saga must still be this run's and stand at `state.status`, else LeaseLost;
        - `result` (step name, response) adds an action's answer to the saga's results (the
          response of `finished_attempt`, if given); `error` replaces the saga's error (None
          keeps it); `attention` is set (None clears it); `keys` replace its business keys
          (None keeps them);
        - `finished_attempt` (attempt id, SUCCEEDED, response) records the end of the call that
          led here;
        - a final move records the finish, and writes `event` to the outbox; a final or
          NEEDS_ATTENTION saga gives up its lease, any other has it renewed;
        - `ahead` is written ahead as the next call's attempt, whose id is returned
          (`Moved.ahead`), with the saga's `cancel_reason` as the move leaves it.

        `again`: an earlier try of this same move may have committed unseen. If this one then
        matches nothing, the saga is read: standing where the move leads, and still this run's
        (or released, as a final or stuck saga is), the move was made (nothing is written
        ahead: `Moved.ahead` is None); otherwise the lease is lost."""
        ...

    async def request_cancel(
        self, saga_id: uuid.UUID, reason: str, before_step: int
    ) -> SagaState | None:
        """An operator's cancellation: record `reason` on a saga that is RUNNING forward (not
        starting) or NEEDS_ATTENTION, at a step before `before_step` (its pivot), and not
        cancelled already; the saga as it then stands, or None if it was not such a saga. Its
        lease is untouched: the run that holds it learns of the cancellation with its next
        move (`Moved.cancel_reason`) or read of the saga."""
        ...

    # -- recovery ------------------------------------------------------------------------------

    async def claim_expired(
        self, owner: Owner, limit: int, *, own_orphans: bool = False
    ) -> list[tuple[uuid.UUID, str]]:
        """Take over up to `limit` RUNNING or COMPENSATING sagas whose lease expired (with
        `own_orphans`, at start, also the ones an earlier incarnation of this same instance left
        behind), the longest expired first, each under a new token of `owner`; their STARTED
        attempts become INTERRUPTED. (saga id, token) of each."""
        ...

    async def claim_for_retry(self, saga_id: uuid.UUID, owner: Owner, to: Position) -> str | None:
        """An operator's retry of a NEEDS_ATTENTION saga: it takes `to.status` (a legal move
        from NEEDS_ATTENTION, else IllegalSagaTransition) at the same step, its attention
        cleared, under a new lease of `owner`; that token, or None if it was not
        NEEDS_ATTENTION."""
        ...

    # -- watching ------------------------------------------------------------------------------

    async def live_counts(self) -> list[LiveCount]:
        """The sagas not final (RUNNING, COMPENSATING, NEEDS_ATTENTION), counted by type and
        status: what the gauges an operator alerts on show (`SagaRunner.observe`)."""
        ...

    async def release_leases(self, owner: Owner) -> None:
        """On a clean shutdown: the leases of `owner`'s running sagas expire now, so that any
        replica (or this one, restarted) can take them at once."""
        ...
