"""The services the orchestrator's sagas call, each declared once with its base URL setting."""

from sagaengine.definition import Participant

ORDER = Participant("order", "ORDER_SERVICE_URL", "http://127.0.0.1:8001")
USER = Participant("user", "USER_SERVICE_URL", "http://127.0.0.1:8002")
PAYMENT = Participant("payment", "PAYMENT_SERVICE_URL", "http://127.0.0.1:8003")
CONCERT = Participant("concert", "CONCERT_SERVICE_URL", "http://127.0.0.1:8004")
