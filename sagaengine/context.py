"""What the engine's log lines and outgoing calls carry: the request that started a saga, the
saga, its step and phase. Context variables, so each saga's task has its own; a logging
formatter (the app's) reads them."""

from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
saga_id: ContextVar[str | None] = ContextVar("saga_id", default=None)
saga_step: ContextVar[str | None] = ContextVar("saga_step", default=None)
saga_phase: ContextVar[str | None] = ContextVar("saga_phase", default=None)
