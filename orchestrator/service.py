"""Use cases of the orchestrator's API: start a saga exactly once, read it, retry it."""

import uuid
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from common import logs
from common.errors import DomainError, NotFound
from common.idempotency import IdempotencyKeyReused
from orchestrator import metrics
from orchestrator.clients import BusinessRefusal, ServiceClient, TransientFault
from orchestrator.definitions import CURRENT
from orchestrator.runner import SagaRunner
from orchestrator.saga import RemoteCall, SagaDefinition, SagaStatus
from orchestrator.store import SagaState


class OrderNotFound(NotFound):
    code = "order_not_found"


class OrderNotPayable(DomainError):
    code = "order_not_payable"


class SagaNotFound(NotFound):
    code = "saga_not_found"


class SagaNotRetryable(DomainError):
    code = "saga_not_retryable"


class PaymentInProgress(DomainError):
    code = "payment_in_progress"


class SeatNotFound(NotFound):
    code = "seat_not_found"


class ConcertNotFound(NotFound):
    code = "concert_not_found"


class SeatTaken(DomainError):
    code = "seat_taken"


class DependencyUnavailable(DomainError):
    status_code = 503
    code = "dependency_unavailable"


UNPAYABLE = ("PAID", "CANCELLED")


async def _read(client: ServiceClient, path: str, timeout: float) -> dict[str, Any]:
    """A read between services: retried briefly, since it changes nothing."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=0.1, max=1),
            retry=retry_if_exception_type(TransientFault),
            reraise=True,
        ):
            with attempt:
                return await client.send(RemoteCall(client.name, "GET", path), None, timeout)
    except TransientFault as fault:
        raise DependencyUnavailable(f"the {client.name} service is unavailable: {fault}") from fault
    raise AssertionError("unreachable")


def _unexpected(client: ServiceClient, refusal: BusinessRefusal) -> DependencyUnavailable:
    """A read between services refused for a reason the client's input cannot explain (a bad
    token, say): the dependency is unusable right now, which is a 503, not a 500."""
    return DependencyUnavailable(
        f"the {client.name} service refused a read: {refusal.code} ({refusal.status_code})"
    )


async def start_saga(
    runner: SagaRunner,
    definition: SagaDefinition,
    payload: dict[str, Any],
    client_key: str | None,
    lock_key: str,
    identity: dict[str, Any] | None = None,
) -> SagaState:
    """Record a new saga durably and start running it, unless the client key or the business
    object already has one: then that saga is the answer, never a second one. `identity` is
    the part of the payload that a repeated request with the same key must match (by default,
    all of it)."""
    identity = payload if identity is None else identity
    store = runner.store
    for _ in range(3):
        token = runner.owner.lease_token()
        created = await store.create(
            definition, payload, client_key, lock_key, token, logs.request_id.get()
        )
        if created is not None:
            metrics.SAGAS_STARTED.labels(definition.name).inc()
            runner.spawn(created.id, token, created)
            return created
        if client_key is not None:
            same_key = await store.find_by_client_key(definition.name, client_key)
            if same_key is not None:
                return _same_request(same_key, identity, client_key)
        live = await store.find_live_by_lock_key(lock_key)
        if live is not None:
            if client_key is not None:
                # Another request's saga holds this object. Answering with it would leave this
                # key unrecorded, and a later retry with it could get another saga or a 409.
                raise PaymentInProgress(
                    f"saga {live.id} is already paying for this; retry with its key, or wait"
                )
            return live
        # The saga we collided with was compensated in between: the object is free again.
    raise DomainError("the saga could not be recorded, please retry", code="start_contention")


def _same_request(saga: SagaState, identity: dict[str, Any], client_key: str) -> SagaState:
    if any(saga.payload.get(name) != value for name, value in identity.items()):
        raise IdempotencyKeyReused(
            f"Idempotency-Key {client_key!r} already started a saga for another request"
        )
    return saga


async def _refused_unless_keyed(
    runner: SagaRunner,
    definition: SagaDefinition,
    client_key: str | None,
    identity: dict[str, Any],
    refusal: DomainError,
) -> SagaState:
    """A start about to be refused is judged together with its key, once more.

    The key is looked up before the checks, and a check reads another service (it may be slow,
    or retried). A re-sent start whose lookup ran before its first request recorded the saga,
    and whose check ran after that saga finished, finds a paid order (or a taken seat) and no
    saga for its key: refused, while its own saga took the money. Whatever made the check
    refuse was done by a saga recorded before it, so a second lookup finds that saga if it is
    this key's: the re-send gets its own saga, as every retry with a key must."""
    if client_key is not None:
        existing = await runner.store.find_by_client_key(definition.name, client_key)
        if existing is not None:
            return _same_request(existing, identity, client_key)
    raise refusal


async def start_payment(
    runner: SagaRunner,
    order_client: ServiceClient,
    order_id: int,
    client_key: str | None,
    timeout: float,
) -> SagaState:
    definition = CURRENT["payment"]
    identity = {"order_id": order_id}
    if client_key is not None:
        existing = await runner.store.find_by_client_key(definition.name, client_key)
        if existing is not None:
            return _same_request(existing, identity, client_key)
    try:
        order = await _read(order_client, f"/orders/{order_id}", timeout)
    except BusinessRefusal as refusal:
        if refusal.status_code == 404:
            raise OrderNotFound(f"order {order_id} does not exist") from refusal
        raise _unexpected(order_client, refusal) from refusal
    if order["status"] in UNPAYABLE:
        refused = OrderNotPayable(f"order {order_id} is {order['status']} and cannot be paid")
        return await _refused_unless_keyed(runner, definition, client_key, identity, refused)
    # The order as requested goes with the saga, for its outcome event; the steps themselves
    # reread it under the order's lock (step 1) and use that.
    snapshot = {k: order.get(k) for k in ("user_id", "amount", "items")}
    payload = {**identity, "order": snapshot}
    saga = await start_saga(
        runner, definition, payload, client_key, f"order:{order_id}", identity=identity
    )
    if saga.status is SagaStatus.COMPLETED and (
        client_key is None or saga.client_key != client_key
    ):
        raise OrderNotPayable(f"order {order_id} is already paid")
    return saga


async def start_reservation(
    runner: SagaRunner,
    concert_client: ServiceClient,
    request: dict[str, int],
    client_key: str | None,
    timeout: float,
) -> SagaState:
    """Reserve a seat for a user. Each user's attempt at a seat is its own saga (two users racing
    for one seat are two sagas, and one of them wins the hold)."""
    definition = CURRENT["reservation"]
    concert_id, seat_id, user_id = request["concert_id"], request["seat_id"], request["user_id"]
    if client_key is not None:
        existing = await runner.store.find_by_client_key(definition.name, client_key)
        if existing is not None:
            return _same_request(existing, request, client_key)
    try:
        concert = await _read(concert_client, f"/concerts/{concert_id}", timeout)
    except BusinessRefusal as refusal:
        if refusal.status_code == 404:
            raise ConcertNotFound(f"concert {concert_id} does not exist") from refusal
        raise _unexpected(concert_client, refusal) from refusal
    seat = next((s for s in concert["seats"] if s["id"] == seat_id), None)
    if seat is None:
        raise SeatNotFound(f"concert {concert_id} has no seat {seat_id}")
    if seat["status"] == "RESERVED":
        refused = SeatTaken(f"seat {seat_id} is already reserved")
        return await _refused_unless_keyed(runner, definition, client_key, request, refused)
    payload = {**request, "price": concert["price"]}
    saga = await start_saga(
        runner,
        definition,
        payload,
        client_key,
        f"seat:{seat_id}:user:{user_id}",
        identity=request,
    )
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
