"""The orchestrator's saga metrics (HTTP latency comes from `common.metrics`)."""

from prometheus_client import Counter, Gauge, Histogram

SAGAS_STARTED = Counter("sagas_started_total", "Sagas started", ["type"])
SAGA_TRANSITIONS = Counter(
    "saga_status_transitions_total", "Sagas entering a status", ["type", "status"]
)
STEP_RETRIES = Counter(
    "saga_step_retries_total", "Calls repeated after a transient fault", ["type", "step", "phase"]
)
STARTS_WAITING = Gauge(
    "saga_starts_waiting",
    "Starts waiting for another request's saga of the same key or object to be decided",
)
STEP_SECONDS = Histogram(
    "saga_step_call_seconds", "Latency of one remote step call", ["type", "step", "phase"]
)

OUTBOX_BACKLOG = Gauge("outbox_backlog", "Data-platform events written but not delivered yet")
OUTBOX_DELIVERED = Counter(
    "outbox_delivered_total", "Events delivered to the data platform", ["type"]
)
OUTBOX_FAILURES = Counter("outbox_delivery_failures_total", "Failed delivery attempts", ["type"])
OUTBOX_DELIVERY_LAG = Histogram(
    "outbox_delivery_lag_seconds",
    "From the saga's outcome to the event's delivery",
    ["type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
