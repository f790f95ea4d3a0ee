import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from common.errors import error_body
from common.fields import Text
from common.web import SessionDep
from data_platform import service
from data_platform.domain import Behaviour, Control
from data_platform.schemas import ControlIn, ControlOut, Event, Stored

router = APIRouter(tags=["events"])


def _behaviour(request: Request) -> Behaviour:
    return request.app.state.behaviour


@router.post("/events", status_code=201, response_model=Stored)
def receive_event(event: Event, request: Request, session: SessionDep) -> JSONResponse:
    """Store an event once per event id; a repeated delivery is absorbed (200, stored false)."""
    behaviour = _behaviour(request)
    behaviour.enter()
    try:
        control = behaviour.control
        if control.latency_ms:
            time.sleep(control.latency_ms / 1000)
        if control.down:
            return JSONResponse(error_body("unavailable", "the data platform is down"), 503)
        if behaviour.fails_now():
            return JSONResponse(error_body("injected_failure", "failing on purpose"), 500)
        stored = service.store_event(session, event)
    finally:
        behaviour.leave()
    body = Stored(event_id=event.event_id, stored=stored).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if stored else 200)


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
    return ControlOut(**body.model_dump(), in_flight=behaviour.in_flight)


@router.get("/_control")
def get_control(request: Request) -> ControlOut:
    behaviour = _behaviour(request)
    return ControlOut(**behaviour.control.__dict__, in_flight=behaviour.in_flight)
