"""Every saga definition this orchestrator can run, by (name, version).

A saga records the name and version it started on and finishes on that version: a deploy that
changes a definition adds a new version here and keeps the old one until no saga runs on it.
"""

from orchestrator.payment_saga import PAYMENT_SAGA
from orchestrator.refund_saga import REFUND_SAGA
from orchestrator.reservation_cancellation_saga import RESERVATION_CANCELLATION_SAGA
from orchestrator.reservation_saga import RESERVATION_SAGA
from sagaengine.definition import SagaDefinition

# What a new saga of each type starts on.
CURRENT: dict[str, SagaDefinition] = {
    d.name: d for d in (PAYMENT_SAGA, RESERVATION_SAGA, REFUND_SAGA, RESERVATION_CANCELLATION_SAGA)
}
REGISTRY: dict[tuple[str, int], SagaDefinition] = {d.key: d for d in CURRENT.values()}
