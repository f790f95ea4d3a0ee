"""Every failure point of a saga definition, as scenarios: one fault under test each, with the
faults that bring the saga to that point (a later refusal, for a compensation; a pivot's lost
answer, for its settle call), and the status the saga must end in."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sagaengine.definition import RetryPolicy, SagaDefinition, SagaStatus, Step, StepKind
from sagaengine.testing._faults import Fault, FaultKind
from sagaengine.testing._participants import Point

COMPLETED = SagaStatus.COMPLETED
COMPENSATED = SagaStatus.COMPENSATED
NEEDS_ATTENTION = SagaStatus.NEEDS_ATTENTION


@dataclass(frozen=True)
class Scenario:
    fault: Fault | None  # None: no fault, the saga as it should go
    setup: tuple[Fault, ...] = ()  # what brings the saga to the fault's point
    # The saga's status at the end; None: there is no saga (its first step refused the start).
    expected: SagaStatus | None = COMPLETED

    @property
    def faults(self) -> tuple[Fault, ...]:
        return (*self.setup, *([self.fault] if self.fault is not None else []))

    @property
    def name(self) -> str:
        if self.fault is None:
            return "no fault"
        name = str(self.fault)
        if self.setup:
            name += ", after " + ", ".join(str(f) for f in self.setup)
        return name


ANY_CALL = (
    FaultKind.REFUSED,
    FaultKind.TRANSIENT,
    FaultKind.ANSWER_LOST,
    FaultKind.EXHAUSTED,
    FaultKind.EXHAUSTED_APPLIED,
    FaultKind.STOP_BEFORE,
    FaultKind.STOP_AFTER,
)


def scenarios(
    definition: SagaDefinition[Any], action_policy: RetryPolicy, compensation_policy: RetryPolicy
) -> Iterator[Scenario]:
    """Every step, at every point it has, under every fault that applies there."""
    yield Scenario(None)
    for step in definition.steps:
        attempts = (step.retry or action_policy).attempts
        yield from _action(definition, step, attempts)
    trigger = _compensating(definition)
    for step in definition.steps:
        if step.compensation is not None:
            for kind in _kinds(ANY_CALL, compensation_policy.attempts):
                after = COMPENSATED if kind in _ANSWERED else NEEDS_ATTENTION
                yield Scenario(
                    _fault(step, Point.COMPENSATION, kind, compensation_policy), trigger, after
                )
    pivot = definition.pivot
    if pivot is not None:
        for lost in (FaultKind.EXHAUSTED, FaultKind.EXHAUSTED_APPLIED):
            went = COMPLETED if lost is FaultKind.EXHAUSTED_APPLIED else COMPENSATED
            setup = (Fault(pivot.name, Point.ACTION, lost),)
            for kind in _kinds(ANY_CALL, compensation_policy.attempts):
                after = went if kind in _ANSWERED else NEEDS_ATTENTION
                yield Scenario(_fault(pivot, Point.SETTLE, kind, compensation_policy), setup, after)


# Faults after which the call is answered, by a retry or by the run that resumes the saga.
_ANSWERED = (
    FaultKind.TRANSIENT,
    FaultKind.ANSWER_LOST,
    FaultKind.STOP_BEFORE,
    FaultKind.STOP_AFTER,
)


def _action(definition: SagaDefinition[Any], step: Step[Any], attempts: int) -> Iterator[Scenario]:
    late = (FaultKind.LATE, FaultKind.LATE_THEN_REFUSED)
    kinds = ANY_CALL if step.kind is StepKind.RETRIABLE else (*ANY_CALL, *late)
    for kind in _kinds(kinds, attempts):
        fault = Fault(step.name, Point.ACTION, kind, times=attempts - 1)
        yield Scenario(fault, expected=_after_action(step, kind))
    refusals = sorted(definition.start.refusals)
    if step is definition.steps[0] and refusals:
        # Refused as the start's check: no saga is left, as if none had been started.
        fault = Fault(step.name, Point.ACTION, FaultKind.REFUSED, code=refusals[0])
        yield Scenario(fault, expected=None)


def _after_action(step: Step[Any], kind: FaultKind) -> SagaStatus:
    if kind in _ANSWERED:
        return COMPLETED
    if step.kind is StepKind.RETRIABLE:
        return NEEDS_ATTENTION  # past the pivot: forward only, or an operator
    if step.kind is StepKind.PIVOT and kind is FaultKind.EXHAUSTED_APPLIED:
        return COMPLETED  # settled: it went through
    return COMPENSATED


def _kinds(kinds: tuple[FaultKind, ...], attempts: int) -> tuple[FaultKind, ...]:
    """With a single attempt, a call is never tried again: no fault is followed by an answer."""
    if attempts > 1:
        return kinds
    retried = (FaultKind.TRANSIENT, FaultKind.ANSWER_LOST, FaultKind.LATE_THEN_REFUSED)
    return tuple(k for k in kinds if k not in retried)


def _fault(step: Step[Any], point: Point, kind: FaultKind, policy: RetryPolicy) -> Fault:
    return Fault(step.name, point, kind, times=policy.attempts - 1)


def _compensating(definition: SagaDefinition[Any]) -> tuple[Fault, ...]:
    """What makes every compensatable step compensate: its pivot refused, or, with no pivot, the
    last step's outcome unknown (compensated by its key, then every earlier step)."""
    pivot = definition.pivot
    if pivot is not None:
        return (Fault(pivot.name, Point.ACTION, FaultKind.REFUSED),)
    return (Fault(definition.steps[-1].name, Point.ACTION, FaultKind.EXHAUSTED),)
