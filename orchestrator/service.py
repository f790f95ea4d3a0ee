"""Use cases of the orchestrator's API beyond a start (`sagaengine.starting`, one path for
every saga): read a saga, retry one an operator looked at (recorded in the audit trail)."""

import logging
import uuid

from common.auth import Role
from common.errors import DomainError
from orchestrator.admin_queries import AdminQueries
from orchestrator.audit import AuditTrail
from sagaengine.context import request_id
from sagaengine.definition import SagaStatus
from sagaengine.runner import SagaRunner
from sagaengine.starting import find_saga
from sagaengine.store import SagaState


class SagaNotRetryable(DomainError):
    code = "saga_not_retryable"


class SagaNotCancellable(DomainError):
    code = "saga_not_cancellable"


async def get_saga(runner: SagaRunner, saga_id: str, *saga_types: str) -> SagaState:
    """The saga of that id (of one of `saga_types`, if given), or 404."""
    return await find_saga(runner, saga_id, *saga_types)


log = logging.getLogger(__name__)


async def retry_saga(runner: SagaRunner, saga_id: str) -> SagaState:
    state = await get_saga(runner, saga_id)
    if state.status is not SagaStatus.NEEDS_ATTENTION or not await runner.retry(state):
        raise SagaNotRetryable(
            f"saga {saga_id} is {state.status}; only NEEDS_ATTENTION can be retried"
        )
    return await get_saga(runner, saga_id)


async def operator_retry(
    runner: SagaRunner, audit: AuditTrail, role: Role, saga_id: str, reason: str | None
) -> SagaState:
    """An operator's retry, recorded in the audit trail with what came of it: accepted, or the
    code of its refusal (the error is raised again for the answer)."""
    try:
        state = await retry_saga(runner, saga_id)
    except DomainError as refusal:
        await _record(audit, role, "retry", saga_id, reason, refusal.code)
        raise
    await _record(audit, role, "retry", saga_id, reason, "accepted")
    return state


async def operator_cancel(
    runner: SagaRunner, audit: AuditTrail, role: Role, saga_id: str, reason: str
) -> SagaState:
    """An operator's cancellation of a saga before its pivot (RUNNING, or stuck), recorded in
    the audit trail: it goes forward no more, and compensates what it applied; 409 once it
    passed its pivot, or is final, or is going back already, or was cancelled."""
    try:
        state = await get_saga(runner, saga_id)
        cancelled = await runner.cancel(state, reason)
        if cancelled is None:
            raise SagaNotCancellable(
                f"saga {saga_id} is {state.status} at step {state.step}: only a saga that has "
                "not reached its pivot, and is not going back already, can be cancelled"
            )
    except DomainError as refusal:
        await _record(audit, role, "cancel", saga_id, reason, refusal.code)
        raise
    await _record(audit, role, "cancel", saga_id, reason, "accepted")
    return cancelled


class EventNotPending(DomainError):
    code = "event_not_pending"
    status_code = 409


async def operator_redeliver(
    admin: AdminQueries, audit: AuditTrail, role: Role, event_id: uuid.UUID, saga_id: str
) -> None:
    """An operator's "deliver it now" of a pending outbox event, recorded in the audit trail."""
    if not await admin.redeliver(event_id):
        await _record(audit, role, "redeliver", saga_id, None, EventNotPending.code)
        raise EventNotPending(f"event {event_id} is not waiting in the outbox")
    await _record(audit, role, "redeliver", saga_id, f"event {event_id}", "accepted")


async def operator_bulk_retry(
    runner: SagaRunner,
    audit: AuditTrail,
    role: Role,
    stuck: list[SagaState],
    reason: str | None,
) -> tuple[list[str], list[str]]:
    """Retry each of these NEEDS_ATTENTION sagas, each recorded in the audit trail as a
    `bulk_retry`: (the retried, the ones that no longer needed attention)."""
    retried, refused = [], []
    for state in stuck:
        saga_id = str(state.id)
        if await runner.retry(state):
            retried.append(saga_id)
            await _record(audit, role, "bulk_retry", saga_id, reason, "accepted")
        else:  # retried or cancelled by someone else in between
            refused.append(saga_id)
            await _record(audit, role, "bulk_retry", saga_id, reason, SagaNotRetryable.code)
    return retried, refused


async def _record(
    audit: AuditTrail, role: Role, action: str, saga_id: str, reason: str | None, result: str
) -> None:
    """Record an action once it is decided. If the trail cannot be written (its database went
    away after the action was taken), the action still stands and its answer says so: the
    line below, at ERROR, holds everything the trail would have, for whoever reconciles it."""
    line = ("operator (%s) %s of saga %s (reason %r): %s", role, action, saga_id, reason, result)
    try:
        await audit.record(
            role=role,
            action=action,
            saga_id=saga_id,
            reason=reason,
            result=result,
            request_id=request_id.get(),
        )
    except Exception:
        log.exception("audit trail not written; " + line[0], *line[1:])
        return
    log.info(*line)
