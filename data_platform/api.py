import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from common.errors import error_body
from common.fields import Text
from common.web import SessionDep
from data_platform import service
from data_platform.domain import Behaviour, Control
from data_platform.schemas import ControlIn, ControlOut, Event, EventBatch, Stored, StoredBatch

router = APIRouter(tags=["events"])


def _behaviour(request: Request) -> Behaviour:
    behaviour: Behaviour = request.app.state.behaviour
    return behaviour


def _misbehaving(behaviour: Behaviour) -> JSONResponse | None:
    """What the platform answers instead of storing, when told to fail or slow down."""
    control = behaviour.control
    if control.latency_ms:
        time.sleep(control.latency_ms / 1000)
    if control.down:
        return JSONResponse(error_body("unavailable", "the data platform is down"), 503)
    if behaviour.fails_now():
        return JSONResponse(error_body("injected_failure", "failing on purpose"), 500)
    return None


@router.post("/events", status_code=201, response_model=Stored)
def receive_event(event: Event, request: Request, session: SessionDep) -> JSONResponse:
    """Store an event once per event id; a repeated delivery is absorbed (200, stored false)."""
    behaviour = _behaviour(request)
    behaviour.enter()
    try:
        if (refusal := _misbehaving(behaviour)) is not None:
            return refusal
        stored = service.store_event(session, event)
    finally:
        behaviour.leave()
    body = Stored(event_id=event.event_id, stored=stored).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if stored else 200)


@router.post("/events/batch", response_model=StoredBatch)
def receive_events(batch: EventBatch, request: Request, session: SessionDep) -> JSONResponse:
    """Several events in one delivery, each stored once per event id, all in one transaction:
    the whole batch is taken, or (on a failure) none of it. Faults apply to the batch."""
    behaviour = _behaviour(request)
    behaviour.enter()
    try:
        if (refusal := _misbehaving(behaviour)) is not None:
            return refusal
        stored = service.store_events(session, batch.events)
    finally:
        behaviour.leave()
    answers = [
        Stored(event_id=event.event_id, stored=new)
        for event, new in zip(batch.events, stored, strict=True)
    ]
    return JSONResponse(StoredBatch(events=answers).model_dump(mode="json"))


@router.get("/events")
def list_events(
    session: SessionDep, type: Annotated[Text | None, Query(max_length=100)] = None
) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(e.event_id),
            "type": e.type,
            "occurred_at": e.occurred_at.isoformat(),
            "payload": e.payload,
            "deliveries": e.deliveries,
        }
        for e in service.list_events(session, type)
    ]


@router.post("/_control")
def set_control(body: ControlIn, request: Request) -> ControlOut:
    """Make deliveries (POST /events) fail or slow down on purpose; reading stays possible."""
    behaviour = _behaviour(request)
    behaviour.control = Control(**body.model_dump())
    return ControlOut(**body.model_dump(), in_flight=behaviour.in_flight, failed=behaviour.failed)


@router.get("/_control")
def get_control(request: Request) -> ControlOut:
    behaviour = _behaviour(request)
    return ControlOut(
        **behaviour.control.__dict__, in_flight=behaviour.in_flight, failed=behaviour.failed
    )
