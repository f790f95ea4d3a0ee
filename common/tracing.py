"""OpenTelemetry for every process, configured by the standard `OTEL_*` variables.

Off unless an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and always off with `OTEL_SDK_DISABLED=true`: then no SDK
is installed, nothing is instrumented, and the engine's spans (sagaengine/tracing.py) cost a
check each. When on:

- spans go to the endpoint over OTLP/HTTP (protobuf) in batches (`OTEL_BSP_*` tune them), with
  `service.name` the process's package (unless `OTEL_SERVICE_NAME` says otherwise) and sampled
  by `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: every trace);
- FastAPI's server spans (health probes and /metrics left out), httpx's client spans with the
  W3C `traceparent` sent on every call between processes, and psycopg's spans of each SQL
  statement below them;
- every log line carries the trace and span ids of where it was written (common/logs.py).

A statement with no span above it (the recovery loop's poll, the relay's claim, a pool's
health check) would be a trace of its own every second: those are not sampled.
"""

import logging
import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Not traced: probes and scrapes, many a minute, that say nothing about a saga.
EXCLUDED_URLS = "/health,/metrics"


def wanted() -> bool:
    """Whether the environment asks for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


class StatementsNeedAParent(Sampler):
    """The configured sampler, except that a database statement starting a trace is dropped."""

    def __init__(self, delegate: Sampler):
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        parentless = not trace.get_current_span(parent_context).get_span_context().is_valid
        if parentless and attributes and "db.system" in attributes:
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"StatementsNeedAParent{{{self.delegate.get_description()}}}"


def configure(service: str) -> bool:
    """Install the SDK and instrument the libraries, if the environment asks for traces (once per
    process, before any connection is opened). Returns whether traces are on."""
    if not wanted():
        return False
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True  # configured already
    if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") != "http/protobuf":
        log.warning("traces: only OTLP over http/protobuf is exported; using it")

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.logging import LoggingInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.sampler = StatementsNeedAParent(provider.sampler)  # before any tracer is made
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    PsycopgInstrumentor().instrument()
    LoggingInstrumentor().instrument(inject_trace_context=True)
    log.info("traces: exported over OTLP (sampler %s)", provider.sampler.get_description())
    return True


def flush(timeout: float = 5.0) -> None:
    """Send the spans still batched, at a process's shutdown. (The SDK would at exit, but a
    uvicorn stopped by SIGTERM raises the signal again once shut down, and dies of it: no exit
    handler runs.)"""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(int(timeout * 1000))


def instrument_app(app: FastAPI) -> None:
    """A server span for each request (its `traceparent` continued), if traces are on."""
    if not wanted():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # Without the ASGI send/receive spans: two more spans per request that say nothing here.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
    )
