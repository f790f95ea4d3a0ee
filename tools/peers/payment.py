"""The payment saga as our orchestrator runs it, for the peers that run it on another engine.

Everything but the durability engine is ours, so that `make bench` compares engines and nothing
else: the saga definition (`orchestrator.payment_saga.PAYMENT_SAGA`, its calls and compensations),
the state machine that decides what follows each outcome (`sagaengine.decisions`), the idempotency
keys, the HTTP clients and their error classification (`sagaengine.http`), and the timeouts
and retry budgets (`orchestrator.config.Settings`, from the same environment variables).

An engine plugs in one thing: how one remote call, with its retries, runs as a durable step
(`Execute`): `perform` (our retry loop in one step) or `attempt_call` (one attempt, for an engine
that retries itself). A call's result is plain JSON (`CallResult`), so every engine can record it.

The peers do the work ours does for a payment, as a user of their engine meets the same contract:
one workflow per order (`workflow_id`, as ours holds one live saga per order), and, once the saga
is final, the outcome event ours writes to its outbox (`orchestrator.payment_saga.outcome_event`,
the same body) delivered to the data platform as the workflow's last durable step, under an event
id derived from the workflow's (the platform deduplicates by it). The order is read before the
workflow starts by the peers' fronts (`tools.peers.front`).
"""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypedDict

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from orchestrator.config import Settings
from orchestrator.definitions import SAGAS
from orchestrator.payment_saga import PAYMENT_SAGA, Payment
from sagaengine.decisions import CallOutcome, Position, after_action, after_compensation
from sagaengine.definition import (
    Phase,
    RemoteCall,
    RetryPolicy,
    SagaOutcome,
    SagaStatus,
    StepContext,
    StepKind,
    idempotency_key,
)
from sagaengine.http import BusinessRefusal, ServiceClient, TransientFault

DATA_PLATFORM = "data_platform"  # the client of the outcome event's delivery
EVENT = "event"  # its retry budget: the relay's backoff, and no giving up in practice
# Ours' relay retries an event until it is delivered; an engine's step needs a bound: a week.
EVENT_ATTEMPTS = 2**31 - 1  # Temporal's maximum_attempts is an int32
EVENT_MAX_SECONDS = 7 * 24 * 3600.0


class CallSpec(TypedDict):
    """One remote call of a saga, as an engine records a step's input."""

    service: str
    method: str
    path: str
    body: dict[str, Any] | None
    key: str  # the step's Idempotency-Key (for a settle call: the action key it asks about)
    send_key: bool  # False for a settle call, which names the key in its body instead
    policy: str  # "action", "compensation" or "event": whose retry budget


class CallResult(TypedDict):
    outcome: str  # a CallOutcome
    response: dict[str, Any] | None
    error: dict[str, Any] | None


Execute = Callable[[CallSpec], Awaitable[CallResult]]


def spec(call: RemoteCall, key: str, policy: Phase, *, send_key: bool = True) -> CallSpec:
    return CallSpec(
        service=call.service,
        method=call.method,
        path=call.path,
        body=call.body,
        key=key,
        send_key=send_key,
        policy=str(policy),
    )


def policies(settings: Settings) -> dict[str, RetryPolicy]:
    return {
        str(Phase.ACTION): settings.action_policy(),
        str(Phase.COMPENSATION): settings.compensation_policy(),
        EVENT: RetryPolicy(
            EVENT_ATTEMPTS,
            settings.relay_backoff_initial,
            settings.relay_backoff_max,
            EVENT_MAX_SECONDS,
        ),
    }


def service_urls(settings: Settings) -> dict[str, str]:
    """Where the peers' clients go: the domain services, and the data platform for the event."""
    urls = settings.participant_urls(SAGAS.participants.values())
    return {**urls, DATA_PLATFORM: settings.data_platform_url}


def workflow_id(order_id: int) -> str:
    """One workflow per order, as ours holds one live saga per order: a repeated start of the
    same order finds the workflow already there and answers its result."""
    return f"payment-{order_id}"


def event_id(saga_id: str) -> str:
    """The outcome event's id, stable across a workflow's replays and its step's retries, so
    that the data platform keeps one copy however often it is delivered."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"saga:{saga_id}:outcome"))


async def attempt_call(
    clients: dict[str, ServiceClient],
    call: CallSpec,
    *,
    timeout: float,
    retry_on: frozenset[str] = frozenset(),
    unknown_before: bool = False,
) -> CallResult:
    """One attempt of a remote call: its success, or its business refusal (final); a transient
    fault is raised (`TransientFault`), to be retried under the same key. A refusal after an
    attempt that got no answer (`unknown_before`) is an unknown outcome, as in our runner: the
    earlier attempt may have applied. A refusal meaning "not yet" (`retry_on`) is retried like a
    transient fault (the payment saga declares none)."""
    client = clients[call["service"]]
    remote = RemoteCall(call["service"], call["method"], call["path"], call["body"])
    try:
        response = await client.send(remote, call["key"] if call["send_key"] else None, timeout)
    except BusinessRefusal as refusal:
        if refusal.code in retry_on:
            raise TransientFault(refusal.code, refusal.message, refusal.status_code) from refusal
        outcome = CallOutcome.EXHAUSTED if unknown_before else CallOutcome.REFUSED
        return CallResult(outcome=outcome, response=None, error=refusal.as_json())
    return CallResult(outcome=CallOutcome.SUCCEEDED, response=response, error=None)


async def perform(
    clients: dict[str, ServiceClient],
    call: CallSpec,
    *,
    timeout: float,
    policy: RetryPolicy,
) -> CallResult:
    """One remote call with its retries, as `sagaengine.runner.SagaRunner._call` makes it: the
    same key on every attempt, transient faults retried with exponential backoff and jitter within
    the budget (then the outcome is unknown: EXHAUSTED), a business refusal final at once."""
    unknown = False
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_seconds),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_backoff, max=policy.max_backoff, jitter=policy.initial_backoff
        ),
        retry=retry_if_exception_type(TransientFault),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                try:
                    return await attempt_call(
                        clients,
                        call,
                        timeout=timeout,
                        retry_on=policy.retry_on,
                        unknown_before=unknown,
                    )
                except TransientFault:
                    unknown = True
                    raise
    except TransientFault as fault:
        return CallResult(outcome=CallOutcome.EXHAUSTED, response=None, error=fault.as_json())
    raise AssertionError("unreachable: tenacity either returns or raises")


def budgets(settings: Settings) -> dict[str, Any]:
    """The call timeout and each phase's retry budget, as JSON (a Temporal workflow's input)."""
    return {
        "step_timeout": settings.step_timeout,
        **{
            phase: {
                "attempts": policy.attempts,
                "initial_backoff": policy.initial_backoff,
                "max_backoff": policy.max_backoff,
                "max_seconds": policy.max_seconds,
            }
            for phase, policy in policies(settings).items()
        },
    }


class SagaResult(TypedDict):
    saga_id: str
    status: str  # COMPLETED, COMPENSATED, or NEEDS_ATTENTION (an operator's turn, as ours)
    error: dict[str, Any] | None


async def run_payment_saga(
    saga_id: str,
    order_id: int,
    order: dict[str, Any],
    execute: Execute,
    now: Callable[[], datetime],
) -> SagaResult:
    """The payment saga, driven by our state machine; each call is one durable step of the engine
    (`execute`), and so is the delivery of its outcome event once it is final. Deterministic given
    the results of `execute`, as a workflow must be. `order`: the order as the front read it
    (`user_id`, `amount`, `items`), for the event if step 1 never ran, as ours keeps it in the
    saga's payload. `now`: the engine's clock for the event's time (a workflow's own, if it has
    one)."""
    definition = PAYMENT_SAGA
    payload = {"order_id": order_id, "order": order}
    results: dict[str, dict[str, Any]] = {}
    error: dict[str, Any] | None = None
    position = Position(SagaStatus.RUNNING, 0, Phase.ACTION)
    while position.status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
        step = definition.steps[position.step]
        action_key = idempotency_key(saga_id, step, Phase.ACTION)
        ctx = StepContext(saga_id, definition.data_of(payload, results), action_key)
        if position.status is SagaStatus.COMPENSATING:
            assert step.compensation is not None
            key = idempotency_key(saga_id, step, Phase.COMPENSATION)
            got = await execute(spec(step.compensation(ctx), key, Phase.COMPENSATION))
            outcome = CallOutcome(got["outcome"])
            if outcome is not CallOutcome.SUCCEEDED:
                return _attention(saga_id, step.name, Phase.COMPENSATION, got["error"])
            position = after_compensation(definition, position.step, outcome)
            continue
        got = await execute(spec(step.action(ctx), action_key, Phase.ACTION))
        outcome, response, failure = CallOutcome(got["outcome"]), got["response"], got["error"]
        if outcome is CallOutcome.EXHAUSTED and step.kind is StepKind.PIVOT:
            # Its answer was lost: ask the service whether it went through (see the runner).
            settled = await execute(
                spec(step.settle_call(ctx), action_key, Phase.COMPENSATION, send_key=False)
            )
            if settled["outcome"] != CallOutcome.SUCCEEDED:
                return _attention(saga_id, step.name, Phase.ACTION, settled["error"] or failure)
            if settled["response"]["outcome"] == "APPLIED":
                outcome, response = CallOutcome.SUCCEEDED, settled["response"]["response"]
            else:
                outcome = CallOutcome.REFUSED
                failure = {
                    "code": "action_not_applied",
                    "message": f"{step.name} did not go through after a fault",
                    "status_code": None,
                }
        position = after_action(definition, position.step, outcome)
        if position.status is SagaStatus.NEEDS_ATTENTION:
            return _attention(saga_id, step.name, Phase.ACTION, failure)
        if outcome is CallOutcome.SUCCEEDED:
            results[step.name] = response or {}
        else:
            error = {**(failure or {}), "step": step.name}
    data = definition.data_of(payload, results)
    outcome = SagaOutcome(saga_id, position.status, data, error)
    await execute(event_call(outcome, now()))
    return SagaResult(saga_id=saga_id, status=str(position.status), error=error)


def event_call(outcome: SagaOutcome[Payment], occurred_at: datetime) -> CallSpec:
    """The delivery of a final saga's event to the data platform (`POST /events`), with the body
    ours' outbox relay sends for the same outcome. The platform deduplicates by event id: the
    call needs no Idempotency-Key."""
    event = PAYMENT_SAGA.outcome_event(outcome)
    assert event is not None  # the payment saga tells the platform of every outcome
    key = event_id(outcome.saga_id)
    body = {
        "event_id": key,
        "type": event.type,
        "occurred_at": occurred_at.isoformat(),
        "payload": event.payload,
    }
    return CallSpec(
        service=DATA_PLATFORM,
        method="POST",
        path="/events",
        body=body,
        key=key,
        send_key=False,
        policy=EVENT,
    )


def _attention(saga_id: str, step: str, phase: Phase, error: dict[str, Any] | None) -> SagaResult:
    return SagaResult(
        saga_id=saga_id,
        status=str(SagaStatus.NEEDS_ATTENTION),
        error={**(error or {}), "step": step, "phase": str(phase)},
    )
