from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from common.auth import require_service_token
from common.faults import fault_point
from common.fields import PathId
from common.web import SessionDep
from order_service import service
from order_service.domain import OrderLine
from order_service.schemas import CreateOrder, OrderOut, ReleasePayment
from sagaengine.participant.fastapi import IdempotencyKey, stored_response

router = APIRouter(tags=["orders"])
# Called by the orchestrator only: a service token, a required Idempotency-Key.
steps = APIRouter(tags=["saga steps"], dependencies=[Depends(require_service_token)])


@router.post("/orders", status_code=201)
def create_order(body: CreateOrder, session: SessionDep) -> OrderOut:
    lines = [OrderLine(i.product_id, i.quantity, i.unit_price) for i in body.items]
    return OrderOut(**service.to_json(service.create_order(session, body.user_id, lines)))


@router.get("/orders/{order_id}", dependencies=[Depends(fault_point("get_order"))])
def get_order(order_id: PathId, session: SessionDep) -> OrderOut:
    return OrderOut(**service.to_json(service.get_order(session, order_id)))


@router.post("/orders/{order_id}/cancel")
def cancel_order(order_id: PathId, session: SessionDep) -> OrderOut:
    return OrderOut(**service.to_json(service.cancel_order(session, order_id)))


@steps.post(
    "/orders/{order_id}/payment-start", dependencies=[Depends(fault_point("start_payment"))]
)
def start_payment(order_id: PathId, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(service.start_payment(session, order_id, key))


@steps.post(
    "/orders/{order_id}/payment-complete", dependencies=[Depends(fault_point("complete_payment"))]
)
def complete_payment(order_id: PathId, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(service.complete_payment(session, order_id, key))


@steps.post(
    "/orders/{order_id}/payment-release", dependencies=[Depends(fault_point("release_payment"))]
)
def release_payment(
    order_id: PathId, body: ReleasePayment, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(service.release_payment(session, order_id, body.start_key, key))


@steps.post("/orders/{order_id}/refund-start", dependencies=[Depends(fault_point("start_refund"))])
def start_refund(order_id: PathId, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(service.start_refund(session, order_id, key))


@steps.post(
    "/orders/{order_id}/refund-complete", dependencies=[Depends(fault_point("complete_refund"))]
)
def complete_refund(order_id: PathId, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(service.complete_refund(session, order_id, key))


@steps.post(
    "/orders/{order_id}/refund-release", dependencies=[Depends(fault_point("release_refund"))]
)
def release_refund(
    order_id: PathId, body: ReleasePayment, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(service.release_refund(session, order_id, body.start_key, key))
