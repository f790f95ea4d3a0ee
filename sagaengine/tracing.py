"""A saga as one OpenTelemetry trace: a span per run of the saga and per attempt of a step.

The engine speaks only the OpenTelemetry API: the application chooses whether anything is
recorded, and where it goes (the SDK and an exporter: `common/tracing.py` here). With no SDK
installed, as when no OTLP endpoint is configured, each function below costs one check and
records nothing.

A saga's trace is the one its start request belongs to. Its context (a W3C `traceparent`) is
persisted with the saga, so a run that resumes it (recovery after a crash, an operator's retry,
another replica) continues the same trace; the outbox delivery of its outcome links to it.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_TRACER = trace.get_tracer("sagaengine")
_PROPAGATOR = TraceContextTextMapPropagator()
_OFF = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def enabled() -> bool:
    """Whether an SDK records spans in this process (the API alone records nothing)."""
    return not isinstance(trace.get_tracer_provider(), _OFF)


def current_traceparent() -> str | None:
    """The current span's context as a `traceparent`, to persist with a saga being started."""
    if not enabled():
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def _context_of(traceparent: str) -> Context:
    return _PROPAGATOR.extract({"traceparent": traceparent})


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) of a persisted `traceparent`, for the admin's link."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


@contextlib.contextmanager
def run_span(
    saga_id: str, saga_type: str, traceparent: str | None, *, resumed: bool
) -> Iterator[None]:
    """The span of one run of a saga in this process, in the saga's own trace."""
    if not enabled():
        yield
        return
    parent = _context_of(traceparent) if traceparent else None
    attributes: dict[str, Any] = {
        "saga.id": saga_id,
        "saga.type": saga_type,
        "saga.resumed": resumed,
    }
    name = f"saga {saga_type} {'resume' if resumed else 'run'}"
    with _TRACER.start_as_current_span(name, context=parent, attributes=attributes):
        yield


@contextlib.contextmanager
def attempt_span(
    *,
    saga_id: str,
    saga_type: str,
    step: str,
    phase: str,
    call: str,
    attempt: int,
    key: str,
) -> Iterator[Span | None]:
    """The span of one attempt of a step's call (`call`: action, compensation or settle); the
    HTTP client's span of the request, and the participant's, go below it."""
    if not enabled():
        yield None
        return
    attributes: dict[str, Any] = {
        "saga.id": saga_id,
        "saga.type": saga_type,
        "saga.step": step,
        "saga.phase": phase,
        "saga.call": call,
        "saga.attempt": attempt,
        "saga.idempotency_key": key,
    }
    with _TRACER.start_as_current_span(
        f"{step} {call}",
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        # A refusal or a fault is an outcome, recorded by `attempt_ended`, not an exception.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def attempt_ended(span: Span | None, outcome: str, error: str | None = None) -> None:
    """Record an attempt's outcome (SUCCEEDED, REFUSED, FAILED) on its span."""
    if span is None:
        return
    span.set_attribute("saga.outcome", str(outcome))
    if error is not None:
        span.set_attribute("saga.error", error)
        span.set_status(Status(StatusCode.ERROR, error))


@contextlib.contextmanager
def delivery_span(event_types: list[str], traceparents: list[str | None]) -> Iterator[None]:
    """The span of one outbox delivery: a trace of its own (it runs after the sagas, for many of
    them), linked to the trace of each saga whose event it carries."""
    if not enabled():
        yield
        return
    links = []
    for traceparent in traceparents:
        if traceparent:
            context = trace.get_current_span(_context_of(traceparent)).get_span_context()
            if context.is_valid:
                links.append(Link(context))
    attributes: dict[str, Any] = {
        "outbox.events": len(event_types),
        "outbox.types": sorted(set(event_types)),
    }
    with _TRACER.start_as_current_span(
        "outbox deliver",
        context=Context(),  # a root: not in the trace of whatever runs the relay
        kind=SpanKind.PRODUCER,
        links=links,
        attributes=attributes,
    ):
        yield
