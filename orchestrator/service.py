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
from orchestrator.definitions import CURRENT
from sagaengine import metrics
from sagaengine.definition import RemoteCall, SagaDefinition, SagaStatus
from sagaengine.http import BusinessRefusal, TransientFault
from sagaengine.runner import SagaRunner, StartRefused, StartUnreachable
from sagaengine.store import SagaState


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


class OrderNotFound(NotFound):
    code = "order_not_found"


class OrderNotRefundable(DomainError):
    code = "order_not_refundable"


class RefundInProgress(DomainError):
    code = "refund_in_progress"


class ReservationNotCancellable(DomainError):
    code = "reservation_not_cancellable"


class CancellationInProgress(DomainError):
    code = "cancellation_in_progress"


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
    busy: type[DomainError] = PaymentInProgress,
) -> SagaState:
    """Record a new saga durably and start it, unless the client key or the business object
    already has one: then that saga is the answer, never a second one. `identity` is the part
    of the payload that a repeated request with the same key must match (by default, all of
    it); `busy`, what a keyed start gets for an object another request's saga is working on.
    Raises the first step's refusal as a DomainError when it refuses the start."""
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
            if client_key is not None and not live.is_final:
                # Another request's saga holds this object. Answering with it would leave this
                # key unrecorded, and a later retry with it could get another saga or a 409.
                raise busy(
                    f"saga {live.id} is already working on this; retry with its key, or wait"
                )
            return live  # the caller tells a finished one's object apart
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


async def start_refund(runner: SagaRunner, order_id: int, client_key: str | None) -> SagaState:
    """Refund a paid order (the seed's payment cancellation). Its data comes from the saga that
    paid it; its first step takes the order's lock (PAID -> REFUND_IN_PROGRESS), and refuses
    an order that is not PAID (409 order_not_refundable). One refund per order, ever."""
    payment = await runner.store.find_live_by_lock_key(f"order:{order_id}")
    if payment is None or payment.type != "payment" or payment.status is not SagaStatus.COMPLETED:
        raise await _not_refundable(runner, order_id, payment)
    order = payment.results["start_order_payment"]
    payload = {
        "order_id": order_id,
        "paying_saga_id": str(payment.id),
        "user_id": order["user_id"],
        "amount": order["amount"],
        "items": order.get("items", []),
    }
    saga = await start_saga(
        runner,
        CURRENT["refund"],
        payload,
        client_key,
        f"refund:order:{order_id}",
        identity={"order_id": order_id},
        busy=RefundInProgress,
    )
    if saga.status is SagaStatus.COMPLETED and (
        client_key is None or saga.client_key != client_key
    ):
        raise OrderNotRefundable(f"order {order_id} is refunded already")
    return saga


async def _not_refundable(
    runner: SagaRunner, order_id: int, payment: SagaState | None
) -> DomainError:
    """Why an order with no completed payment saga here cannot be refunded: it does not exist
    (404), or it is not paid, or (paid long ago) the saga that paid it was purged (409)."""
    if payment is not None:
        return OrderNotRefundable(f"order {order_id} is being paid, not paid (saga {payment.id})")
    try:
        call = RemoteCall("order", "GET", f"/orders/{order_id}")
        order = await runner.clients["order"].send(call, None, runner.step_timeout)
    except BusinessRefusal as refusal:
        if refusal.status_code == 404:
            return OrderNotFound(f"order {order_id} does not exist")
        return DependencyUnavailable(f"the order service refused a read: {refusal.code}")
    except TransientFault as fault:
        return DependencyUnavailable(f"the order service is unavailable: {fault.message}")
    if order["status"] != "PAID":
        return OrderNotRefundable(f"order {order_id} is {order['status']}, not PAID")
    return OrderNotRefundable(
        f"order {order_id} was paid longer ago than sagas are kept (purged): refund it by hand"
    )


async def start_reservation_cancellation(
    runner: SagaRunner, reservation_saga_id: str, client_key: str | None
) -> SagaState:
    """Cancel a COMPLETED reservation: the seat free again, the price back. Its data comes from
    the reservation saga; its first step takes the reservation (CONFIRMED -> CANCELLING). One
    cancellation per reservation, ever."""
    reservation = await get_saga(runner, reservation_saga_id, "reservation")
    if reservation.status is not SagaStatus.COMPLETED:
        raise ReservationNotCancellable(
            f"reservation saga {reservation_saga_id} is {reservation.status}, not COMPLETED"
        )
    hold = reservation.results["hold_seat"]
    payload = {
        "reservation_saga_id": str(reservation.id),
        "reservation_id": hold["reservation_id"],
        "concert_id": hold["concert_id"],
        "seat_id": hold["seat_id"],
        "user_id": hold["user_id"],
        "amount": hold["price"],
        # The inverse operations find what they give back by the keys of the saga that paid.
        "paying_saga_id": str(reservation.id),
    }
    saga = await start_saga(
        runner,
        CURRENT["reservation_cancellation"],
        payload,
        client_key,
        f"cancel:reservation:{hold['reservation_id']}",
        identity={"reservation_saga_id": str(reservation.id)},
        busy=CancellationInProgress,
    )
    if saga.status is SagaStatus.COMPLETED and (
        client_key is None or saga.client_key != client_key
    ):
        raise ReservationNotCancellable(f"reservation saga {reservation_saga_id} is cancelled")
    return saga


async def get_saga(runner: SagaRunner, saga_id: str, *saga_types: str) -> SagaState:
    """The saga of that id (of one of `saga_types`, if given), or 404."""
    try:
        parsed = uuid.UUID(saga_id)
    except ValueError:
        raise SagaNotFound(f"no saga {saga_id!r}") from None
    state = await runner.store.get(parsed)
    if state is None or (saga_types and state.type not in saga_types):
        raise SagaNotFound(f"no saga {saga_id!r}")
    return state


async def retry_saga(runner: SagaRunner, saga_id: str) -> SagaState:
    state = await get_saga(runner, saga_id)
    if state.status is not SagaStatus.NEEDS_ATTENTION or not await runner.retry(state):
        raise SagaNotRetryable(
            f"saga {saga_id} is {state.status}; only NEEDS_ATTENTION can be retried"
        )
    return await get_saga(runner, saga_id)
