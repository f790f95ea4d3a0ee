"""How a saga is declared: its typed data, its participants, its steps, its pivot, its start.

No I/O here. A saga definition is an ordered list of steps over one typed data model (a pydantic
model: what the saga was started with, and what its steps' answers taught it); each step builds
the remote call of its action, of its compensation and of its settle call from that data. The
runner (`sagaengine.runner`) persists and executes them; `sagaengine.decisions` decides what
follows each outcome.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from sagaengine.errors import Refusal

if TYPE_CHECKING:
    from sagaengine.starting import Lookup


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


FINAL_STATUSES = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED})
# A saga some run is moving forward or back; NEEDS_ATTENTION waits for an operator.
LIVE_STATUSES = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)


class Phase(StrEnum):
    ACTION = "action"
    COMPENSATION = "compensation"


class StepKind(StrEnum):
    COMPENSATABLE = "compensatable"  # before the pivot; undone if a later step fails
    PIVOT = "pivot"  # the point of no return: once it commits the saga goes forward only
    RETRIABLE = "retriable"  # after the pivot: retried until it succeeds, never compensated


@dataclass(frozen=True)
class RetryPolicy:
    """Transient faults of one call are retried under the same key within this budget."""

    attempts: int = 5
    initial_backoff: float = 0.2  # seconds; doubles each try, with jitter
    max_backoff: float = 5.0
    max_seconds: float = 45.0  # the whole budget, so a dead service is given up on in time
    # Refusal codes that mean "not yet" rather than "no" (e.g. a resource briefly locked):
    # retried like transient faults.
    retry_on: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RemoteCall:
    """One call to a participant, described as data so that it can be persisted as is."""

    service: str
    method: str
    path: str
    body: dict[str, Any] | None = None


# Where every participant answers "did the action of this key go through?" (the kit's settle
# router, `sagaengine.participant`): a pivot whose answer was lost is settled there.
SETTLE_PATH = "/_idempotency/settle"


@dataclass(frozen=True)
class Participant:
    """A service the sagas call, declared once: its name in calls, and the setting (an
    environment variable) that gives its base URL, with the URL used when it is unset."""

    name: str
    url_setting: str
    default_url: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> RemoteCall:
        return RemoteCall(self.name, method, path, body)

    def post(self, path: str, body: dict[str, Any] | None = None) -> RemoteCall:
        return self.call("POST", path, body)

    def get(self, path: str) -> RemoteCall:
        return self.call("GET", path)


# A saga's data: a pydantic model, validated from what the saga was started with.
D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True)
class StepContext(Generic[D]):
    saga_id: str
    data: D  # as the saga started, with what the answers of its earlier actions taught it
    action_key: str  # this step's action key: compensations and settle calls refer to it


CallBuilder = Callable[[StepContext[D]], RemoteCall]
# What an action's answer teaches the saga's data (e.g. the amount read under the order's lock).
Learn = Callable[[D, Mapping[str, Any]], D]


@dataclass(frozen=True)
class SagaOutcome(Generic[D]):
    saga_id: str
    status: SagaStatus  # COMPLETED or COMPENSATED
    data: D
    error: Mapping[str, Any] | None


@dataclass(frozen=True)
class OutcomeEvent:
    """What a final saga tells the data platform, through the outbox."""

    aggregate_id: str  # the events of one aggregate are delivered in the order they occurred
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Step(Generic[D]):
    name: str
    action: CallBuilder[D]
    compensation: CallBuilder[D] | None = None
    # For a pivot: how to learn whether an action whose answer was lost went through. By
    # default, the action's participant's settle endpoint (SETTLE_PATH) with the action's key.
    settle: CallBuilder[D] | None = None
    kind: StepKind = StepKind.COMPENSATABLE
    timeout: float | None = None  # seconds per call; None: the runner's default
    # The action's retry policy (None: the runner's default). Compensations and settle calls
    # always use the runner's compensation policy.
    retry: RetryPolicy | None = None
    learn: Learn[D] | None = None

    def settle_call(self, ctx: StepContext[D]) -> RemoteCall:
        if self.settle is not None:
            return self.settle(ctx)
        return RemoteCall(self.action(ctx).service, "POST", SETTLE_PATH, {"key": ctx.action_key})


@dataclass(frozen=True)
class StartRules(Generic[D]):
    """How a saga of this definition starts (`sagaengine.starting.start_saga`).

    - `lock_key`: the business object it works on: one live saga per lock key;
    - `refusals`: refusal codes of the first step that refuse the start itself (the saga is
      removed, and the client gets the refusal: e.g. 404 for an unknown order);
    - `identity`: what a request re-sent with the same key must match (default: all its data);
    - `busy`: the code a keyed start gets when another request's saga holds the object;
    - `done`: the refusal a start gets when the object's saga finished already (and the start
      is not that saga's own, re-sent with its key); None: that saga is the answer;
    - `request`: the model of a start's body (default: the data model itself);
    - `prepare`: builds the saga's data from the request, with read access to other sagas and
      the participants (a refund reads the saga that paid); may raise a Refusal (4xx).
    """

    lock_key: Callable[[D], str]
    refusals: frozenset[str] = frozenset()
    identity: Callable[[D], dict[str, Any]] | None = None
    busy: str = "saga_in_progress"
    done: Callable[[D], Refusal] | None = None
    request: type[BaseModel] | None = None
    prepare: Callable[[Any, "Lookup"], Awaitable[D]] | None = None


def _no_keys(data: Any) -> dict[str, Any]:
    return {}


def _no_event(outcome: Any) -> None:
    return None


@dataclass(frozen=True)
class SagaDefinition(Generic[D]):
    name: str
    version: int
    data: type[D]
    steps: tuple[Step[D], ...]
    start: StartRules[D]
    participants: tuple[Participant, ...] = ()
    # The business keys an operator finds the saga by (order id, user id...), from its data.
    keys: Callable[[D], dict[str, Any]] = field(default=_no_keys)
    # The event a final saga reports, if any: written with its final status, in one transaction.
    outcome_event: Callable[[SagaOutcome[D]], OutcomeEvent | None] = field(default=_no_event)
    # Past this age no new action starts: the saga compensates (before its pivot) or waits for
    # an operator (past it). None: no deadline.
    deadline: timedelta | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"saga {self.name} has no steps")
        if len({s.name for s in self.steps}) != len(self.steps):
            raise ValueError(f"saga {self.name} has two steps of one name")
        if any(":" in s.name for s in self.steps):
            raise ValueError(f"saga {self.name}: a step name cannot hold ':' (keys use it)")
        pivots = [i for i, s in enumerate(self.steps) if s.kind is StepKind.PIVOT]
        if len(pivots) > 1:
            raise ValueError(f"saga {self.name} has more than one pivot")
        # Compensatable steps, then at most one pivot, then retriable steps only.
        pivot = pivots[0] if pivots else len(self.steps)
        for i, step in enumerate(self.steps):
            if i < pivot and step.kind is not StepKind.COMPENSATABLE:
                raise ValueError(f"step {step.name} before the pivot must be compensatable")
            if i > pivot and step.kind is not StepKind.RETRIABLE:
                raise ValueError(f"step {step.name} after the pivot must be retriable")
            if step.kind is StepKind.COMPENSATABLE and step.compensation is None:
                raise ValueError(f"compensatable step {step.name} has no compensation")
            if step.kind is not StepKind.COMPENSATABLE and step.compensation is not None:
                raise ValueError(f"step {step.name} is past the point of no return")

    @property
    def key(self) -> tuple[str, int]:
        return self.name, self.version

    @property
    def pivot(self) -> Step[D] | None:
        return next((s for s in self.steps if s.kind is StepKind.PIVOT), None)

    @property
    def pivot_index(self) -> int:
        """The index of its pivot (its number of steps if it has none): before it, the saga
        may still go back (be compensated, or cancelled)."""
        return next(
            (i for i, s in enumerate(self.steps) if s.kind is StepKind.PIVOT), len(self.steps)
        )

    def step(self, name: str) -> Step[D]:
        return next(s for s in self.steps if s.name == name)

    def data_of(self, payload: Mapping[str, Any], results: Mapping[str, Any]) -> D:
        """The saga's data: what it started with, then what each action that succeeded taught
        it, in step order."""
        data = self.data.model_validate(payload)
        for step in self.steps:
            if step.learn is not None and step.name in results:
                data = step.learn(data, results[step.name])
        return data

    def business_keys(
        self, payload: Mapping[str, Any], results: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Its keys as known from what it started with and has learned (those not known yet
        left out): what is stored for an operator to find it by."""
        try:
            keys = self.keys(self.data_of(payload, results))
        except ValidationError:  # data that no longer reads: found by other means
            return {}
        return {name: value for name, value in keys.items() if value is not None}

    def payload_of(self, data: D) -> dict[str, Any]:
        """What a saga's data is persisted as (the fields that were set)."""
        return data.model_dump(mode="json", exclude_unset=True)


def step_key(saga_id: str, step_name: str, phase: Phase) -> str:
    """The key a step's call carries: the same for every retry, different per step and phase."""
    return f"{saga_id}:{step_name}:{phase}"


def idempotency_key(saga_id: str, step: Step[Any], phase: Phase) -> str:
    return step_key(saga_id, step.name, phase)
