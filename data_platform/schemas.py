import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from common.fields import Text


class Event(BaseModel):
    event_id: uuid.UUID
    type: Text = Field(min_length=1, max_length=100)
    occurred_at: datetime
    payload: dict[str, Any]


class Stored(BaseModel):
    event_id: uuid.UUID
    stored: bool  # false: a duplicate delivery, absorbed


class EventBatch(BaseModel):
    """Several events in one delivery, as ingestion APIs take them (the relay sends a pass)."""

    events: list[Event] = Field(min_length=1, max_length=500)


class StoredBatch(BaseModel):
    events: list[Stored]  # in the order they were sent


class ControlIn(BaseModel):
    down: bool = False
    fail_rate: float = Field(0.0, ge=0.0, le=1.0)
    latency_ms: int = Field(0, ge=0, le=60_000)


class ControlOut(ControlIn):
    in_flight: int
    failed: int  # deliveries answered 500 on purpose (fail_rate), since the start
