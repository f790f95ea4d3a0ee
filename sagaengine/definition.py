"""The saga engine's pure core: definitions, the status machine and what follows each outcome.

No I/O here. A saga definition is an ordered list of steps; each step builds the remote call of its
action and of its compensation from the saga's context. The runner (`sagaengine.runner`)
persists and executes what this module decides.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
    """One call to a domain service, described as data so that it can be persisted as is."""

    service: str
    method: str
    path: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class StepContext:
    saga_id: str
    payload: Mapping[str, Any]
    results: Mapping[str, Mapping[str, Any]]  # the response of each action that succeeded
    action_key: str  # this step's action key: compensations and settle calls refer to it


CallBuilder = Callable[[StepContext], RemoteCall]


@dataclass(frozen=True)
class SagaOutcome:
    saga_id: str
    status: SagaStatus  # COMPLETED or COMPENSATED
    payload: Mapping[str, Any]
    results: Mapping[str, Mapping[str, Any]]
    error: Mapping[str, Any] | None


@dataclass(frozen=True)
class OutcomeEvent:
    """What a final saga tells the data platform, through the outbox."""

    aggregate_id: str  # the events of one aggregate are delivered in the order they occurred
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Step:
    name: str
    action: CallBuilder
    compensation: CallBuilder | None = None
    # For a pivot: how to learn whether an action whose answer was lost went through.
    settle: CallBuilder | None = None
    kind: StepKind = StepKind.COMPENSATABLE
    timeout: float | None = None  # seconds per call; None: the orchestrator's default
    # The action's retry policy (None: the orchestrator's default). Compensations and settle
    # calls always use the orchestrator's compensation policy.
    retry: RetryPolicy | None = None


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    version: int
    steps: tuple[Step, ...]
    describe: Callable[[Mapping[str, Any]], dict[str, Any]] = field(default=lambda payload: {})
    # The event a final saga reports, if any: written with its final status, in one transaction.
    outcome_event: Callable[[SagaOutcome], OutcomeEvent | None] = field(default=lambda _: None)
    # Refusal codes of the first step that refuse the start itself: the saga is removed and the
    # client gets the refusal (e.g. 404 for an unknown order), as if none had been recorded.
    start_refusals: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"saga {self.name} has no steps")
        if len({s.name for s in self.steps}) != len(self.steps):
            raise ValueError(f"saga {self.name} has two steps of one name")
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


def idempotency_key(saga_id: str, step: Step, phase: Phase) -> str:
    """The key a step's call carries: the same for every retry, different per step and phase."""
    return f"{saga_id}:{step.name}:{phase}"
