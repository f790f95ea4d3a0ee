"""The orchestrator's saga metrics (HTTP latency comes from `common.metrics`)."""

from prometheus_client import Counter, Histogram

SAGAS_STARTED = Counter("sagas_started_total", "Sagas started", ["type"])
SAGA_TRANSITIONS = Counter(
    "saga_status_transitions_total", "Sagas entering a status", ["type", "status"]
)
STEP_SECONDS = Histogram(
    "saga_step_call_seconds", "Latency of one remote step call", ["type", "step", "phase"]
)
