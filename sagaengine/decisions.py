"""The engine's pure decisions: the legal moves of a saga's status, and what follows each call's
outcome. No I/O; the runner persists and executes what these decide."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sagaengine.definition import Phase, SagaDefinition, SagaStatus, StepKind

# The only legal moves of a saga's status. Every persisted change is checked against it.
TRANSITIONS: dict[SagaStatus, frozenset[SagaStatus]] = {
    SagaStatus.RUNNING: frozenset(
        {
            SagaStatus.RUNNING,  # the next action
            SagaStatus.COMPLETED,  # the pivot (or the last step) went through
            SagaStatus.COMPENSATING,  # an action failed after earlier ones applied
            SagaStatus.COMPENSATED,  # the first action was refused: nothing to undo
            SagaStatus.NEEDS_ATTENTION,  # a pivot's outcome could not be learned
        }
    ),
    SagaStatus.COMPENSATING: frozenset(
        {
            SagaStatus.COMPENSATING,  # the next compensation, in reverse order
            SagaStatus.COMPENSATED,  # the last compensation went through
            SagaStatus.NEEDS_ATTENTION,  # a compensation failed past its retry budget
        }
    ),
    SagaStatus.NEEDS_ATTENTION: frozenset(
        {SagaStatus.RUNNING, SagaStatus.COMPENSATING}  # an operator's retry resumes it
    ),
    SagaStatus.COMPLETED: frozenset(),
    SagaStatus.COMPENSATED: frozenset(),
}


class IllegalSagaTransition(Exception):
    pass


def check_transition(current: SagaStatus, new: SagaStatus) -> None:
    if new not in TRANSITIONS[current]:
        raise IllegalSagaTransition(f"a saga cannot go from {current} to {new}")


class CallOutcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    REFUSED = "REFUSED"  # a business refusal: final, not retried
    EXHAUSTED = "EXHAUSTED"  # transient faults outlasted the budget: the outcome is unknown


@dataclass(frozen=True)
class Position:
    """Where a saga stands: its status and the step it does next (an action while RUNNING, a
    compensation while COMPENSATING, counting down)."""

    status: SagaStatus
    step: int
    phase: Phase


def _compensation_from(definition: SagaDefinition[Any], index: int) -> Position:
    """Compensate steps index, index-1, ..., 0 that have a compensation, or finish if none."""
    for i in range(index, -1, -1):
        if definition.steps[i].compensation is not None:
            return Position(SagaStatus.COMPENSATING, i, Phase.COMPENSATION)
    return Position(SagaStatus.COMPENSATED, -1, Phase.COMPENSATION)


def after_action(definition: SagaDefinition[Any], index: int, outcome: CallOutcome) -> Position:
    """What follows an action's outcome (for a pivot, its outcome once settled)."""
    step = definition.steps[index]
    if outcome is CallOutcome.SUCCEEDED:
        if index == len(definition.steps) - 1:
            return Position(SagaStatus.COMPLETED, index + 1, Phase.ACTION)
        return Position(SagaStatus.RUNNING, index + 1, Phase.ACTION)
    if step.kind is StepKind.RETRIABLE:
        # Past the pivot there is no going back: an operator looks, then retries forward.
        return Position(SagaStatus.NEEDS_ATTENTION, index, Phase.ACTION)
    if outcome is CallOutcome.REFUSED:
        # The step's own local transaction rolled back: undo only the earlier steps.
        return _compensation_from(definition, index - 1)
    if step.kind is StepKind.PIVOT:
        raise ValueError("a pivot's unknown outcome must be settled before deciding")
    # Unknown outcome: it may have applied. Its compensation names its key, so it undoes the
    # action if it ran and leaves a tombstone if it did not; then the earlier steps.
    return _compensation_from(definition, index)


def after_compensation(
    definition: SagaDefinition[Any], index: int, outcome: CallOutcome
) -> Position:
    if outcome is CallOutcome.SUCCEEDED:
        return _compensation_from(definition, index - 1)
    return Position(SagaStatus.NEEDS_ATTENTION, index, Phase.COMPENSATION)


def resume_after_attention(position: Position) -> Position:
    """An operator's retry: resume the phase the saga was stuck in, at the same step."""
    status = SagaStatus.COMPENSATING if position.phase is Phase.COMPENSATION else SagaStatus.RUNNING
    return Position(status, position.step, position.phase)
