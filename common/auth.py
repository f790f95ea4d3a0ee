"""Bearer-token checks: the admin token for operators, the service token between processes."""

import hmac
from collections.abc import Callable

from fastapi import Request

from common.errors import DomainError


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bearer_token_required(token_of: Callable[[Request], str]) -> Callable[[Request], None]:
    """A dependency that refuses a request unless it carries the expected bearer token."""

    def check(request: Request) -> None:
        expected = token_of(request)
        # compare_digest: the time taken says nothing about how much of the token matched.
        if not hmac.compare_digest(_bearer(request).encode(), expected.encode()):
            raise Unauthorized("missing or invalid bearer token")

    return check


require_service_token = bearer_token_required(lambda r: r.app.state.settings.service_token)
require_admin_token = bearer_token_required(lambda r: r.app.state.settings.admin_token)
