"""Bearer-token checks: the admin tokens for operators (two roles), the service token between
processes."""

import hmac
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.errors import DomainError

# Declared for the OpenAPI document (Swagger UI's Authorize button); the checks below read the
# header themselves, so that a missing token is our 401 with its JSON error.
OPERATOR_TOKEN = HTTPBearer(
    auto_error=False,
    scheme_name="operator",
    description="ADMIN_TOKEN (reads and acts) or ADMIN_VIEWER_TOKEN (only reads)",
)
SERVICE_TOKEN = HTTPBearer(
    auto_error=False, scheme_name="service", description="SERVICE_TOKEN, between processes"
)
OperatorToken = Annotated[HTTPAuthorizationCredentials | None, Security(OPERATOR_TOKEN)]
ServiceToken = Annotated[HTTPAuthorizationCredentials | None, Security(SERVICE_TOKEN)]


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class Role(StrEnum):
    """What an operator's token lets them do: the admin token reads and acts, the viewer token
    (ADMIN_VIEWER_TOKEN) only reads."""

    ADMIN = "admin"
    VIEWER = "viewer"


def role_of(given: str, admin_token: str, viewer_token: str | None) -> Role | None:
    """The role `given` is the token of, or None. Both tokens are always compared, each in
    constant time: how long it takes says neither which one matched nor how much of it."""
    given_bytes = given.encode()
    is_admin = hmac.compare_digest(given_bytes, admin_token.encode())
    # Without a viewer token, the same work against one that no bearer can match.
    is_viewer = hmac.compare_digest(given_bytes, (viewer_token or "\0" + admin_token).encode())
    if is_admin and given:
        return Role.ADMIN
    if is_viewer and viewer_token:
        return Role.VIEWER
    return None


def admin_role(request: Request, _: OperatorToken = None) -> Role:
    """A dependency: the role of the request's admin bearer token (also kept on
    `request.state.role`), or 401."""
    settings = request.app.state.settings
    role = role_of(_bearer(request), settings.admin_token, settings.admin_viewer_token)
    if role is None:
        raise Unauthorized("missing or invalid bearer token")
    request.state.role = role
    return role


def operator(request: Request, _: OperatorToken = None) -> Role:
    """A dependency for an operator's action: the admin role, else 403 (a viewer may only read)."""
    role = admin_role(request)
    if role is not Role.ADMIN:
        raise Forbidden("this token may only read: retrying or cancelling needs ADMIN_TOKEN")
    return role


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bearer_token_required(token_of: Callable[[Request], str]) -> Callable[[Request], None]:
    """A dependency that refuses a request unless it carries the expected bearer token."""

    def check(request: Request, _: ServiceToken = None) -> None:
        expected = token_of(request)
        # compare_digest: the time taken says nothing about how much of the token matched.
        if not hmac.compare_digest(_bearer(request).encode(), expected.encode()):
            raise Unauthorized("missing or invalid bearer token")

    return check


require_service_token = bearer_token_required(lambda r: r.app.state.settings.service_token)
