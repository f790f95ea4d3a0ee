"""The one error shape the engine and its participants speak: a refusal with a machine code,
answered over HTTP as `{"error": {"code", "message"}}` with a 4xx status."""

from typing import Any


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class Refusal(Exception):
    """An expected business answer ("no", "not now"), not a bug: a 4xx with its machine code."""

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
