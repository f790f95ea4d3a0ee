"""Use cases of the data platform: store an event once per id, list what arrived."""

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from common.db import reading
from data_platform.models import ReceivedEvent
from data_platform.schemas import Event


def store_event(session: Session, event: Event) -> bool:
    """True if this delivery stored the event, False if it had arrived before (deduplicated)."""
    with session.begin():
        return _store(session, event)


def store_events(session: Session, events: list[Event]) -> list[bool]:
    """`store_event` for each, in one transaction: all are stored (or absorbed), or none."""
    with session.begin():
        return [_store(session, event) for event in events]


def _store(session: Session, event: Event) -> bool:
    stored = session.execute(
        pg_insert(ReceivedEvent)
        .values(**event.model_dump())
        .on_conflict_do_nothing(index_elements=[ReceivedEvent.event_id])
        .returning(ReceivedEvent.seq)
    ).scalar_one_or_none()
    if stored is None:
        session.execute(
            update(ReceivedEvent)
            .where(ReceivedEvent.event_id == event.event_id)
            .values(deliveries=ReceivedEvent.deliveries + 1)
        )
    return stored is not None


def list_events(session: Session, event_type: str | None) -> list[ReceivedEvent]:
    with reading(session):
        query = select(ReceivedEvent).order_by(ReceivedEvent.seq)
        if event_type is not None:
            query = query.where(ReceivedEvent.type == event_type)
        return list(session.scalars(query))
