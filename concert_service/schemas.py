from pydantic import BaseModel, Field

from common.fields import Id, Money, Text
from concert_service.domain import MAX_SEATS
from sagaengine.participant.fields import IdempotencyKeyValue


class CreateConcert(BaseModel):
    title: Text = Field(min_length=1, max_length=200)
    seats: int = Field(gt=0, le=MAX_SEATS, strict=True)
    price: Money


class SeatOut(BaseModel):
    id: int
    number: int
    status: str


class ConcertOut(BaseModel):
    id: int
    title: str
    price: int
    seats: list[SeatOut]


class HoldSeat(BaseModel):
    user_id: Id


class ReleaseHold(BaseModel):
    hold_key: IdempotencyKeyValue  # the Idempotency-Key of the hold it releases


class ReleaseCancellation(BaseModel):
    start_key: IdempotencyKeyValue  # the Idempotency-Key of the cancellation start it undoes
