"""A participant's refusals and the one JSON error body, `{"error": {"code", "message"}}`.

A refusal is an expected business outcome (a seat taken, a balance too low): answered as a 4xx
with its machine code, read by the orchestrator as final, never retried, never stored by the
idempotency store. Standard library only, so that a service's domain module can raise one.
"""

from typing import Any


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class Refusal(Exception):
    """An expected business outcome; the service's handler answers it with `body()` and its
    `status_code`. Subclasses set their own `code` and `status_code`."""

    status_code: int = 409
    code: str = "conflict"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)
