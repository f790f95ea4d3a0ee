from datetime import datetime
from typing import Any

from pydantic import BaseModel

from common.fields import Id


class StartPayment(BaseModel):
    order_id: Id


class StartRefund(BaseModel):
    order_id: Id


class StartReservation(BaseModel):
    concert_id: Id
    seat_id: Id
    user_id: Id


class SagaStarted(BaseModel):
    saga_id: str
    status: str


class StepAttemptOut(BaseModel):
    step: str
    step_index: int
    phase: str
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    error: dict[str, Any] | None
    idempotency_key: str
    owner: str
    request: dict[str, Any]
    response: dict[str, Any] | None


class SagaSummary(BaseModel):
    saga_id: str
    type: str
    status: str
    definition_version: int
    order_id: int | None = None
    concert_id: int | None = None
    seat_id: int | None = None
    user_id: int | None = None
    error: dict[str, Any] | None
    attention: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class SagaOut(SagaSummary):
    steps: list[StepAttemptOut]


class SagaPage(BaseModel):
    items: list[SagaSummary]
    next_cursor: str | None
