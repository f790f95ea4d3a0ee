"""Operators can see what happened: metrics moved by exactly the sagas that ran, and one saga
followed through the logs of every process by its request id."""

import json
import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.client import ADMIN_AUTH, Api, wait_for
from tools.stack import Stack


def _samples(api: Api, service: str) -> dict[tuple, float]:
    text = api.http.get(api.url(service, "/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _moved(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_saga_metrics_move_by_exactly_the_sagas_that_ran(api: Api):
    user_id = api.create_user(100_000)
    orders = [api.create_order(user_id, 1_000) for _ in range(5)]
    before = _samples(api, "orchestrator")
    users_before = _samples(api, "user")

    api.fault("user", "deduct", "error")  # one retry
    for order_id in orders[:3]:
        assert api.pay(order_id)["status"] == "COMPLETED"
    api.fault("payment", "approve_payment", "refuse", times=2)
    for order_id in orders[3:]:
        assert api.pay(order_id)["status"] == "COMPENSATED"

    after = _samples(api, "orchestrator")
    assert _moved(before, after, "sagas_started_total", type="payment") == 5
    moved = {
        status: _moved(
            before, after, "saga_status_transitions_total", type="payment", status=status
        )
        for status in ("COMPLETED", "COMPENSATING", "COMPENSATED", "NEEDS_ATTENTION")
    }
    assert moved == {"COMPLETED": 3, "COMPENSATING": 2, "COMPENSATED": 2, "NEEDS_ATTENTION": 0}
    retries = _moved(
        before,
        after,
        "saga_step_retries_total",
        type="payment",
        step="deduct_balance",
        phase="action",
    )
    assert retries == 1
    calls = _moved(
        before,
        after,
        "saga_step_call_seconds_count",
        type="payment",
        step="approve_payment",
        phase="action",
    )
    assert calls == 5
    deductions = _moved(
        users_before,
        _samples(api, "user"),
        "http_request_duration_seconds_count",
        method="POST",
        route="/users/{user_id}/deductions",
        status="200",
    )
    assert deductions == 5


def _lines(stack: Stack, process: str) -> list[dict]:
    lines = []
    for raw in stack.processes[process].log_path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue  # a line printed before logging was set up
    return lines


def test_one_saga_is_followed_by_its_request_id_through_every_process(api: Api, stack: Stack):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    trace = f"trace-{uuid.uuid4().hex}"

    answer = api.http.post(
        api.url("orchestrator", "/payments"),
        params={"wait": 30},
        json={"order_id": order_id},
        headers={"X-Request-ID": trace},
    )

    assert answer.headers["X-Request-ID"] == trace
    saga_id = answer.json()["saga_id"]
    wait_for(lambda: api.platform_events({saga_id}), 30, "the order.paid event")
    for process in ("orchestrator", "order", "user", "payment", "data_platform"):
        assert any(line.get("request_id") == trace for line in _lines(stack, process)), process
    steps = [
        line
        for line in _lines(stack, "orchestrator")
        if line.get("request_id") == trace and "step" in line
    ]
    assert {line["saga_id"] for line in steps} == {saga_id}
    assert [line["step"] for line in steps] == [
        "start_order_payment",
        "deduct_balance",
        "approve_payment",
        "complete_order_payment",
    ]


def _stuck(api: Api) -> float:
    return _samples(api, "orchestrator").get(
        ("sagas_live", (("status", "NEEDS_ATTENTION"), ("type", "payment"))), 0.0
    )


def test_the_needs_attention_gauge_counts_a_stuck_saga_until_it_is_fixed(api: Api):
    """An operator alerts on "stuck now": the gauge goes up with the stuck saga and back down
    once an operator's retry has made it final (a transition counter never comes down)."""
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 1_000)
    before = _stuck(api)
    api.fault("payment", "approve_payment", "refuse")
    api.fault("user", "charge_back", "error", times=None)
    saga_id = api.start_payment(order_id, key=f"gauge-{order_id}", wait=2).json()["saga_id"]
    wait_for(lambda: api.saga(saga_id)["status"] == "NEEDS_ATTENTION", what="a stuck saga")

    assert _stuck(api) == before + 1
    age = _samples(api, "orchestrator")[
        ("saga_oldest_live_seconds", (("status", "NEEDS_ATTENTION"), ("type", "payment")))
    ]
    assert age > 0

    api.clear_faults()
    retried = api.http.post(
        api.url("orchestrator", f"/admin/sagas/{saga_id}/retry"), headers=ADMIN_AUTH
    )
    assert retried.status_code == 202
    final = api.start_payment(order_id, key=f"gauge-{order_id}", wait=30).json()
    assert final["status"] == "COMPENSATED"
    assert _stuck(api) == before


def test_every_process_says_it_is_ready_in_its_metrics(api: Api, stack: Stack):
    for name in stack.processes:
        ready = _samples(api, name)[("service_ready", ())]
        assert ready == 1, name
