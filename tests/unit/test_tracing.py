"""Traces are on only when asked for, and then a statement alone is not a trace of its own.
(A saga as one trace across the processes: tests/e2e/test_traces.py.)"""

import os
import subprocess
import sys

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from pydantic import ValidationError

from common.tracing import StatementsNeedAParent
from orchestrator.config import Settings
from sagaengine.tracing import trace_id_of

PROBE = """
from common import tracing
from sagaengine import tracing as engine
print(tracing.configure("probe"), engine.enabled(), engine.current_traceparent())
"""


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_without_an_endpoint_nothing_is_installed_and_the_engine_records_nothing():
    assert _probe() == "False False None"


def test_an_endpoint_turns_traces_on():
    assert _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9") == "True True None"


def test_the_sdk_disabled_wins_over_an_endpoint():
    disabled = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_SDK_DISABLED="true")
    assert disabled == "False False None"


def _parent() -> Context:
    span = SpanContext(0xA1, 0xB2, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return set_span_in_context(NonRecordingSpan(span))


STATEMENT = {"db.system": "postgresql", "db.statement": "SELECT 1"}


@pytest.mark.parametrize(
    ("parent", "attributes", "decision"),
    [
        (None, STATEMENT, Decision.DROP),  # the recovery loop's poll: not a trace
        (_parent(), STATEMENT, Decision.RECORD_AND_SAMPLE),  # a step's SQL: in its trace
        (None, {"http.method": "POST"}, Decision.RECORD_AND_SAMPLE),  # a request: a trace
    ],
    ids=["statement alone", "statement below a span", "request"],
)
def test_a_statement_is_traced_only_below_a_span(parent, attributes, decision):
    sampler = StatementsNeedAParent(ALWAYS_ON)
    assert sampler.should_sample(parent, 0xA1, "SELECT", attributes=attributes).decision == decision


def test_the_configured_sampler_still_decides_the_rest():
    provider = TracerProvider(sampler=StatementsNeedAParent(ALWAYS_ON))
    with provider.get_tracer("test").start_as_current_span("request") as span:
        assert span.is_recording()
    assert "AlwaysOnSampler" in StatementsNeedAParent(ALWAYS_ON).get_description()


@pytest.mark.parametrize(
    ("traceparent", "trace_id"),
    [
        (f"00-{'ab' * 16}-{'cd' * 8}-01", "ab" * 16),
        (None, None),
        ("", None),
        ("garbage", None),
    ],
)
def test_the_trace_id_of_a_persisted_traceparent(traceparent, trace_id):
    assert trace_id_of(traceparent) == trace_id


def test_a_trace_url_must_say_where_the_trace_id_goes():
    with pytest.raises(ValidationError, match="ORCHESTRATOR_TRACE_URL"):
        Settings(trace_url="http://jaeger:16686/trace/")
    settings = Settings(trace_url="http://jaeger:16686/trace/{trace_id}")
    assert settings.trace_link("ab" * 16) == f"http://jaeger:16686/trace/{'ab' * 16}"
    assert settings.trace_link(None) is None
    assert Settings().trace_link("ab" * 16) is None
