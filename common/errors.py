"""Domain errors and the one JSON error body: `{"error": {"code", "message"}}`.

The engine's own (`sagaengine.errors`), so that what a service raises and what the engine
recognises are one class.
"""

from sagaengine.errors import Refusal, error_body

__all__ = ["DomainError", "NotFound", "Refusal", "error_body"]


# The engine's refusal is the services' domain error: one class, so that what a service raises
# and what the engine's kit recognises are the same thing.
DomainError = Refusal


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
