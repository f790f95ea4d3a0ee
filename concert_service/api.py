from collections.abc import Iterable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from common.auth import require_service_token
from common.faults import fault_point
from common.fields import PathId
from common.web import SessionDep
from concert_service import service
from concert_service.domain import SeatView
from concert_service.schemas import (
    ConcertOut,
    CreateConcert,
    HoldSeat,
    ReleaseCancellation,
    ReleaseHold,
    SeatOut,
)
from sagaengine.participant.fastapi import IdempotencyKey, stored_response

router = APIRouter(tags=["concerts"])
# Called by the orchestrator only: a service token, a required Idempotency-Key.
steps = APIRouter(tags=["saga steps"], dependencies=[Depends(require_service_token)])


def _seats(views: Iterable[SeatView]) -> list[SeatOut]:
    return [SeatOut(id=v.id, number=v.number, status=v.status) for v in views]


@router.post("/concerts", status_code=201)
def create_concert(body: CreateConcert, session: SessionDep) -> ConcertOut:
    concert, seats = service.create_concert(session, body.title, body.seats, body.price)
    return ConcertOut(id=concert.id, title=concert.title, price=concert.price, seats=_seats(seats))


@router.get("/concerts/{concert_id}", dependencies=[Depends(fault_point("get_concert"))])
def get_concert(concert_id: PathId, session: SessionDep) -> ConcertOut:
    concert = service.get_concert(session, concert_id)
    seats = _seats(service.list_seats(session, concert_id))
    return ConcertOut(id=concert.id, title=concert.title, price=concert.price, seats=seats)


@router.get("/concerts/{concert_id}/seats")
def list_seats(concert_id: PathId, session: SessionDep) -> list[SeatOut]:
    return _seats(service.list_seats(session, concert_id))


@steps.post(
    "/concerts/{concert_id}/seats/{seat_id}/holds", dependencies=[Depends(fault_point("hold_seat"))]
)
def hold_seat(
    concert_id: PathId,
    seat_id: PathId,
    body: HoldSeat,
    request: Request,
    session: SessionDep,
    key: IdempotencyKey,
) -> JSONResponse:
    hold_seconds = request.app.state.settings.hold_seconds
    return stored_response(
        service.hold_seat(session, concert_id, seat_id, body.user_id, hold_seconds, key)
    )


@steps.post("/holds/release", dependencies=[Depends(fault_point("release_hold"))])
def release_hold(body: ReleaseHold, session: SessionDep, key: IdempotencyKey) -> JSONResponse:
    return stored_response(service.release_hold(session, body.hold_key, key))


@steps.post(
    "/reservations/{reservation_id}/confirm",
    dependencies=[Depends(fault_point("confirm_reservation"))],
)
def confirm_reservation(
    reservation_id: PathId, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(service.confirm_reservation(session, reservation_id, key))


@steps.post(
    "/reservations/{reservation_id}/cancel-start",
    dependencies=[Depends(fault_point("start_cancellation"))],
)
def start_cancellation(
    reservation_id: PathId, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(service.start_cancellation(session, reservation_id, key))


@steps.post(
    "/reservations/{reservation_id}/cancel-complete",
    dependencies=[Depends(fault_point("complete_cancellation"))],
)
def complete_cancellation(
    reservation_id: PathId, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(service.complete_cancellation(session, reservation_id, key))


@steps.post(
    "/reservations/{reservation_id}/cancel-release",
    dependencies=[Depends(fault_point("release_cancellation"))],
)
def release_cancellation(
    reservation_id: PathId, body: ReleaseCancellation, session: SessionDep, key: IdempotencyKey
) -> JSONResponse:
    return stored_response(
        service.release_cancellation(session, reservation_id, body.start_key, key)
    )
