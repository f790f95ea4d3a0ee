"""A saga is one OpenTelemetry trace across every process, also when another process resumes it
after a SIGKILL: a stack of its own exports over OTLP to a collector in the test."""

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.e2e.client import ADMIN_AUTH, Api, assert_invariants, wait_for
from tests.e2e.inprocess import private_orchestrator_database
from tools.otlp_sink import OtlpSink, ReceivedSpan
from tools.stack import Process, Stack, free_port, start_stack

PARTICIPANTS = {"order_service", "user_service", "payment_service"}
SERVER, CLIENT = 2, 3  # Span.SpanKind


@pytest.fixture(scope="module")
def traced(databases, tmp_path_factory) -> Iterator[tuple[Stack, OtlpSink, str]]:
    """Every process exporting to the sink; the orchestrator on a database of its own (the
    suite's orchestrator would otherwise race this one for its sagas)."""
    database = private_orchestrator_database("traces")
    with OtlpSink() as sink:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans reach the sink soon after they end
            "ORCHESTRATOR_DATABASE_URL": database,
            "ORCHESTRATOR_TRACE_URL": "http://traces.example/trace/{trace_id}",
        }
        stack = start_stack(tmp_path_factory.mktemp("traced"), extra_env=env)
        try:
            yield stack, sink, database
        finally:
            stack.stop()


@pytest.fixture
def traced_api(traced) -> Iterator[Api]:
    api = Api(traced[0])
    yield api
    api.clear_faults()
    api.close()


def _trace_of(spans: list[ReceivedSpan], saga_id: str) -> str | None:
    for span in spans:
        if span.attributes.get("saga.id") == saga_id:
            return span.trace_id
    return None


def _attempts(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    """The step attempts of a trace, in the order they started."""
    attempts = [s for s in spans if s.trace_id == trace_id and "saga.call" in s.attributes]
    return sorted(attempts, key=lambda s: s.start_ns)


def _calls(attempts: list[ReceivedSpan]) -> list[tuple[str, str, str]]:
    return [
        (s.attributes["saga.step"], s.attributes["saga.call"], s.attributes["saga.outcome"])
        for s in attempts
    ]


def _incomplete(spans: list[ReceivedSpan], trace_id: str) -> str | None:
    """What the trace lacks (None: nothing): the one root, the orchestrator's start request;
    spans from every participant; each call the orchestrator made answered by a participant's
    server span below it, with the participant's SQL below that."""
    of_trace = {s.span_id: s for s in spans if s.trace_id == trace_id}
    roots = [(s.service, s.kind) for s in of_trace.values() if not s.parent_span_id]
    if roots != [("orchestrator", SERVER)]:
        return f"the roots are {roots}"
    services = {s.service for s in of_trace.values()}
    if not services >= PARTICIPANTS:
        return f"spans only from {services}"
    children: dict[str, list[ReceivedSpan]] = {}
    for span in of_trace.values():
        children.setdefault(span.parent_span_id, []).append(span)
    for call in of_trace.values():
        if call.service != "orchestrator" or call.kind != CLIENT or "db.system" in call.attributes:
            continue  # not a call to a participant
        servers = [s for s in children.get(call.span_id, []) if s.kind == SERVER]
        if not servers:
            return f"no server span below the call {call.name} {call.attributes}"
        if not any("db.system" in c.attributes for c in children.get(servers[0].span_id, [])):
            return f"no SQL below {servers[0].service}'s {servers[0].name}"
    return None


def test_a_compensating_payment_is_one_trace_across_every_process(traced, traced_api: Api):
    stack, sink, _ = traced
    api = traced_api
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 4_000)
    api.fault("payment", "approve_payment", "refuse")
    saga_id = api.pay(order_id)["saga_id"]

    expected = [
        ("start_order_payment", "action", "SUCCEEDED"),
        ("deduct_balance", "action", "SUCCEEDED"),
        ("approve_payment", "action", "REFUSED"),
        ("deduct_balance", "compensation", "SUCCEEDED"),
        ("start_order_payment", "compensation", "SUCCEEDED"),
    ]

    def whole(spans: list[ReceivedSpan]) -> bool:
        trace_id = _trace_of(spans, saga_id)
        return (
            trace_id is not None
            and _calls(_attempts(spans, trace_id)) == expected
            and _incomplete(spans, trace_id) is None
        )

    try:
        spans = sink.wait_for(whole, timeout=15)
    finally:
        trace_id = _trace_of(sink.spans, saga_id)
        assert trace_id is not None
        assert _incomplete(sink.spans, trace_id) is None
    refused = _attempts(spans, trace_id)[2]
    assert refused.status_code == 2  # ERROR
    assert refused.attributes["saga.idempotency_key"].startswith(saga_id)
    # The participants' spans of a call hang below the attempt that made it.
    below = [s for s in spans if s.trace_id == trace_id and s.service == "payment_service"]
    assert below and all(s.start_ns >= refused.start_ns for s in below)

    # The admin API names the trace, and the admin page links to it.
    admin = api.http.get(api.url("orchestrator", f"/admin/sagas/{saga_id}"), headers=ADMIN_AUTH)
    assert admin.json()["trace_id"] == trace_id
    token = ADMIN_AUTH["Authorization"].removeprefix("Bearer ")
    page = httpx.get(
        api.url("orchestrator", f"/admin/ui/sagas/{saga_id}"), cookies={"admin_token": token}
    )
    assert f'href="http://traces.example/trace/{trace_id}"' in page.text


def _saga_of(database: str, order_id: int) -> tuple[str, str | None] | None:
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT id, trace_parent FROM sagas WHERE payload->>'order_id' = %s", (str(order_id),)
        ).fetchone()
    return (str(row[0]), row[1]) if row else None


def test_a_saga_resumed_after_sigkill_goes_on_in_the_same_trace(traced, traced_api: Api):
    stack, sink, database = traced
    api = traced_api
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 3_000)
    # The balance's deduction takes 0.7 s: the orchestrator is killed while it is in flight.
    api.fault("user", "deduct", "delay", delay_ms=700)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(api.start_payment, order_id, f"traced-{order_id}")
        saga_id, traceparent = wait_for(
            lambda: _saga_of(database, order_id), 15, "the saga to be recorded"
        )
        assert traceparent is not None, "the saga's trace is persisted with it"
        trace_id = traceparent.split("-")[1]

        def deduct_in_flight() -> bool:
            steps = api.saga(saga_id)["steps"]
            return any((s["step"], s["status"]) == ("deduct_balance", "STARTED") for s in steps)

        wait_for(deduct_in_flight, 15, "the deduction to be in flight")
        # What the first process did before it died has reached the collector (its start
        # request's span among it): the kill comes after, so the trace shows both halves.
        sink.wait_for(
            lambda spans: any(s.trace_id == trace_id and not s.parent_span_id for s in spans),
            timeout=15,
        )
        orchestrator = stack.processes["orchestrator"]
        orchestrator.kill()
    orchestrator.restart()  # same instance id: it takes its sagas back at once

    answer = api.start_payment(order_id, key=f"traced-{order_id}", wait=30)
    assert answer.json() == {"saga_id": saga_id, "status": "COMPLETED"}
    assert_invariants([saga_id], [user_id], orchestrator=database)

    def resumed(spans: list[ReceivedSpan]) -> bool:
        calls = _calls(_attempts(spans, trace_id))
        return (
            ("complete_order_payment", "action", "SUCCEEDED") in calls
            and any(s.attributes.get("saga.resumed") is True for s in spans)
            and _incomplete(spans, trace_id) is None
        )

    try:
        spans = sink.wait_for(resumed, timeout=15)
    finally:
        assert _incomplete(sink.spans, trace_id) is None
    # The first call went out before the kill; the deduction the killed process never saw the
    # end of is made again by the resumed run, and the saga goes on from there, all in order.
    assert _calls(_attempts(spans, trace_id)) == [
        ("start_order_payment", "action", "SUCCEEDED"),
        ("deduct_balance", "action", "SUCCEEDED"),
        ("approve_payment", "action", "SUCCEEDED"),
        ("complete_order_payment", "action", "SUCCEEDED"),
    ]
    resume = next(s for s in spans if s.trace_id == trace_id and s.attributes.get("saga.resumed"))
    assert resume.name == "saga payment resume"
    after = [s for s in _attempts(spans, trace_id) if s.parent_span_id == resume.span_id]
    assert [s.attributes["saga.step"] for s in after] == [
        "deduct_balance",
        "approve_payment",
        "complete_order_payment",
    ]

    # The paid order's event is delivered in a trace of its own, linked to the saga's.
    sink.wait_for(
        lambda spans: any(s.name == "outbox deliver" and trace_id in s.links for s in spans),
        timeout=15,
    )
    # The resumed process's log lines of the saga carry its trace.
    log = orchestrator.log_path.read_text().splitlines()
    outcome = [
        json.loads(line)
        for line in log
        if line.startswith("{") and f"saga {saga_id} (payment) is COMPLETED" in line
    ]
    assert [line.get("trace_id") for line in outcome] == [trace_id]


def test_spans_still_batched_at_a_sigterm_are_sent_before_the_process_ends(databases, tmp_path):
    """uvicorn dies of the SIGTERM it re-raises once shut down: no exit handler of the SDK runs,
    so the shutdown itself sends what is batched (the default batch waits 5 s)."""
    with OtlpSink() as sink:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
        platform = Process("data_platform", free_port(), env, tmp_path / "platform.log")
        platform.start()
        try:
            platform.wait_healthy()
            assert httpx.get(f"{platform.url}/_control").status_code == 200
            assert sink.spans == []  # still batched
        finally:
            platform.stop()
        assert [s.name for s in sink.spans if s.kind == SERVER] == ["GET /_control"]
