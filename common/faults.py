"""Fault injection for tests and demos: make a named operation of this process fail on purpose.

Mounted only when the process's settings enable it (never allowed in production). A rule applies
to the next `times` calls of its point (or every call when `times` is null):
- `error`: answer 503 before doing anything (a transient fault; the caller retries);
- `refuse`: answer 409 `injected_failure` as the operation's own business refusal: decided
  after its Idempotency-Key is claimed (and, like any refusal, not stored), so a retry of an
  action that already applied still replays its success, as with a real refusal;
- `delay`: wait `delay_ms`, then carry on (past the caller's timeout: an unknown outcome);
- `lose_response`: do the operation (it commits), then answer 503 as if the answer was lost;
- `hold`: stop the call at its point until a test releases it (`POST /_faults/release`), so that
  a race between two requests can be played in a chosen order; `delay_ms`, if set, bounds the
  wait (else a minute), so that a forgotten hold cannot hang a process.
"""

import contextlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from common.auth import require_service_token
from common.errors import DomainError, error_body


class FaultRule(BaseModel):
    point: str = Field(min_length=1)
    mode: Literal["error", "refuse", "delay", "lose_response", "hold"]
    times: int | None = Field(1, ge=1)
    delay_ms: int = Field(0, ge=0, le=120_000)


class Release(BaseModel):
    point: str = Field(min_length=1)
    count: int | None = Field(1, ge=1)  # null: every held call of the point


class InjectedFault(DomainError):
    code = "injected_failure"


HOLD_LIMIT_SECONDS = 60.0


class FaultInjector:
    def __init__(self) -> None:
        # One rule per point and kind: a refusal and a transient fault of one point can coexist.
        self._rules: dict[tuple[str, bool], FaultRule] = {}
        self._lock = threading.Lock()
        self.delayed_in_flight = 0  # calls held by a `delay` rule right now
        self._held: dict[str, deque[threading.Event]] = {}  # calls stopped by `hold`, in order

    def set(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules[(rule.point, rule.mode == "refuse")] = rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        for point in list(self._held):
            self.release(point, None)

    def release(self, point: str, count: int | None) -> int:
        """Let `count` held calls of `point` go on (all if None), the longest held first."""
        released = 0
        with self._lock:
            held = self._held.get(point, deque())
            while held and (count is None or released < count):
                held.popleft().set()
                released += 1
        return released

    def held(self) -> dict[str, int]:
        with self._lock:
            return {point: len(calls) for point, calls in self._held.items() if calls}

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules.values())

    def _take(self, point: str, *, refusal: bool) -> FaultRule | None:
        """The rule of `point` if it is of the kind asked for, counting one use of it."""
        with self._lock:
            rule = self._rules.get((point, refusal))
            if rule is None:
                return None
            if rule.times is not None:
                if rule.times <= 1:
                    del self._rules[(point, refusal)]
                else:
                    self._rules[(point, refusal)] = rule.model_copy(
                        update={"times": rule.times - 1}
                    )
            return rule

    def refuse_if_set(self, point: str) -> None:
        """Called by the idempotency store inside the operation's transaction."""
        if self._take(point, refusal=True) is not None:
            raise InjectedFault(f"injected business failure at {point}", status_code=409)

    def hit(self, point: str, request: Request) -> None:
        """Called before the operation: transient faults and delays."""
        rule = self._take(point, refusal=False)
        if rule is None:
            return
        if rule.mode == "lose_response":
            request.state.lose_response = point  # see `lose_responses` below
            return
        if rule.mode == "error":
            raise InjectedFault(f"injected transient fault at {point}", status_code=503)
        if rule.mode == "hold":
            self._hold(point, rule.delay_ms / 1000 or HOLD_LIMIT_SECONDS)
            return
        with self._lock:
            self.delayed_in_flight += 1
        try:
            time.sleep(rule.delay_ms / 1000)
        finally:
            with self._lock:
                self.delayed_in_flight -= 1

    def _hold(self, point: str, limit: float) -> None:
        gate = threading.Event()
        with self._lock:
            self._held.setdefault(point, deque()).append(gate)
        if not gate.wait(limit):
            with self._lock, contextlib.suppress(ValueError):
                self._held[point].remove(gate)

    def in_flight(self) -> int:
        with self._lock:
            return self.delayed_in_flight


def fault_point(point: str) -> Callable[[Request], None]:
    """A dependency marking a step endpoint as a place where a fault can be injected."""

    def check(request: Request) -> None:
        injector: FaultInjector | None = request.app.state.faults
        if injector is not None:
            injector.hit(point, request)

    return check


async def lose_responses(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Middleware: replace the answer of an operation marked `lose_response` by a 503."""
    response = await call_next(request)
    point = getattr(request.state, "lose_response", None)
    if point is None:
        return response
    body = error_body("injected_failure", f"injected lost response at {point}")
    return JSONResponse(body, status_code=503)


router = APIRouter(
    prefix="/_faults", tags=["faults"], dependencies=[Depends(require_service_token)]
)


class FaultState(BaseModel):
    rules: list[FaultRule]
    delayed_in_flight: int
    held: dict[str, int]  # calls stopped by a `hold` rule right now, by point


@router.get("")
def list_faults(request: Request) -> FaultState:
    faults: FaultInjector = request.app.state.faults
    return FaultState(
        rules=faults.rules(), delayed_in_flight=faults.in_flight(), held=faults.held()
    )


@router.post("", status_code=204)
def set_fault(rule: FaultRule, request: Request) -> None:
    request.app.state.faults.set(rule)


@router.delete("", status_code=204)
def clear_faults(request: Request) -> None:
    request.app.state.faults.clear()


@router.post("/release")
def release_held(body: Release, request: Request) -> dict[str, int]:
    """Let calls stopped by a `hold` rule go on, the longest held first."""
    return {"released": request.app.state.faults.release(body.point, body.count)}
