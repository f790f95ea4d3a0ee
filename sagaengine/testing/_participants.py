"""Every participant of a saga, in memory, keeping the promises of the participant kit.

The kit's promises (`sagaengine.participant`, the services' idempotency store): an action's answer
is stored under its key and replayed to a retry; a compensation names its action's key, and undoes
that action at most once, or, if the action never applied, leaves a tombstone under the action's
key so that the action arriving late is refused, never applied; the settle route answers whether
an action applied, and tombstones it if it did not. Records are kept per service, as each
service keeps its own: a compensation sent to another service than its action's finds nothing.

`ModelParticipants` keeps those promises and writes down what each call did (`arrivals`) and the
net effect of each action (`ledger`). Its subclasses `UndoesEveryTime` and `AppliesLateActions`
break one promise each, to show that an exploration notices.
"""

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sagaengine.definition import SETTLE_PATH, Phase, RemoteCall, step_key
from sagaengine.http import BusinessRefusal


class Point(StrEnum):
    """Where in a step a call is made: its action, its compensation, or a pivot's settle call."""

    ACTION = "action"
    COMPENSATION = "compensation"
    SETTLE = "settle"


class Effect(StrEnum):
    """What one call did at its participant."""

    APPLIED = "applied"
    REPLAYED = "replayed"  # the stored answer of an earlier call of the same key
    REFUSED_TOMBSTONE = "refused: tombstone"  # an action arriving after its compensation
    APPLIED_OVER_TOMBSTONE = "applied over its tombstone"
    UNDONE = "undone"
    TOMBSTONED = "tombstoned"  # a compensation or settle call found no action: none will apply
    NOTHING_TO_UNDO = "nothing to undo"
    NAMES_NO_ACTION = "names no action"  # a compensation whose body holds no action key
    SETTLED = "settled"
    FAULT = "stopped by a fault"  # made, but refused, lost or held on its way (`FaultInjector`)


@dataclass(frozen=True)
class Arrival:
    """One call that reached a participant (or was stopped on its way), in the order of
    arrival."""

    step: str
    point: Point
    key: str  # the action key the call is about
    effect: Effect


@dataclass
class ActionLedger:
    """The net effect of one action key."""

    step: str
    applied: int = 0
    undone: int = 0
    tombstoned: bool = False

    @property
    def standing(self) -> int:
        return self.applied - self.undone


@dataclass
class _Record:
    """A row of a service's idempotency table."""

    fingerprint: str
    tombstone: bool = False
    response: dict[str, Any] | None = None
    reversed_by: str | None = None


ACTION_COMPENSATED = "action_compensated"


def _fingerprint(call: RemoteCall) -> str:
    return json.dumps([call.method, call.path, call.body], sort_keys=True, default=str)


def _strings(value: Any) -> set[str]:
    """Every string in a JSON value (a compensation names its action's key somewhere in it)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, Mapping):
        return set().union(*(_strings(v) for v in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(_strings(v) for v in value))
    return set()


def parse_key(key: str) -> tuple[str, str, str]:
    """(saga id, step name, phase) of a step's key (`sagaengine.definition.step_key`)."""
    saga_id, step, phase = key.rsplit(":", 2)
    return saga_id, step, phase


class ModelParticipants:
    """The participants of a saga in memory: a client for every service (`send`, as
    `sagaengine.http.ServiceClient.send`). `answers` gives each step's action its answer, by step
    name (what a `learn` hook reads); a step with none answers `{}`."""

    def __init__(self, answers: Mapping[str, Mapping[str, Any]] | None = None):
        self.answers = dict(answers or {})
        self.arrivals: list[Arrival] = []
        self.ledger: dict[str, ActionLedger] = {}  # by action key
        self.problems: list[str] = []  # calls that broke the kit's contract
        self._records: dict[tuple[str, str], _Record] = {}  # by (service, key)

    async def send(self, call: RemoteCall, key: str | None, timeout: float) -> dict[str, Any]:
        return self.receive(call, key)

    def receive(self, call: RemoteCall, key: str | None) -> dict[str, Any]:
        """One call, handled at once (atomic, as a participant's local transaction)."""
        if key is None:
            if call.path == SETTLE_PATH and call.body and "key" in call.body:
                return self._settle(call, str(call.body["key"]))
            raise ValueError(f"the model participants do not answer {call.method} {call.path}")
        _, step, phase = parse_key(key)
        if phase == Phase.ACTION:
            return self._act(call, key, step)
        if phase == Phase.COMPENSATION:
            return self._compensate(call, key, step)
        raise ValueError(f"not a step's key: {key!r}")

    def _arrived(self, step: str, point: Point, key: str, effect: Effect) -> None:
        self.arrivals.append(Arrival(step, point, key, effect))

    def _ledger(self, key: str, step: str) -> ActionLedger:
        return self.ledger.setdefault(key, ActionLedger(step))

    # -- actions -------------------------------------------------------------------------------

    def _act(self, call: RemoteCall, key: str, step: str) -> dict[str, Any]:
        record = self._records.get((call.service, key))
        if record is not None and record.tombstone:
            if self.refuses_late_action():
                self._arrived(step, Point.ACTION, key, Effect.REFUSED_TOMBSTONE)
                raise BusinessRefusal(
                    ACTION_COMPENSATED,
                    "this operation was compensated before it arrived and will not be applied",
                    409,
                )
            return self._apply(call, key, step, Effect.APPLIED_OVER_TOMBSTONE)
        if record is None:
            return self._apply(call, key, step, Effect.APPLIED)
        if record.fingerprint != _fingerprint(call):
            self.problems.append(f"{step}'s action key {key} was sent again with another request")
            raise BusinessRefusal("idempotency_key_reused", f"{key} was used already", 422)
        self._arrived(step, Point.ACTION, key, Effect.REPLAYED)
        return copy.deepcopy(record.response or {})

    def _apply(self, call: RemoteCall, key: str, step: str, effect: Effect) -> dict[str, Any]:
        response = copy.deepcopy(dict(self.answers.get(step, {})))
        self._records[(call.service, key)] = _Record(_fingerprint(call), response=response)
        self._ledger(key, step).applied += 1
        self._arrived(step, Point.ACTION, key, effect)
        return copy.deepcopy(response)

    def refuses_late_action(self) -> bool:
        """Whether an action arriving after its tombstone is refused (the kit's promise)."""
        return True

    # -- compensations -------------------------------------------------------------------------

    def _compensate(self, call: RemoteCall, key: str, step: str) -> dict[str, Any]:
        saga_id, _, _ = parse_key(key)
        action_key = step_key(saga_id, step, Phase.ACTION)
        stored = self._records.get((call.service, key))
        if stored is not None and self.replays_compensation():
            self._arrived(step, Point.COMPENSATION, action_key, Effect.REPLAYED)
            return copy.deepcopy(stored.response or {})
        if action_key not in _strings(call.body):
            # The service cannot tell which action to undo: it undoes nothing, and nothing
            # stops the action from applying later.
            self.problems.append(
                f"{step}'s compensation does not name its action's key ({action_key}) in its "
                "body: it cannot undo that action, nor refuse it if it arrives late"
            )
            self._arrived(step, Point.COMPENSATION, action_key, Effect.NAMES_NO_ACTION)
            return {}
        effect = self._undo(call.service, action_key, key, step)
        self._arrived(step, Point.COMPENSATION, action_key, effect)
        response = {"action_key": action_key, "undone": effect is Effect.UNDONE}
        self._records[(call.service, key)] = _Record(_fingerprint(call), response=response)
        return copy.deepcopy(response)

    def _undo(self, service: str, action_key: str, compensation_key: str, step: str) -> Effect:
        action = self._records.get((service, action_key))
        if action is None:
            self._tombstone(service, action_key, step)
            return Effect.TOMBSTONED
        if action.tombstone or not self.may_undo(action):
            return Effect.NOTHING_TO_UNDO
        action.reversed_by = compensation_key
        self._ledger(action_key, step).undone += 1
        return Effect.UNDONE

    def replays_compensation(self) -> bool:
        """Whether a compensation sent again replays its first answer (the kit's promise)."""
        return True

    def may_undo(self, action: _Record) -> bool:
        """Whether an applied action may be undone now: once only (the kit's promise)."""
        return action.reversed_by is None

    def _tombstone(self, service: str, action_key: str, step: str) -> None:
        self._records[(service, action_key)] = _Record("tombstone", tombstone=True)
        self._ledger(action_key, step).tombstoned = True

    # -- settle --------------------------------------------------------------------------------

    def _settle(self, call: RemoteCall, action_key: str) -> dict[str, Any]:
        """The kit's settle route: what became of an action, and a tombstone if it never came."""
        _, step, _ = parse_key(action_key)
        record = self._records.get((call.service, action_key))
        answer: dict[str, Any] = {"key": action_key}
        if record is None:
            self._tombstone(call.service, action_key, step)
            self._arrived(step, Point.SETTLE, action_key, Effect.TOMBSTONED)
            return {**answer, "outcome": "TOMBSTONE", "status_code": None, "response": None}
        self._arrived(step, Point.SETTLE, action_key, Effect.SETTLED)
        if record.tombstone:
            refusal = {"error": {"code": ACTION_COMPENSATED, "message": "compensated"}}
            return {**answer, "outcome": "TOMBSTONE", "status_code": 409, "response": refusal}
        response = copy.deepcopy(record.response)
        return {**answer, "outcome": "APPLIED", "status_code": 200, "response": response}


class UndoesEveryTime(ModelParticipants):
    """A planted fault: compensations that are not idempotent (each call undoes its action
    again, instead of once per key)."""

    def replays_compensation(self) -> bool:
        return False

    def may_undo(self, action: _Record) -> bool:
        return True


class AppliesLateActions(ModelParticipants):
    """A planted fault: a participant that applies an action arriving after its tombstone."""

    def refuses_late_action(self) -> bool:
        return False
