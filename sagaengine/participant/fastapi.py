"""What a FastAPI participant adds to take part in sagas: the `Idempotency-Key` header, the answer
of an idempotent operation (marked when it is a replay), and `POST /_idempotency/settle`.

The service hands in what only it knows (its store, its session dependency, its check of the
orchestrator's credentials); the kit imports nothing of the service:

    app.include_router(settle_router(store, get_session=get_session, authorize=require_token))

    @router.post("/orders/{order_id}/payment-start")
    def start_payment(order_id: int, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
        return stored_response(service.start_payment(session, order_id, key))
"""

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from sagaengine.participant.fields import IdempotencyKeyValue, StorableText
from sagaengine.participant.store import MAX_KEY_LENGTH, IdempotencyStore, Outcome, StoredResponse

__all__ = [
    "KEY_HEADER",
    "REPLAYED_HEADER",
    "IdempotencyKey",
    "OptionalIdempotencyKey",
    "SettleRequest",
    "SettleResponse",
    "settle_router",
    "stored_response",
]

KEY_HEADER = "Idempotency-Key"
# Set on an answer replayed from the store rather than produced by this request.
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKey = Annotated[
    StorableText, Header(alias=KEY_HEADER, min_length=1, max_length=MAX_KEY_LENGTH)
]
OptionalIdempotencyKey = Annotated[
    StorableText | None, Header(alias=KEY_HEADER, min_length=1, max_length=MAX_KEY_LENGTH)
]


def stored_response(stored: StoredResponse) -> JSONResponse:
    """The HTTP answer of an idempotent operation, marked when it is a replay."""
    headers = {REPLAYED_HEADER: "true"} if stored.replayed else None
    return JSONResponse(stored.body, status_code=stored.status_code, headers=headers)


class SettleRequest(BaseModel):
    key: IdempotencyKeyValue


class SettleResponse(BaseModel):
    key: str
    outcome: Outcome
    status_code: int | None
    response: dict[str, Any] | None


def _settle(store: IdempotencyStore, session: Session, key: str) -> SettleResponse:
    """Resolve an action of unknown outcome: its record if it ran, else a tombstone that refuses it.

    The orchestrator calls this for a step it cannot compensate (a pivot) before deciding whether
    the saga went through.
    """
    with session.begin():
        record = store.settle_action(session, key)
    if record is None:
        return SettleResponse(key=key, outcome=Outcome.TOMBSTONE, status_code=None, response=None)
    return SettleResponse(
        key=key, outcome=record.outcome, status_code=record.status_code, response=record.body
    )


def settle_router(
    store: IdempotencyStore,
    *,
    get_session: Callable[..., Any],
    authorize: Callable[..., Any],
) -> APIRouter:
    """The router of `POST /_idempotency/settle` on `store`.

    `get_session` is the dependency that gives a request its SQLAlchemy session (not in a
    transaction); `authorize` the dependency that refuses any caller but the orchestrator.
    """
    router = APIRouter(tags=["idempotency"], dependencies=[Depends(authorize)])

    # The endpoint's description in the OpenAPI document is the docstring of what it does.
    @router.post("/_idempotency/settle", description=inspect.cleandoc(_settle.__doc__ or ""))
    def settle_action(
        body: SettleRequest, session: Annotated[Session, Depends(get_session)]
    ) -> SettleResponse:
        return _settle(store, session, body.key)

    return router
