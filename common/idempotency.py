"""Only what orchestrator/service.py still imports from here: the idempotency store is the
participant kit's now (`sagaengine.participant`). Delete this module when the orchestrator imports
`IdempotencyKeyReused` from there; orchestrator/ is its owner's to change."""

from sagaengine.participant import IdempotencyKeyReused

__all__ = ["IdempotencyKeyReused"]
