"""Domain errors and the one JSON error body: `{"error": {"code", "message"}}`.

`DomainError` is the participant kit's `Refusal` under the name the services use, so that the
idempotency store, which knows only the kit, treats every domain error as a refusal.
"""

from sagaengine.participant.errors import Refusal, error_body

__all__ = ["DomainError", "NotFound", "error_body"]

DomainError = Refusal


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
