"""Domain errors and the one JSON error body: `{"error": {"code", "message"}}`.

Standard library only, so that every service's domain module can raise them.
"""

from typing import Any


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class DomainError(Exception):
    """An expected business outcome; the handler maps it to a 4xx with its machine code."""

    status_code = 409
    code = "conflict"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
