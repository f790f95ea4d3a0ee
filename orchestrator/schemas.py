from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from sagaengine.definition import Phase, SagaStatus
from sagaengine.store import AttemptStatus


class SagaStarted(BaseModel):
    saga_id: str
    status: SagaStatus


class StepAttemptOut(BaseModel):
    step: str
    step_index: int
    phase: Phase
    attempt: int
    status: AttemptStatus
    started_at: datetime
    finished_at: datetime | None
    error: dict[str, Any] | None
    idempotency_key: str
    owner: str
    request: dict[str, Any]
    response: dict[str, Any] | None


class SagaSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    saga_id: str
    type: str
    status: SagaStatus
    definition_version: int
    # The business keys its definition names (order id, user id, concert and seat id...); they
    # are also given at the top level, as `order_id` or `seat_id`.
    keys: dict[str, Any] = {}
    error: dict[str, Any] | None
    attention: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    # The OpenTelemetry trace of its runs (32 hex digits); null when tracing was off at its start.
    trace_id: str | None = None


class SagaOut(SagaSummary):
    steps: list[StepAttemptOut]


class SagaPage(BaseModel):
    items: list[SagaSummary]
    next_cursor: str | None
