"""Every saga this orchestrator runs. A new saga is one definition module and one line here;
a new version of one keeps the old (`retired=`) until no saga runs on it."""

from orchestrator.payment_saga import PAYMENT_SAGA
from orchestrator.refund_saga import REFUND_SAGA
from orchestrator.reservation_cancellation_saga import RESERVATION_CANCELLATION_SAGA
from orchestrator.reservation_saga import RESERVATION_SAGA
from sagaengine.registry import Registry

SAGAS = Registry(PAYMENT_SAGA, RESERVATION_SAGA, REFUND_SAGA, RESERVATION_CANCELLATION_SAGA)
