"""The participant's side of a saga: what a service adopts to be called by the saga engine.

Every step the orchestrator calls carries an `Idempotency-Key`. The service runs the step through
an `IdempotencyStore`, which commits the effect and its key in one local transaction, replays the
stored answer to a retry, refuses a key reused for another request, and lets a compensation undo
its action at most once, or tombstone it if it never arrived. `POST /_idempotency/settle` tells
the orchestrator what became of a step whose answer was lost.

- `sagaengine.participant` (this module): the store and the refusal protocol (SQLAlchemy only).
- `sagaengine.participant.fields`: the key as a pydantic type (`IdempotencyKeyValue`).
- `sagaengine.participant.fastapi`: the key header, `stored_response()`, `settle_router()`.
- `sagaengine.participant.migrations`: Alembic operations for the `idempotency_keys` table.

Exceptions:

    Refusal                  a business refusal: a 4xx with its machine code, never stored
    ├── IdempotencyKeyReused a key sent again with a different request (422)
    └── NotThatAction        a compensation naming an action of another operation (422)

The kit imports nothing of the services that use it: a service hands in its own session and
credentials check, and raises its domain errors as `Refusal`s.
"""

from sagaengine.errors import Refusal, error_body
from sagaengine.participant.store import (
    MAX_KEY_LENGTH,
    TOMBSTONE_FINGERPRINT,
    IdempotencyKeyReused,
    IdempotencyRecordMixin,
    IdempotencyStore,
    NotThatAction,
    Outcome,
    StoredResponse,
    fingerprint,
)

__all__ = [
    "MAX_KEY_LENGTH",
    "TOMBSTONE_FINGERPRINT",
    "IdempotencyKeyReused",
    "IdempotencyRecordMixin",
    "IdempotencyStore",
    "NotThatAction",
    "Outcome",
    "Refusal",
    "StoredResponse",
    "error_body",
    "fingerprint",
]
