import base64
import binascii
import logging
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from common.auth import Role, admin_role, operator
from common.errors import DomainError
from common.fields import Text
from common.handlers import ErrorResponse
from common.web import OptionalIdempotencyKey
from orchestrator import service
from orchestrator.admin_queries import AdminQueries
from orchestrator.payment_saga import PAYMENT_SAGA, PayOrder
from orchestrator.refund_saga import REFUND_SAGA, RefundOrder
from orchestrator.reservation_cancellation_saga import (
    RESERVATION_CANCELLATION_SAGA,
    CancelReservation,
)
from orchestrator.reservation_saga import RESERVATION_SAGA, ReserveSeat
from orchestrator.schemas import SagaOut, SagaPage, SagaStarted, SagaSummary, StepAttemptOut
from sagaengine.definition import SagaStatus
from sagaengine.outage import unavailable
from sagaengine.registry import Registry
from sagaengine.runner import SagaRunner
from sagaengine.starting import SagaNotFound, start_saga
from sagaengine.store import OutboxStatus, SagaState
from sagaengine.tracing import trace_id_of

log = logging.getLogger(__name__)

router = APIRouter(tags=["sagas"])
# Every admin route needs an operator's token, of either role; an action needs the admin role.
admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_role)])
OperatorDep = Annotated[Role, Depends(operator)]

# What a start can answer, besides 202 (recorded) and 422 (invalid input).
START_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": SagaStarted, "description": "With ?wait=: the saga, final within the wait"},
    404: {"model": ErrorResponse, "description": "Its first step found no such object"},
    409: {
        "model": ErrorResponse,
        "description": "Its first step refused (the object cannot be taken now), or the "
        "Idempotency-Key names another request's saga",
    },
    503: {
        "model": ErrorResponse,
        "description": "A service or the database is down: retry after Retry-After",
    },
}

WaitSeconds = Annotated[
    float | None,
    Query(ge=0, le=3600, description="seconds to wait for a final status (capped by the server)"),
]


def _runner(request: Request) -> SagaRunner:
    runner: SagaRunner = request.app.state.runner
    return runner


RunnerDep = Annotated[SagaRunner, Depends(_runner)]


def _admin(request: Request) -> AdminQueries:
    admin: AdminQueries = request.app.state.admin
    return admin


AdminDep = Annotated[AdminQueries, Depends(_admin)]


def _sagas(request: Request) -> Registry:
    sagas: Registry = request.app.state.sagas
    return sagas


SagasDep = Annotated[Registry, Depends(_sagas)]


def summary(sagas: Registry, state: SagaState) -> SagaSummary:
    """A saga's row: its state, and the business keys its definition names (order, user...)."""
    keys = _keys(sagas, state)
    return SagaSummary(
        saga_id=str(state.id),
        type=state.type,
        status=state.status,
        definition_version=state.version,
        keys=keys,
        error=state.error,
        attention=state.attention,
        created_at=state.created_at,
        updated_at=state.updated_at,
        finished_at=state.finished_at,
        trace_id=trace_id_of(state.trace_parent),
        # Also at the top level, where clients read `order_id` and `seat_id`.
        **{name: value for name, value in keys.items() if name not in SagaSummary.model_fields},
    )


def _keys(sagas: Registry, state: SagaState) -> dict[str, Any]:
    """The business keys the saga's definition names; none if this process does not know its
    definition, or its stored data no longer reads (the admin still lists it, never a 500)."""
    definition = sagas.get((state.type, state.version))
    if definition is None:
        return {}
    try:
        return definition.keys(definition.data_of(state.payload, state.results))
    except ValidationError:
        log.warning("saga %s: its data does not read as %s's", state.id, definition.name)
        return {}


async def detail(sagas: Registry, admin: AdminQueries, state: SagaState) -> SagaOut:
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
    return SagaOut(**summary(sagas, state).model_dump(), steps=steps)


async def _answer(
    runner: SagaRunner, state: SagaState, wait: float | None, max_wait: float
) -> JSONResponse:
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


async def _start(
    request: Request,
    runner: SagaRunner,
    saga_type: str,
    body: BaseModel | dict[str, Any],
    key: str | None,
    wait: float | None,
) -> JSONResponse:
    """Every saga's start: its definition's rules (`sagaengine.starting`), then the answer."""
    definition = _sagas(request).current.get(saga_type)
    if definition is None:
        raise SagaNotFound(f"no saga type {saga_type!r}")
    state = await start_saga(runner, definition, body, key)
    max_wait: float = request.app.state.settings.max_wait_seconds
    return await _answer(runner, state, wait, max_wait)


async def _read(request: Request, admin: AdminQueries, saga_id: str, *saga_types: str) -> SagaOut:
    runner = request.app.state.runner
    return await detail(
        request.app.state.sagas, admin, await service.get_saga(runner, saga_id, *saga_types)
    )


@router.post("/payments", status_code=202, response_model=SagaStarted, responses=START_ANSWERS)
async def start_payment(
    body: PayOrder,
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    """Pay an order: its saga's first step locks it, and refuses an unknown order (404) or one
    that cannot be paid (409)."""
    return await _start(request, runner, PAYMENT_SAGA.name, body, key, wait)


@router.get("/payments/{saga_id}")
async def get_payment(saga_id: str, request: Request, admin: AdminDep) -> SagaOut:
    return await _read(request, admin, saga_id, PAYMENT_SAGA.name)


@router.post("/reservations", status_code=202, response_model=SagaStarted, responses=START_ANSWERS)
async def start_reservation(
    body: ReserveSeat,
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    """Reserve a seat for a user: its first step holds the seat, and refuses an unknown concert
    or seat (404) or a seat another holds or has reserved (409)."""
    return await _start(request, runner, RESERVATION_SAGA.name, body, key, wait)


@router.get("/reservations/{saga_id}")
async def get_reservation(saga_id: str, request: Request, admin: AdminDep) -> SagaOut:
    """A reservation saga, or the saga that cancels one."""
    types = (RESERVATION_SAGA.name, RESERVATION_CANCELLATION_SAGA.name)
    return await _read(request, admin, saga_id, *types)


@router.post(
    "/reservations/{saga_id}/cancel",
    status_code=202,
    response_model=SagaStarted,
    responses=START_ANSWERS,
)
async def cancel_reservation(
    saga_id: str,
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    """Cancel a COMPLETED reservation: a new saga frees the seat and gives the price back."""
    body = CancelReservation(reservation_saga_id=saga_id)
    return await _start(request, runner, RESERVATION_CANCELLATION_SAGA.name, body, key, wait)


@router.post("/refunds", status_code=202, response_model=SagaStarted, responses=START_ANSWERS)
async def start_refund(
    body: RefundOrder,
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    """Refund a PAID order: the payment cancelled, the amount back, the order REFUNDED."""
    return await _start(request, runner, REFUND_SAGA.name, body, key, wait)


@router.get("/refunds/{saga_id}")
async def get_refund(saga_id: str, request: Request, admin: AdminDep) -> SagaOut:
    return await _read(request, admin, saga_id, REFUND_SAGA.name)


@router.post(
    "/sagas/{saga_type}", status_code=202, response_model=SagaStarted, responses=START_ANSWERS
)
async def start_any(
    saga_type: str,
    body: dict[str, Any],
    request: Request,
    runner: RunnerDep,
    key: OptionalIdempotencyKey = None,
    wait: WaitSeconds = None,
) -> JSONResponse:
    """Start a saga of any registered type, its body validated by the type's start model (the
    typed routes above are these, with their body documented)."""
    return await _start(request, runner, saga_type, body, key, wait)


@router.get("/sagas/{saga_type}/{saga_id}")
async def get_any(saga_type: str, saga_id: str, request: Request, admin: AdminDep) -> SagaOut:
    return await _read(request, admin, saga_id, saga_type)


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


BusinessKey = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
LIST_FILTERS = {
    "status", "type", "limit", "cursor", "order_id", "user_id", "concert_id", "seat_id",
    "request_id",
}  # fmt: skip


def _known_filters(request: Request) -> None:
    """A filter this list does not know is refused, not ignored: ignoring `?orderid=5` would
    answer every saga as if they matched."""
    unknown = sorted(set(request.query_params) - LIST_FILTERS)
    if unknown:
        raise DomainError(
            f"unknown filter {', '.join(unknown)}; known: {', '.join(sorted(LIST_FILTERS))}",
            code="unknown_filter",
            status_code=422,
        )


@admin.get("/sagas", dependencies=[Depends(_known_filters)])
async def list_sagas(
    admin: AdminDep,
    sagas: SagasDep,
    status: SagaStatus | None = None,
    type: Annotated[Text | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[Text | None, Query(max_length=200)] = None,
    order_id: BusinessKey = None,
    user_id: BusinessKey = None,
    concert_id: BusinessKey = None,
    seat_id: BusinessKey = None,
    request_id: Annotated[Text | None, Query(max_length=128)] = None,
) -> SagaPage:
    """Newest first, a page at a time; filtered by status, type, the business keys a saga
    carries (all that are given) and the request id that started it."""
    after = _decode_cursor(cursor) if cursor else None
    given = {"order_id": order_id, "user_id": user_id, "concert_id": concert_id, "seat_id": seat_id}
    keys = {name: value for name, value in given.items() if value is not None}
    states = await admin.page(
        status=status,
        saga_type=type,
        limit=limit + 1,
        after=after,
        keys=keys,
        request_id=request_id,
    )
    more = len(states) > limit
    states = states[:limit]
    return SagaPage(
        items=[summary(sagas, s) for s in states],
        next_cursor=_encode_cursor(states[-1]) if more else None,
    )


@admin.get("/sagas/{saga_id}")
async def get_saga(saga_id: str, request: Request, admin: AdminDep) -> SagaOut:
    return await _read(request, admin, saga_id)


class OperatorReason(BaseModel):
    """Why an operator acts: kept in the audit trail."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Text | None, Field(max_length=500)] = None


@admin.post("/sagas/{saga_id}/retry", status_code=202)
async def retry_saga(
    saga_id: str,
    request: Request,
    runner: RunnerDep,
    role: OperatorDep,
    body: OperatorReason | None = None,
) -> SagaStarted:
    """Resume a NEEDS_ATTENTION saga (an optional `{"reason"}` goes to the audit trail)."""
    reason = body.reason if body else None
    audit = request.app.state.audit
    state = await service.operator_retry(runner, audit, role, saga_id, reason)
    return SagaStarted(saga_id=str(state.id), status=state.status)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Text, Field(min_length=1, max_length=500, description="for the audit")]


@admin.post("/sagas/{saga_id}/cancel", status_code=202)
async def cancel_saga(
    saga_id: str, body: CancelRequest, request: Request, runner: RunnerDep, role: OperatorDep
) -> SagaStarted:
    """Stop a saga before its pivot from going forward: it compensates what it applied (a
    call in flight ends first, or times out, and is settled by its key) and ends COMPENSATED
    with the error `cancelled`. Past its pivot, final, or going back already: 409."""
    audit = request.app.state.audit
    state = await service.operator_cancel(runner, audit, role, saga_id, body.reason)
    return SagaStarted(saga_id=str(state.id), status=state.status)


BULK_RETRY_MOST = 100  # sagas per bulk retry: a bounded amount of work per call


class BulkRetry(BaseModel):
    """Which NEEDS_ATTENTION sagas to retry: every filter given must match."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[Text | None, Field(max_length=64)] = None
    step: Annotated[Text | None, Field(max_length=64, description="where it is stuck")] = None
    since: AwareDatetime | None = Field(None, description="started at or after (with a zone)")
    until: AwareDatetime | None = Field(None, description="started before (with a zone)")
    limit: int = Field(BULK_RETRY_MOST, ge=1, le=BULK_RETRY_MOST)
    dry_run: bool = False
    reason: Annotated[Text | None, Field(max_length=500)] = None


class BulkRetried(BaseModel):
    dry_run: bool
    matching: int  # NEEDS_ATTENTION sagas the filter matches now, all of them
    saga_ids: list[str]  # the oldest `limit` of them: what a run retries (or a dry run would)
    retried: list[str]
    not_retryable: list[str]  # no longer NEEDS_ATTENTION when their turn came


@admin.post("/sagas/retry")
async def bulk_retry(
    body: BulkRetry, request: Request, runner: RunnerDep, role: OperatorDep, admin: AdminDep
) -> BulkRetried:
    """Retry the NEEDS_ATTENTION sagas a filter matches (type, the step they are stuck at, when
    they started), the oldest first, at most `limit` per call; `dry_run` only says which."""
    matching, stuck = await admin.needing_attention(
        saga_type=body.type,
        step=body.step,
        since=body.since,
        until=body.until,
        limit=body.limit,
    )
    ids = [str(s.id) for s in stuck]
    if body.dry_run:
        return BulkRetried(
            dry_run=True, matching=matching, saga_ids=ids, retried=[], not_retryable=[]
        )
    audit = request.app.state.audit
    retried, refused = await service.operator_bulk_retry(runner, audit, role, stuck, body.reason)
    return BulkRetried(
        dry_run=False, matching=matching, saga_ids=ids, retried=retried, not_retryable=refused
    )


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str  # the role of the token that acted: admin (ADMIN_TOKEN)
    action: str
    saga_id: str | None
    reason: str | None
    result: str
    request_id: str | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


@admin.get("/audit")
async def audit_trail(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[int | None, Query(ge=1, description="the next_cursor of a page")] = None,
) -> AuditPage:
    """The operators' actions (retries, cancellations), newest first."""
    actions = await request.app.state.audit.page(limit + 1, before=cursor)
    more = len(actions) > limit
    actions = actions[:limit]
    return AuditPage(
        items=[
            AuditEntry(
                id=a.id,
                at=a.at,
                actor=a.role,
                action=a.action,
                saga_id=a.saga_id,
                reason=a.reason,
                result=a.result,
                request_id=a.request_id,
            )
            for a in actions
        ],
        next_cursor=str(actions[-1].id) if more else None,
    )


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
