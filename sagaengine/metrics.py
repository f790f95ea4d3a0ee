"""The engine's Prometheus metrics. Nothing is registered at import: the application registers
one set (`EngineMetrics.register()`) and hands it to its runner and relay; a test or a second
runner in one process takes an unregistered set (`EngineMetrics.unregistered()`)."""

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class EngineMetrics:
    sagas_started: Counter
    saga_transitions: Counter
    step_retries: Counter
    starts_waiting: Gauge
    step_seconds: Histogram
    outbox_backlog: Gauge
    outbox_delivered: Counter
    outbox_failures: Counter
    outbox_delivery_lag: Histogram
    sagas_live: Gauge
    oldest_live: Gauge
    runs_active: Gauge
    runs_queued: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry = REGISTRY) -> "EngineMetrics":
        return cls(
            sagas_started=Counter(
                "sagas_started_total", "Sagas started", ["type"], registry=registry
            ),
            saga_transitions=Counter(
                "saga_status_transitions_total",
                "Sagas entering a status",
                ["type", "status"],
                registry=registry,
            ),
            step_retries=Counter(
                "saga_step_retries_total",
                "Calls repeated after a transient fault",
                ["type", "step", "phase"],
                registry=registry,
            ),
            starts_waiting=Gauge(
                "saga_starts_waiting",
                "Starts waiting for another request's saga of the same key or object to be decided",
                registry=registry,
            ),
            step_seconds=Histogram(
                "saga_step_call_seconds",
                "Latency of one remote step call",
                ["type", "step", "phase"],
                registry=registry,
            ),
            outbox_backlog=Gauge(
                "outbox_backlog",
                "Data-platform events written but not delivered yet",
                registry=registry,
            ),
            outbox_delivered=Counter(
                "outbox_delivered_total",
                "Events delivered to the data platform",
                ["type"],
                registry=registry,
            ),
            outbox_failures=Counter(
                "outbox_delivery_failures_total",
                "Failed delivery attempts",
                ["type"],
                registry=registry,
            ),
            outbox_delivery_lag=Histogram(
                "outbox_delivery_lag_seconds",
                "From the saga's outcome to the event's delivery",
                ["type"],
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
                registry=registry,
            ),
            # Read from the database at each scrape (SagaRunner.observe): the same in every
            # replica, so aggregate them with max, not sum.
            sagas_live=Gauge(
                "sagas_live",
                "Sagas not final now, by status (RUNNING, COMPENSATING, NEEDS_ATTENTION)",
                ["type", "status"],
                registry=registry,
            ),
            oldest_live=Gauge(
                "saga_oldest_live_seconds",
                "Age of the oldest saga not final, by status (0: none)",
                ["type", "status"],
                registry=registry,
            ),
            # This process's own: sum them over the replicas.
            runs_active=Gauge(
                "saga_runs_active", "Saga runs holding a slot in this process", registry=registry
            ),
            runs_queued=Gauge(
                "saga_runs_queued",
                "Saga runs waiting for a slot in this process (ORCHESTRATOR_MAX_RUNNING_SAGAS)",
                registry=registry,
            ),
        )

    @classmethod
    def unregistered(cls) -> "EngineMetrics":
        """A set of its own, exported nowhere."""
        return cls.register(CollectorRegistry())
