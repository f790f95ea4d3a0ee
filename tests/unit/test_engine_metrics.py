"""The engine's counters exist at zero before their first increment: Prometheus' `rate()` and
`increase()` count an increment only from a sample before it, so a labelled counter that first
appears at 1 hides that increment (the first saga of a type to need attention, the first retry
of a step, the first failed delivery of an event type) from the dashboard and the alerts."""

from datetime import timedelta

from prometheus_client import CollectorRegistry

from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.definition import RetryPolicy, SagaStatus
from sagaengine.metrics import EngineMetrics
from sagaengine.runner import SagaRunner
from sagaengine.store import Owner

POLICY = RetryPolicy(attempts=1, initial_backoff=0.1, max_backoff=0.1, max_seconds=1)


class _Store:
    lease = timedelta(seconds=30)


def _metrics() -> tuple[EngineMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return EngineMetrics.register(registry), registry


def test_a_runner_exports_its_sagas_counters_at_zero_before_any_saga_runs():
    metrics, registry = _metrics()
    SagaRunner(
        _Store(),
        {},
        owner=Owner.new("metrics-test"),
        step_timeout=0.1,
        action_policy=POLICY,
        compensation_policy=POLICY,
        definitions={PAYMENT_SAGA.key: PAYMENT_SAGA},
        metrics=metrics,
    )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"type": "payment", **labels})

    assert value("sagas_started_total") == 0
    for status in SagaStatus:
        assert value("saga_status_transitions_total", status=status) == 0, status
    retries = {
        (sample.labels["step"], sample.labels["phase"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "saga_step_retries_total"
    }
    assert retries == {
        ("start_order_payment", "action"): 0,
        ("start_order_payment", "compensation"): 0,
        ("deduct_balance", "action"): 0,
        ("deduct_balance", "compensation"): 0,
        ("approve_payment", "action"): 0,
        ("approve_payment", "compensation"): 0,
        ("complete_order_payment", "action"): 0,  # the pivot: no compensation
    }


def test_the_outbox_counters_of_an_event_type_start_at_zero():
    metrics, registry = _metrics()
    metrics.declare_events({"order.paid"})
    metrics.outbox_delivered.labels("order.paid").inc()
    metrics.declare_events({"order.paid"})  # again, as every delivery does: nothing moves

    assert registry.get_sample_value("outbox_delivered_total", {"type": "order.paid"}) == 1
    assert registry.get_sample_value("outbox_delivery_failures_total", {"type": "order.paid"}) == 0
