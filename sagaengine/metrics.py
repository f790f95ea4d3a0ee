"""The engine's Prometheus metrics. Nothing is registered at import: the application registers
one set (`EngineMetrics.register()`) and hands it to its runner and relay; a test or a second
runner in one process takes an unregistered set (`EngineMetrics.unregistered()`)."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from sagaengine.definition import Phase, SagaDefinition, SagaStatus


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

    def declare(self, definitions: Iterable[SagaDefinition[Any]]) -> None:
        """Export the counters of these sagas at zero before anything happens. A labelled
        counter that first appears at 1 has no sample before its first increment, so `rate()`
        and `increase()` never count it: the first saga of a type to need attention, or a
        step's first retry, would not show on a dashboard nor in an alert."""
        for definition in definitions:
            self.sagas_started.labels(definition.name)
            for status in SagaStatus:
                self.saga_transitions.labels(definition.name, status)
            for step in definition.steps:
                self.step_retries.labels(definition.name, step.name, Phase.ACTION)
                if step.compensation is not None:
                    self.step_retries.labels(definition.name, step.name, Phase.COMPENSATION)

    def declare_events(self, types: Iterable[str]) -> None:
        """The outbox's counters of these event types, at zero until used (see `declare`):
        the relay learns a type from its first event, so a delivery failure is counted from
        the first one after it."""
        for kind in types:
            self.outbox_delivered.labels(kind)
            self.outbox_failures.labels(kind)

    @classmethod
    def unregistered(cls) -> "EngineMetrics":
        """A set of its own, exported nowhere."""
        return cls.register(CollectorRegistry())
