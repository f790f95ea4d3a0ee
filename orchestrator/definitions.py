"""Every saga definition this orchestrator can run, by (name, version).

A saga records the name and version it started on and finishes on that version: a deploy that
changes a definition adds a new version here and keeps the old one until no saga runs on it.
"""

from orchestrator.payment_saga import PAYMENT_SAGA
from orchestrator.reservation_saga import RESERVATION_SAGA
from orchestrator.saga import SagaDefinition

REGISTRY: dict[tuple[str, int], SagaDefinition] = {
    d.key: d for d in (PAYMENT_SAGA, RESERVATION_SAGA)
}
# What a new saga of each type starts on.
CURRENT: dict[str, SagaDefinition] = {"payment": PAYMENT_SAGA, "reservation": RESERVATION_SAGA}
