from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from common.auth import require_service_token
from common.faults import fault_point
from common.fields import PathId
from common.web import SessionDep
from sagaengine.participant.fastapi import IdempotencyKey, OptionalIdempotencyKey, stored_response
from user_service import service
from user_service.schemas import Charge, ChargeBack, CreateUser, Deduction, UserOut

router = APIRouter(tags=["users"])
# Called by the orchestrator only: a service token, a required Idempotency-Key.
steps = APIRouter(tags=["saga steps"], dependencies=[Depends(require_service_token)])


@router.post("/users", status_code=201)
def create_user(body: CreateUser, session: SessionDep) -> UserOut:
    return UserOut(**service.create_user(session, body.name, body.balance).__dict__)


@router.get("/users/{user_id}")
def get_user(user_id: PathId, session: SessionDep) -> UserOut:
    return UserOut(**service.get_user(session, user_id).__dict__)


@router.post("/users/{user_id}/charge", response_model=UserOut)
def charge(
    user_id: PathId, body: Charge, session: SessionDep, key: OptionalIdempotencyKey = None
) -> JSONResponse:
    """A point top-up; with an Idempotency-Key, a retry never charges twice."""
    return stored_response(service.charge_balance(session, user_id, body.amount, key))


@steps.post("/users/{user_id}/deductions", dependencies=[Depends(fault_point("deduct"))])
def deduct(
    user_id: PathId, body: Deduction, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(service.deduct_balance(session, user_id, body.amount, key))


@steps.post("/users/{user_id}/charge-backs", dependencies=[Depends(fault_point("charge_back"))])
def charge_back(
    user_id: PathId, body: ChargeBack, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(
        service.charge_back(session, user_id, body.amount, body.deduction_key, key)
    )
