"""A test kit for saga authors: run a saga definition through every failure point.

    from sagaengine.testing import explore

    def test_the_payment_saga_survives_every_failure():
        order = {"id": 7, "user_id": 3, "amount": 500, "status": "PAYMENT_IN_PROGRESS"}
        answers = {"start_order_payment": order}  # what step 1's `learn` reads
        explore(PAYMENT_SAGA, Payment(order_id=7), answers=answers).assert_ok()

`explore(definition, data)` starts the saga with `data` on the engine's own start path and
runner, over an in-memory store (`sagaengine.memory`) and in-memory participants
(`ModelParticipants`) that keep the participant kit's promises: an action's answer is replayed
to a retry under its key; a compensation names its action's key and undoes it at most once, or
tombstones it so that it is refused if it arrives late; the settle route says whether an action
applied. `answers` gives each step's action its answer, by step name, so that `learn` hooks
read realistic data.

Each scenario puts one fault at one point (a step's action, its compensation, a pivot's settle
call), with what brings the saga there (the pivot refused, so that every compensation runs; the
pivot's answer lost, so that it is settled):

- `refused`: a business refusal (at the first step, also with the start's own refusal code);
- `transient`: failing until the last attempt of the retry budget, which is answered;
- `answer_lost`: applied, the answer lost, the retry answered by the replay;
- `exhausted` / `exhausted_applied`: failing past the budget, never applied / applied once;
- `late` (an action up to the pivot): every attempt reaches its service only after the
  action's compensation or settle call, and must be refused; `late_then_refused`: the first
  attempt so, the retries refused at once;
- `stop_before` / `stop_after`: the orchestrator's process dies just before / after the call
  reaches its service; a new runner resumes the saga by recovery once its lease has expired.

Then it checks that the saga ended where it must: final, or NEEDS_ATTENTION where the
definition says so (a compensation that cannot go through, a step past the pivot that fails, a
pivot whose settle call cannot), in which case an operator mends the fault and retries, and the
saga must then end final. Throughout, each action must apply at most once and be undone exactly
when the saga compensates, compensations must run in reverse step order, and nothing may run
past the pivot's decision (no compensation once it applied, no later step before it did).
`Exploration.violations` names the saga and the scenario of each finding; `assert_ok()` fails
with all of them; `only=` narrows the scenarios (by the start of their name, or a predicate).
Retries do not wait and leases expire on a clock the exploration moves: the four sagas of this
project, some 250 scenarios, are explored in about a second.

Only the kit's own settle route (`SETTLE_PATH`) is modelled for a pivot's settle call, and a
compensation must name its action's key in its body (the step's `action_key`): one that does
not cannot undo its action, and is reported.
"""

from sagaengine.testing._explore import Exploration, ScenarioResult, explore, explore_async
from sagaengine.testing._faults import Fault, FaultInjector, FaultKind
from sagaengine.testing._participants import (
    ActionLedger,
    AppliesLateActions,
    Arrival,
    Effect,
    ModelParticipants,
    Point,
    UndoesEveryTime,
)
from sagaengine.testing._scenarios import Scenario, scenarios

__all__ = [
    "ActionLedger",
    "AppliesLateActions",
    "Arrival",
    "Effect",
    "Exploration",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "ModelParticipants",
    "Point",
    "Scenario",
    "ScenarioResult",
    "UndoesEveryTime",
    "explore",
    "explore_async",
    "scenarios",
]
