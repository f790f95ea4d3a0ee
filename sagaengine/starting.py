"""Starting a saga exactly once: one path for every saga.

A start validates its request, builds the saga's data (`StartRules.prepare`, which may refuse
with a 4xx), records the saga and makes its first call before it answers: the first step (the
order's lock, the seat's hold) is also the check that may refuse the start. Refused with one of
the refusals its definition names, the saga is removed and the client gets that refusal as if
no saga had been recorded; otherwise the saga stands and goes on. A start re-sent with its key
answers its own saga (or 422 if the key started a saga for another request); a start for an
object another saga holds answers that saga, or `busy` when it carries a key of its own.
"""

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from sagaengine import context, tracing
from sagaengine.definition import RemoteCall, SagaDefinition, SagaStatus
from sagaengine.errors import Refusal
from sagaengine.participant import IdempotencyKeyReused
from sagaengine.runner import SagaRunner, StartRefused, StartUnreachable
from sagaengine.store import SagaState


class SagaNotFound(Refusal):
    status_code = 404
    code = "saga_not_found"


class InvalidStart(Refusal):
    status_code = 422
    code = "validation_error"


class DependencyUnavailable(Refusal):
    status_code = 503
    code = "dependency_unavailable"


class ReplicaStopping(Refusal):
    """This replica is shutting down (SIGTERM): the start is for another replica, or for this
    one once restarted. Nothing was recorded."""

    status_code = 503
    code = "replica_stopping"


# How often a start that found another request's saga still `starting` looks again: that
# request is making the saga's first call, and decides within a step timeout.
DECISION_POLL_SECONDS = 0.05


class Lookup:
    """What a start's `prepare` may read: sagas of this engine, and participants (GET)."""

    def __init__(self, runner: SagaRunner):
        self._runner = runner

    async def saga(self, saga_id: str, *saga_types: str) -> SagaState:
        """The saga of that id (of one of `saga_types`, if given), or SagaNotFound (404)."""
        return await find_saga(self._runner, saga_id, *saga_types)

    async def live_saga(self, lock_key: str) -> SagaState | None:
        """The saga that holds (or last held) a business object, if any."""
        return await self._runner.store.find_live_by_lock_key(lock_key)

    def data(self, saga: SagaState) -> Any:
        """A saga's typed data, by its own definition."""
        definition = self._runner.definitions[(saga.type, saga.version)]
        return definition.data_of(saga.payload, saga.results)

    async def call(self, call: RemoteCall) -> dict[str, Any]:
        """A read from a participant; raises the engine's BusinessRefusal or TransientFault."""
        client = self._runner.clients[call.service]
        return await client.send(call, None, self._runner.step_timeout)


async def find_saga(runner: SagaRunner, saga_id: str, *saga_types: str) -> SagaState:
    """The saga of that id (of one of `saga_types`, if given), or SagaNotFound (404)."""
    try:
        parsed = uuid.UUID(saga_id)
    except ValueError:
        raise SagaNotFound(f"no saga {saga_id!r}") from None
    state = await runner.store.get(parsed)
    if state is None or (saga_types and state.type not in saga_types):
        raise SagaNotFound(f"no saga {saga_id!r}")
    return state


async def start_saga(
    runner: SagaRunner,
    definition: SagaDefinition[Any],
    request: BaseModel | Mapping[str, Any],
    client_key: str | None,
) -> SagaState:
    """Start a saga of `definition` for `request` (its `StartRules.request` model, or its data
    model: validated here if given as a mapping). Raises a Refusal (4xx, 503) when the start
    is refused; otherwise answers the saga: a new one, or the one this start already made."""
    rules = definition.start
    model = rules.request or definition.data
    if not isinstance(request, BaseModel):
        try:
            request = model.model_validate(request)
        except ValidationError as invalid:
            first = invalid.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InvalidStart(f"{where}: {first['msg']}" if where else first["msg"]) from None
    if rules.prepare is not None:
        data = await rules.prepare(request, Lookup(runner))
    else:
        data = definition.data.model_validate(request.model_dump())
    return await start_prepared(runner, definition, data, client_key)


async def start_prepared(
    runner: SagaRunner, definition: SagaDefinition[Any], data: Any, client_key: str | None
) -> SagaState:
    """Record a new saga durably and start it, unless the client key or the business object
    already has one: then that saga is the answer, never a second one."""
    if runner.stopping:
        raise ReplicaStopping("this orchestrator is shutting down: start the saga again")
    rules = definition.start
    payload = definition.payload_of(data)
    identity = rules.identity(data) if rules.identity is not None else payload
    lock_key = rules.lock_key(data)
    saga = await _record_and_begin(runner, definition, payload, client_key, lock_key, identity)
    if (
        rules.done is not None
        and saga.status is SagaStatus.COMPLETED
        and (client_key is None or saga.client_key != client_key)
    ):
        raise rules.done(data)
    return saga


async def _record_and_begin(
    runner: SagaRunner,
    definition: SagaDefinition[Any],
    payload: dict[str, Any],
    client_key: str | None,
    lock_key: str,
    identity: Mapping[str, Any],
) -> SagaState:
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
            context.request_id.get(),
            saga_id=saga_id,
            first=first,
            trace_parent=tracing.current_traceparent(),
            keys=definition.business_keys(payload, {}),
        )
        if created is not None:
            try:
                state = await runner.begin(created, token)
            except StartRefused as refused:
                error = refused.error
                status = error.status_code or 409
                raise Refusal(error.message, code=error.code, status_code=status) from None
            except StartUnreachable as unreachable:
                raise DependencyUnavailable(
                    f"a service the saga needs is unavailable: {unreachable.error.message}"
                ) from None
            runner.metrics.sagas_started.labels(definition.name).inc()
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
                raise Refusal(
                    f"saga {live.id} is already working on this; retry with its key, or wait",
                    code=definition.start.busy,
                )
            return live  # the caller tells a finished one's object apart
        # The saga we collided with was refused, or compensated, in between: try again.
    raise Refusal("the saga could not be recorded, please retry", code="start_contention")


async def _decided(runner: SagaRunner, state: SagaState | None) -> SagaState | None:
    """`state`, once its start is decided: as it then stands, or None if it was refused (and
    removed). A saga whose deciding request died stays `starting` until recovery runs it: after
    a step timeout and a second it is answered as it stands."""
    if state is None or not state.starting:
        return state
    deadline = time.monotonic() + runner.step_timeout + 1.0
    with runner.metrics.starts_waiting.track_inprogress():
        while state is not None and state.starting and time.monotonic() < deadline:
            await asyncio.sleep(DECISION_POLL_SECONDS)  # another request's call: polled, bounded
            state = await runner.store.get(state.id)
    return state


def _same_request(saga: SagaState, identity: Mapping[str, Any], client_key: str) -> SagaState:
    if any(saga.payload.get(name) != value for name, value in identity.items()):
        raise IdempotencyKeyReused(
            f"Idempotency-Key {client_key!r} already started a saga for another request"
        )
    return saga
