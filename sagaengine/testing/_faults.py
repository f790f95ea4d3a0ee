"""Faults put between the runner and the model participants, at one point of one step.

A fault is a participant's refusal, a network that loses requests or answers, a request that
arrives after the caller gave up, or the orchestrator's process dying around a call. The dying is
signalled (`FaultInjector.crashed`) and the call then never returns: the exploration abandons
that runner and lets another resume the saga from the store.
"""

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sagaengine.definition import SETTLE_PATH, Phase, RemoteCall, step_key
from sagaengine.http import BusinessRefusal, TransientFault
from sagaengine.testing._participants import (
    Arrival,
    Effect,
    ModelParticipants,
    Point,
    parse_key,
)

INJECTED_REFUSAL = "injected_refusal"


class FaultKind(StrEnum):
    REFUSED = "refused"  # a business refusal, every time: nothing applied
    TRANSIENT = "transient"  # fails `times` times (nothing applied), then answers
    ANSWER_LOST = "answer_lost"  # applies, but the answer is lost; a retry is answered
    EXHAUSTED = "exhausted"  # fails every time, never applied
    EXHAUSTED_APPLIED = "exhausted_applied"  # applies once, then fails every time
    LATE = "late"  # every attempt arrives only after the action's compensation or settle call
    # The first attempt arrives only after the action's compensation or settle call; the
    # retries arrive at once, and are refused.
    LATE_THEN_REFUSED = "late_then_refused"
    STOP_BEFORE = "stop_before"  # the orchestrator dies just before the call reaches its service
    STOP_AFTER = "stop_after"  # the orchestrator dies just after the service applied the call


@dataclass(frozen=True)
class Fault:
    step: str
    point: Point
    kind: FaultKind
    times: int = 1  # TRANSIENT: how many calls fail before one is answered
    code: str = INJECTED_REFUSAL  # REFUSED: the refusal's code

    def __str__(self) -> str:
        detail = ""
        if self.kind is FaultKind.TRANSIENT:
            detail = f" x{self.times}"
        elif self.kind is FaultKind.REFUSED and self.code != INJECTED_REFUSAL:
            detail = f" ({self.code})"
        return f"{self.step} {self.point} {self.kind}{detail}"


class FaultInjector:
    """A client for every service (`send`) that hands calls to `participants`, except where a
    fault of `faults` says otherwise."""

    def __init__(self, participants: ModelParticipants, faults: tuple[Fault, ...]):
        self.participants = participants
        self.faults = faults
        self.crashed = asyncio.Event()  # the orchestrator's process died mid-call
        self._calls: Counter[tuple[str, Point]] = Counter()
        self._held: list[tuple[RemoteCall, str]] = []  # LATE calls, still on their way

    async def send(self, call: RemoteCall, key: str | None, timeout: float) -> dict[str, Any]:
        step, point = self._point(call, key)
        self._calls[(step, point)] += 1
        fault = next((f for f in self.faults if (f.step, f.point) == (step, point)), None)
        if fault is None:
            return self._deliver(call, key, step, point)
        return await self._faulty(fault, self._calls[(step, point)], call, key, timeout)

    async def _faulty(
        self, fault: Fault, nth: int, call: RemoteCall, key: str | None, timeout: float
    ) -> dict[str, Any]:
        """The `nth` call at the point of `fault`."""
        kind = fault.kind
        if kind is FaultKind.REFUSED:
            self._stopped(fault, call, key)
            raise BusinessRefusal(fault.code, f"{fault} (injected)", 409)
        if kind is FaultKind.EXHAUSTED or (kind is FaultKind.EXHAUSTED_APPLIED and nth > 1):
            self._stopped(fault, call, key)
            raise TransientFault("injected_fault", f"{fault} (injected)", 503)
        if kind is FaultKind.TRANSIENT and nth <= fault.times:
            self._stopped(fault, call, key)
            raise TransientFault("injected_fault", f"{fault} (injected)", 503)
        if kind is FaultKind.LATE or (kind is FaultKind.LATE_THEN_REFUSED and nth == 1):
            assert key is not None, "only an action arrives late"
            self._stopped(fault, call, key)
            self._held.append((call, key))
            raise TransientFault("timeout", f"{fault}: no answer in {timeout}s (injected)")
        if kind is FaultKind.LATE_THEN_REFUSED:
            self._stopped(fault, call, key)
            raise BusinessRefusal(fault.code, f"{fault} (injected)", 409)
        if kind is FaultKind.STOP_BEFORE and nth == 1:
            self._stopped(fault, call, key)
            await self._die()
        answer = self._deliver(call, key, fault.step, fault.point)
        if kind is FaultKind.STOP_AFTER and nth == 1:
            await self._die()
        if kind in (FaultKind.ANSWER_LOST, FaultKind.EXHAUSTED_APPLIED) and nth == 1:
            raise TransientFault("timeout", f"{fault}: the answer was lost (injected)")
        return answer

    def _deliver(
        self, call: RemoteCall, key: str | None, step: str, point: Point
    ) -> dict[str, Any]:
        try:
            return self.participants.receive(call, key)
        finally:
            if point is not Point.ACTION:
                self.deliver_late(step)  # they were on their way: now they arrive

    def deliver_late(self, step: str | None = None) -> None:
        """The held calls of `step` (of every step: None) reach their service; their answers
        go nowhere (their caller gave up long ago)."""
        arriving = [(c, k) for c, k in self._held if step is None or parse_key(k)[1] == step]
        self._held = [held for held in self._held if held not in arriving]
        for call, key in arriving:
            with contextlib.suppress(BusinessRefusal):
                self.participants.receive(call, key)

    def _stopped(self, fault: Fault, call: RemoteCall, key: str | None) -> None:
        """The call was made, and stopped on its way: the participants' log shows it, so that
        what the orchestrator decided is seen whatever became of its calls."""
        if key is None:  # a settle call: it names the action
            assert call.body is not None
            action_key = str(call.body["key"])
        else:
            saga_id, step, _ = parse_key(key)
            action_key = step_key(saga_id, step, Phase.ACTION)
        self.participants.arrivals.append(
            Arrival(fault.step, fault.point, action_key, Effect.FAULT)
        )

    async def _die(self) -> None:
        self.crashed.set()
        await asyncio.get_running_loop().create_future()  # never answered: cancelled instead

    @staticmethod
    def _point(call: RemoteCall, key: str | None) -> tuple[str, Point]:
        if key is None:
            if call.path == SETTLE_PATH and call.body and "key" in call.body:
                return parse_key(str(call.body["key"]))[1], Point.SETTLE
            return "", Point.ACTION  # not a step's call: the model says what it makes of it
        _, step, phase = parse_key(key)
        return step, Point(phase)
