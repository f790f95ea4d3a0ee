"""Runs a saga definition through every scenario of `_scenarios`, each in a world of its own
(`_world`: a store, model participants, the engine's real runner and start path), and checks
what each scenario left behind (`_checks`)."""

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sagaengine.definition import SagaDefinition, SagaStatus
from sagaengine.testing._checks import violations
from sagaengine.testing._faults import FaultInjector
from sagaengine.testing._participants import ActionLedger, Arrival, ModelParticipants, Point
from sagaengine.testing._scenarios import Scenario, scenarios
from sagaengine.testing._world import POLICY, World

Answers = Mapping[str, Mapping[str, Any]]
ParticipantsFactory = Callable[[Answers], ModelParticipants]

SCENARIO_SECONDS = 10.0  # wall clock: past it, a scenario counts as stuck


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    status: SagaStatus | None  # None: no saga (its start was refused)
    # NEEDS_ATTENTION, then an operator mended the fault and retried: where the saga ended.
    retried: SagaStatus | None
    violations: tuple[str, ...]
    arrivals: tuple[Arrival, ...]  # every call made (and what became of it), in order
    ledger: Mapping[str, ActionLedger]  # by action key

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class Exploration:
    definition: SagaDefinition[Any]
    results: tuple[ScenarioResult, ...]

    @property
    def violations(self) -> list[str]:
        """Every violation, each naming its saga and scenario."""
        name = self.definition.name
        return [f"{name}, {r.scenario.name}: {v}" for r in self.results for v in r.violations]

    @property
    def points(self) -> set[tuple[str, Point]]:
        """The (step, point) pairs a fault was put at."""
        return {
            (r.scenario.fault.step, r.scenario.fault.point)
            for r in self.results
            if r.scenario.fault
        }

    def assert_ok(self) -> None:
        found = self.violations
        if found:
            raise AssertionError(
                f"{len(found)} violations in {len(self.results)} scenarios of saga "
                f"{self.definition.name}:\n  " + "\n  ".join(found)
            )


def explore(
    definition: SagaDefinition[Any],
    data: Any,
    *,
    answers: Answers | None = None,
    participants: ParticipantsFactory | None = None,
    only: str | Callable[[Scenario], bool] | None = None,
) -> Exploration:
    """Run `definition`, started with `data` (its data model), through every failure point; see
    the package's docstring. `answers`: each step's action's answer, by step name;
    `participants`: the model participants' class (or a factory taking `answers`); `only`: the
    scenarios whose name starts with this (`"deduct_balance"`, `"deduct_balance compensation"`),
    or that this predicate keeps. Not from a running event loop: `explore_async` then."""
    return asyncio.run(
        explore_async(definition, data, answers=answers, participants=participants, only=only)
    )


async def explore_async(
    definition: SagaDefinition[Any],
    data: Any,
    *,
    answers: Answers | None = None,
    participants: ParticipantsFactory | None = None,
    only: str | Callable[[Scenario], bool] | None = None,
) -> Exploration:
    fast = _without_waits(definition)
    chosen = [s for s in scenarios(fast, POLICY, POLICY) if _chosen(s, only)]
    results = [
        await _explore_one(fast, data, s, answers or {}, participants or ModelParticipants)
        for s in chosen
    ]
    return Exploration(definition, tuple(results))


def _chosen(scenario: Scenario, only: str | Callable[[Scenario], bool] | None) -> bool:
    if only is None:
        return True
    if isinstance(only, str):
        return scenario.name.startswith(only)
    return only(scenario)


def _without_waits(definition: SagaDefinition[Any]) -> SagaDefinition[Any]:
    """The same saga, its steps' own retry policies keeping their attempts but not their waits."""
    steps = tuple(
        replace(step, retry=replace(step.retry, initial_backoff=0, max_backoff=0))
        if step.retry is not None
        else step
        for step in definition.steps
    )
    return replace(definition, steps=steps)


class _RunErrors(logging.Handler):
    """The exceptions the runner logged: a run that raised is a bug, whatever came after."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            self.found.append(f"{record.getMessage()}: {type(error).__name__}: {error}")


async def _explore_one(
    definition: SagaDefinition[Any],
    data: Any,
    scenario: Scenario,
    answers: Answers,
    participants_of: ParticipantsFactory,
) -> ScenarioResult:
    participants = participants_of(answers)
    network = FaultInjector(participants, scenario.faults)
    world = World(definition, network)
    errors = _RunErrors()
    engine_log = logging.getLogger("sagaengine")
    engine_log.addHandler(errors)
    status = retried = None
    try:
        async with asyncio.timeout(SCENARIO_SECONDS):
            status = await world.run(data)
            if status is SagaStatus.NEEDS_ATTENTION:
                # An operator looks, mends what failed (the fault is gone), and retries.
                network.faults = ()
                retried = await world.retry()
    except TimeoutError:
        world.found.append(f"the saga did not end within {SCENARIO_SECONDS:g} s")
    finally:
        await world.close()
        engine_log.removeHandler(errors)
    network.deliver_late()  # whatever is still on its way arrives in the end
    found = [
        *world.found,
        *errors.found,
        *violations(definition, scenario, status, retried, participants),
    ]
    return ScenarioResult(
        scenario,
        status,
        retried,
        tuple(found),
        tuple(participants.arrivals),
        dict(participants.ledger),
    )
