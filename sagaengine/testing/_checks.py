"""What must hold at the end of every scenario, read from the saga's status and what the model
participants saw. Each check returns readable violations; none means the scenario passed."""

from collections.abc import Iterator
from typing import Any

from sagaengine.definition import FINAL_STATUSES, SagaDefinition, SagaStatus, StepKind
from sagaengine.testing._participants import Arrival, Effect, ModelParticipants, Point
from sagaengine.testing._scenarios import Scenario


def violations(
    definition: SagaDefinition[Any],
    scenario: Scenario,
    status: SagaStatus | None,
    retried: SagaStatus | None,
    participants: ModelParticipants,
) -> Iterator[str]:
    """`status`: where the saga ended; `retried`: where it ended after an operator's retry, if
    it needed attention."""
    yield from _status(scenario, status)
    if retried is not None and retried not in FINAL_STATUSES:
        yield f"after an operator's retry, the saga ended {retried}"
    yield from _at_most_once(participants)
    yield from _net_effect(definition, retried or status, participants)
    yield from _reverse_order(definition, participants.arrivals)
    yield from _pivot_decides(definition, participants.arrivals)
    yield from dict.fromkeys(participants.problems)  # each once, in the order seen


def _status(scenario: Scenario, status: SagaStatus | None) -> Iterator[str]:
    if status == scenario.expected:
        return
    expected = scenario.expected or "no saga (the start refused)"
    found = status or "no saga"
    yield f"the saga ended {found}, where it must end {expected}"


def _at_most_once(participants: ModelParticipants) -> Iterator[str]:
    for ledger in participants.ledger.values():
        if ledger.applied > 1:
            yield f"{ledger.step}'s action applied {ledger.applied} times"
        if ledger.undone > 1:
            yield f"{ledger.step}'s action undone {ledger.undone} times"
        elif ledger.undone > ledger.applied:
            yield f"{ledger.step}'s action undone though it never applied"


def _net_effect(
    definition: SagaDefinition[Any], status: SagaStatus | None, participants: ModelParticipants
) -> Iterator[str]:
    """Compensated (or its start refused), nothing stands; completed, every action stands once.
    One saga per scenario: its actions' ledgers are known by their steps' names."""
    ledgers = {ledger.step: ledger for ledger in participants.ledger.values()}
    for step in definition.steps:
        ledger = ledgers.get(step.name)
        applied, undone = (ledger.applied, ledger.undone) if ledger else (0, 0)
        if status in (SagaStatus.COMPENSATED, None) and applied > undone:
            yield (
                f"the saga is {status or 'gone'} but {step.name}'s action stands "
                f"(applied {applied}, undone {undone})"
            )
        if status is SagaStatus.COMPLETED and (applied, undone) != (1, 0):
            yield (
                f"the saga is COMPLETED but {step.name}'s action was applied {applied} times "
                f"and undone {undone} times"
            )


def _reverse_order(definition: SagaDefinition[Any], arrivals: list[Arrival]) -> Iterator[str]:
    index = {step.name: i for i, step in enumerate(definition.steps)}
    order = list(dict.fromkeys(a.step for a in arrivals if a.point is Point.COMPENSATION))
    if [index[name] for name in order] != sorted((index[name] for name in order), reverse=True):
        yield f"compensations ran in the order {', '.join(order)}, not in reverse step order"


def _pivot_decides(definition: SagaDefinition[Any], arrivals: list[Arrival]) -> Iterator[str]:
    """Nothing runs past the pivot's decision: no compensation once the pivot applied, no step
    past the pivot before it did."""
    pivot = definition.pivot
    if pivot is None:
        return
    forward_only = {s.name for s in definition.steps if s.kind is StepKind.RETRIABLE}
    applied = False
    for arrival in arrivals:
        if arrival.step == pivot.name and arrival.point is Point.ACTION:
            applied = applied or arrival.effect in (Effect.APPLIED, Effect.APPLIED_OVER_TOMBSTONE)
        elif arrival.point is Point.COMPENSATION and applied:
            yield f"{arrival.step}'s compensation ran after the pivot {pivot.name} applied"
        elif arrival.point is Point.ACTION and arrival.step in forward_only and not applied:
            yield f"{arrival.step} ran past the pivot {pivot.name}, which had not applied"
