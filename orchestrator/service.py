"""Use cases of the orchestrator's API: start a saga exactly once, read it, retry it.

A start records its saga and makes the saga's first call before it answers: the first step (the
order's lock, the seat's hold) is also the check that may refuse the start. Refused with one of
the refusals its definition names, the saga is removed and the client gets that refusal (404,
409) as if no saga had been recorded; otherwise the saga stands and goes on. No read of the
order or the concert ahead of the saga, then: one call fewer on every payment, and no window
between a check and the saga it admits.
"""

import asyncio
import time
import uuid
from typing import Any

from common import logs
from common.errors import DomainError, NotFound
from common.idempotency import IdempotencyKeyReused
from orchestrator import metrics
from orchestrator.definitions import CURRENT
from orchestrator.runner import SagaRunner, StartRefused, StartUnreachable
from orchestrator.saga import SagaDefinition, SagaStatus
from orchestrator.store import SagaState


class OrderNotPayable(DomainError):
    code = "order_not_payable"


class SagaNotFound(NotFound):
    code = "saga_not_found"


class SagaNotRetryable(DomainError):
    code = "saga_not_retryable"


class PaymentInProgress(DomainError):
    code = "payment_in_progress"


class SeatTaken(DomainError):
    code = "seat_taken"


class DependencyUnavailable(DomainError):
    status_code = 503
    code = "dependency_unavailable"


# How often a start that found another request's saga still `starting` looks again: that
# request is making the saga's first call, and decides within a step timeout.
DECISION_POLL_SECONDS = 0.05


async def _decided(runner: SagaRunner, state: SagaState | None) -> SagaState | None:
    """`state`, once its start is decided: as it then stands, or None if it was refused (and
    removed). A saga whose deciding request died stays `starting` until recovery runs it: after
    a step timeout and a second it is answered as it stands."""
    if state is None or not state.starting:
        return state
    deadline = time.monotonic() + runner.step_timeout + 1.0
    with metrics.STARTS_WAITING.track_inprogress():
        while state is not None and state.starting and time.monotonic() < deadline:
            await asyncio.sleep(DECISION_POLL_SECONDS)  # another request's call: polled, bounded
            state = await runner.store.get(state.id)
    return state


async def start_saga(
    runner: SagaRunner,
    definition: SagaDefinition,
    payload: dict[str, Any],
    client_key: str | None,
    lock_key: str,
    identity: dict[str, Any] | None = None,
) -> SagaState:
    """Record a new saga durably and start it, unless the client key or the business object
    already has one: then that saga is the answer, never a second one. `identity` is the part
    of the payload that a repeated request with the same key must match (by default, all of
    it). Raises the first step's refusal as a DomainError when it refuses the start."""
    identity = payload if identity is None else identity
    store = runner.store
    for _ in range(3):
        token = runner.owner.lease_token()
        saga_id = uuid.uuid4()
        first = runner.first_call(definition, saga_id, payload)
        created = await store.create(
            definition,
            payload,
            client_key,
            lock_key,
            token,
            logs.request_id.get(),
            saga_id=saga_id,
            first=first,
        )
        if created is not None:
            try:
                state = await runner.begin(created, token)
            except StartRefused as refused:
                error = refused.error
                status = error.status_code or 409
                raise DomainError(error.message, code=error.code, status_code=status) from None
            except StartUnreachable as unreachable:
                raise DependencyUnavailable(
                    f"a service the saga needs is unavailable: {unreachable.error.message}"
                ) from None
            metrics.SAGAS_STARTED.labels(definition.name).inc()
            return state
        if client_key is not None:
            same_key = await _decided(
                runner, await store.find_by_client_key(definition.name, client_key)
            )
            if same_key is not None:
                return _same_request(same_key, identity, client_key)
        live = await _decided(runner, await store.find_live_by_lock_key(lock_key))
        if live is not None:
            if client_key is not None:
                # Another request's saga holds this object. Answering with it would leave this
                # key unrecorded, and a later retry with it could get another saga or a 409.
                raise PaymentInProgress(
                    f"saga {live.id} is already paying for this; retry with its key, or wait"
                )
            return live
        # The saga we collided with was refused, or compensated, in between: try again.
    raise DomainError("the saga could not be recorded, please retry", code="start_contention")


def _same_request(saga: SagaState, identity: dict[str, Any], client_key: str) -> SagaState:
    if any(saga.payload.get(name) != value for name, value in identity.items()):
        raise IdempotencyKeyReused(
            f"Idempotency-Key {client_key!r} already started a saga for another request"
        )
    return saga


async def start_payment(runner: SagaRunner, order_id: int, client_key: str | None) -> SagaState:
    """Pay an order: its saga's first step locks it, and refuses an unknown order (404) or one
    that cannot be paid (409)."""
    payload = {"order_id": order_id}
    saga = await start_saga(runner, CURRENT["payment"], payload, client_key, f"order:{order_id}")
    if saga.status is SagaStatus.COMPLETED and (
        client_key is None or saga.client_key != client_key
    ):
        raise OrderNotPayable(f"order {order_id} is already paid")
    return saga


async def start_reservation(
    runner: SagaRunner, request: dict[str, int], client_key: str | None
) -> SagaState:
    """Reserve a seat for a user. Each user's attempt at a seat is its own saga (two users racing
    for one seat are two sagas, and one of them wins the hold); its first step holds the seat,
    and refuses an unknown concert or seat (404) or a seat another holds or has reserved (409)."""
    seat_id, user_id = request["seat_id"], request["user_id"]
    lock_key = f"seat:{seat_id}:user:{user_id}"
    saga = await start_saga(runner, CURRENT["reservation"], request, client_key, lock_key)
    if saga.status is SagaStatus.COMPLETED and (
        client_key is None or saga.client_key != client_key
    ):
        raise SeatTaken(f"user {user_id} already reserved seat {seat_id}")
    return saga


async def get_saga(runner: SagaRunner, saga_id: str, saga_type: str | None = None) -> SagaState:
    try:
        parsed = uuid.UUID(saga_id)
    except ValueError:
        raise SagaNotFound(f"no saga {saga_id!r}") from None
    state = await runner.store.get(parsed)
    if state is None or (saga_type is not None and state.type != saga_type):
        raise SagaNotFound(f"no saga {saga_id!r}")
    return state


async def retry_saga(runner: SagaRunner, saga_id: str) -> SagaState:
    state = await get_saga(runner, saga_id)
    if state.status is not SagaStatus.NEEDS_ATTENTION or not await runner.retry(state):
        raise SagaNotRetryable(
            f"saga {saga_id} is {state.status}; only NEEDS_ATTENTION can be retried"
        )
    return await get_saga(runner, saga_id)
