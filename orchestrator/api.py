import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from common.auth import require_admin_token
from common.errors import DomainError
from common.fields import Text
from common.web import OptionalIdempotencyKey
from orchestrator import service
from orchestrator.admin_queries import AdminQueries
from orchestrator.definitions import CURRENT
from orchestrator.schemas import (
    SagaOut,
    SagaPage,
    SagaStarted,
    SagaSummary,
    StartPayment,
    StartRefund,
    StartReservation,
    StepAttemptOut,
)
from sagaengine.definition import SagaStatus
from sagaengine.outage import unavailable
from sagaengine.runner import SagaRunner
from sagaengine.store import OutboxStatus, SagaState

router = APIRouter(tags=["sagas"])
admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin_token)])

WaitSeconds = Annotated[
    float | None,
    Query(ge=0, le=3600, description="seconds to wait for a final status (capped by the server)"),
]


def _runner(request: Request) -> SagaRunner:
    return request.app.state.runner


RunnerDep = Annotated[SagaRunner, Depends(_runner)]


def _admin(request: Request) -> AdminQueries:
    return request.app.state.admin


AdminDep = Annotated[AdminQueries, Depends(_admin)]


def summary(state: SagaState) -> SagaSummary:
    definition = CURRENT.get(state.type)
    described = definition.describe(state.payload) if definition else {}
    return SagaSummary(
        saga_id=str(state.id),
        type=state.type,
        status=state.status,
        definition_version=state.version,
        error=state.error,
        attention=state.attention,
        created_at=state.created_at,
        updated_at=state.updated_at,
        finished_at=state.finished_at,
        **described,
    )


async def detail(admin: AdminQueries, state: SagaState) -> SagaOut:
    attempts = await admin.attempts(state.id)
    steps = [
        StepAttemptOut(
            step=a.step_name,
            step_index=a.step,
            phase=a.phase,
            attempt=a.attempt,
            status=a.status,
            started_at=a.started_at,
            finished_at=a.finished_at,
            error=a.error,
            idempotency_key=a.idempotency_key,
            owner=a.owner,
            request=a.request,
            response=a.response,
        )
        for a in attempts
    ]
    return SagaOut(**summary(state).model_dump(), steps=steps)


async def _answer(runner: SagaRunner, state: SagaState, wait: float | None, max_wait: float):
    """202 once the saga is recorded; with ?wait=, 200 as soon as it is final. A saga is
    recorded before anything is waited for: if the database goes away meanwhile, the answer is
    the saga as last seen (202), never an error for a start that was accepted."""
    if wait is not None:
        try:
            state = await runner.wait_until_final(state.id, min(wait, max_wait)) or state
        except Exception as error:
            if not unavailable(error):
                raise
    body = SagaStarted(saga_id=str(state.id), status=state.status).model_dump()
    return JSONResponse(body, status_code=200 if wait is not None and state.is_final else 202)


@router.post("/payments", status_code=202, response_model=SagaStarted)
async def start_payment(
    body: StartPayment,
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    settings = request.app.state.settings
    state = await service.start_payment(runner, body.order_id, key)
    return await _answer(runner, state, wait, settings.max_wait_seconds)


@router.get("/payments/{saga_id}")
async def get_payment(saga_id: str, runner: RunnerDep, admin: AdminDep) -> SagaOut:
    return await detail(admin, await service.get_saga(runner, saga_id, "payment"))


@router.post("/reservations", status_code=202, response_model=SagaStarted)
async def start_reservation(
    body: StartReservation,
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    settings = request.app.state.settings
    state = await service.start_reservation(runner, body.model_dump(), key)
    return await _answer(runner, state, wait, settings.max_wait_seconds)


@router.get("/reservations/{saga_id}")
async def get_reservation(saga_id: str, runner: RunnerDep, admin: AdminDep) -> SagaOut:
    """A reservation saga, or the saga that cancels one."""
    state = await service.get_saga(runner, saga_id, "reservation", "reservation_cancellation")
    return await detail(admin, state)


@router.post("/reservations/{saga_id}/cancel", status_code=202, response_model=SagaStarted)
async def cancel_reservation(
    saga_id: str,
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    """Cancel a COMPLETED reservation: a new saga frees the seat and gives the price back."""
    settings = request.app.state.settings
    state = await service.start_reservation_cancellation(runner, saga_id, key)
    return await _answer(runner, state, wait, settings.max_wait_seconds)


@router.post("/refunds", status_code=202, response_model=SagaStarted)
async def start_refund(
    body: StartRefund,
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    """Refund a PAID order: the payment cancelled, the amount back, the order REFUNDED."""
    settings = request.app.state.settings
    state = await service.start_refund(runner, body.order_id, key)
    return await _answer(runner, state, wait, settings.max_wait_seconds)


@router.get("/refunds/{saga_id}")
async def get_refund(saga_id: str, runner: RunnerDep, admin: AdminDep) -> SagaOut:
    return await detail(admin, await service.get_saga(runner, saga_id, "refund"))


def _encode_cursor(state: SagaState) -> str:
    raw = f"{state.created_at.isoformat()}|{state.id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, saga_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(saga_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise DomainError(
            "the cursor is not one this API gave out", code="invalid_cursor", status_code=422
        ) from None


@admin.get("/sagas")
async def list_sagas(
    admin: AdminDep,
    status: SagaStatus | None = None,
    type: Annotated[Text | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[Text | None, Query(max_length=200)] = None,
) -> SagaPage:
    after = _decode_cursor(cursor) if cursor else None
    states = await admin.page(status=status, saga_type=type, limit=limit + 1, after=after)
    more = len(states) > limit
    states = states[:limit]
    return SagaPage(
        items=[summary(s) for s in states],
        next_cursor=_encode_cursor(states[-1]) if more else None,
    )


@admin.get("/sagas/{saga_id}")
async def get_saga(saga_id: str, runner: RunnerDep, admin: AdminDep) -> SagaOut:
    return await detail(admin, await service.get_saga(runner, saga_id))


@admin.post("/sagas/{saga_id}/retry", status_code=202)
async def retry_saga(saga_id: str, runner: RunnerDep) -> SagaStarted:
    state = await service.retry_saga(runner, saga_id)
    return SagaStarted(saga_id=str(state.id), status=state.status)


@admin.get("/stats")
async def stats(admin: AdminDep) -> dict[str, Any]:
    return {"sagas_by_status": await admin.count_by_status()}


@admin.get("/outbox")
async def outbox(
    admin: AdminDep,
    status: Annotated[OutboxStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The data-platform outbox: backlog counts, and the latest rows (newest first)."""
    rows = await admin.outbox_messages(status, limit)
    return {
        **await admin.outbox_backlog(),
        "items": [
            {
                "id": r.id,
                "event_id": str(r.event_id),
                "saga_id": str(r.saga_id),
                "aggregate_id": r.aggregate_id,
                "type": r.type,
                "status": r.status,
                "attempts": r.attempts,
                "occurred_at": r.occurred_at,
                "next_attempt_at": r.next_attempt_at,
                "delivered_at": r.delivered_at,
                "last_error": r.last_error,
                "payload": r.payload,
            }
            for r in rows
        ],
    }
