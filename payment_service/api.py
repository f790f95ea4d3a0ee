from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from common.auth import require_service_token
from common.faults import fault_point
from common.fields import INT64_MAX
from common.web import SessionDep
from payment_service import service
from payment_service.schemas import ApprovePayment, CancelPayment, PaymentOut
from sagaengine.participant.fastapi import IdempotencyKey, stored_response

router = APIRouter(tags=["payments"])
# Called by the orchestrator only: a service token, a required Idempotency-Key.
steps = APIRouter(tags=["saga steps"], dependencies=[Depends(require_service_token)])


@router.get("/payments")
def list_payments(
    session: SessionDep,
    order_id: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    reservation_id: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=INT64_MAX, description="the last id of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PaymentOut]:
    """Payments in the order they were made, a page at a time: the next page starts `after` the
    last id of this one (a page shorter than `limit` is the last)."""
    payments = service.list_payments(session, order_id, reservation_id, after=after, limit=limit)
    return [PaymentOut(**service.to_json(p)) for p in payments]


@steps.post("/payments", status_code=201, dependencies=[Depends(fault_point("approve_payment"))])
def approve_payment(body: ApprovePayment, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(
        service.approve_payment(
            session, body.order_id, body.user_id, body.amount, key, body.reservation_id
        )
    )


@steps.post("/payments/cancellations", dependencies=[Depends(fault_point("cancel_payment"))])
def cancel_payment(body: CancelPayment, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(service.cancel_payment(session, body.approval_key, key))


@steps.post("/payments/refunds", dependencies=[Depends(fault_point("refund_payment"))])
def refund_payment(body: CancelPayment, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    """Cancel an approved payment as a refund: refused (409 payment_not_refundable) when there
    is no approved payment of that approval to cancel, unlike its compensation."""
    return stored_response(service.refund_payment(session, body.approval_key, key))
