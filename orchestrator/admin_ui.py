"""The admin page: sagas with filters and counts, each saga's timeline, the outbox backlog, and a
retry button for sagas that need an operator. Server-rendered (Jinja2), no front-end build.

Logging in sets the operator's token (the admin token, or the viewer token, which may only read)
in an HttpOnly, SameSite=Strict cookie; every page checks it in constant time, as the admin API
checks its bearer token, and an action needs the admin token.
"""

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from common.auth import Forbidden, Role, role_of
from common.errors import DomainError
from orchestrator import service
from orchestrator.api import _decode_cursor, _encode_cursor, detail, summary
from orchestrator.schemas import SagaOut
from sagaengine.definition import SagaStatus

COOKIE = "admin_token"
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(prefix="/admin/ui", include_in_schema=False)


def _role(request: Request) -> Role | None:
    """The role of the token the operator logged in with, or None (not logged in)."""
    settings = request.app.state.settings
    token = request.cookies.get(COOKIE, "")
    return role_of(token, settings.admin_token, settings.admin_viewer_token)


def _logged_in(request: Request) -> bool:
    return _role(request) is not None


def _to_login() -> RedirectResponse:
    return RedirectResponse("/admin/ui/login", status_code=303)


@router.get("/login")
def login_page(request: Request, failed: bool = False) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"failed": failed})


@router.post("/login")
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0]
    settings = request.app.state.settings
    if role_of(token, settings.admin_token, settings.admin_viewer_token) is None:
        return RedirectResponse("/admin/ui/login?failed=true", status_code=303)
    response = RedirectResponse("/admin/ui", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/admin/ui")
    return response


@router.get("/logout")
def logout() -> Response:
    response = _to_login()
    response.delete_cookie(COOKIE, path="/admin/ui")
    return response


def _since(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed and parsed.tzinfo is None else parsed


@router.get("")
async def sagas(
    request: Request,
    status: str | None = None,
    type: str | None = None,
    since: str | None = None,
    cursor: str | None = None,
) -> Response:
    if not _logged_in(request):
        return _to_login()
    chosen = SagaStatus(status) if status and status in SagaStatus.__members__ else None
    after = _decode_cursor(cursor) if cursor else None
    states = await request.app.state.admin.page(
        status=chosen, saga_type=type or None, limit=51, after=after, since=_since(since)
    )
    more = len(states) > 50
    states = states[:50]
    context = {
        "sagas": [summary(request.app.state.sagas, s) for s in states],
        "counts": await request.app.state.admin.counts_at_a_glance(),
        "statuses": list(SagaStatus),
        "types": list(request.app.state.sagas.current),
        "status": chosen,
        "type": type,
        "since": since,
        "next_cursor": _encode_cursor(states[-1]) if more else None,
        "outbox": await request.app.state.admin.outbox_backlog(at_a_glance=True),
    }
    return templates.TemplateResponse(request, "sagas.html", context)


def _timeline(saga: SagaOut) -> tuple[list[dict[str, Any]], int]:
    start = saga.created_at
    ends = [a.finished_at or datetime.now(UTC) for a in saga.steps] + [
        saga.finished_at or datetime.now(UTC)
    ]
    span = max((max(ends) - start).total_seconds(), 0.001)
    rows = []
    for a in saga.steps:
        finished = a.finished_at or datetime.now(UTC)
        rows.append(
            {
                **a.model_dump(),
                "left": round((a.started_at - start).total_seconds() / span * 100, 2),
                "width": max(round((finished - a.started_at).total_seconds() / span * 100, 2), 0.5),
                "ms": round((finished - a.started_at).total_seconds() * 1000, 1),
            }
        )
    return rows, round(span * 1000)


@router.get("/sagas/{saga_id}")
async def saga_page(request: Request, saga_id: uuid.UUID) -> Response:
    if not _logged_in(request):
        return _to_login()
    runner = request.app.state.runner
    saga = await detail(
        request.app.state.sagas,
        request.app.state.admin,
        await service.get_saga(runner, str(saga_id)),
    )
    timeline, total_ms = _timeline(saga)
    trace_link = request.app.state.settings.trace_link(saga.trace_id)
    context = {
        "saga": saga,
        "timeline": timeline,
        "total_ms": total_ms,
        "trace_link": trace_link,
        "can_act": _role(request) is Role.ADMIN,
        "cancellable": _cancellable(request, saga),
    }
    return templates.TemplateResponse(request, "saga.html", context)


def _cancellable(request: Request, saga: SagaOut) -> bool:
    """Whether the page offers a cancel: a saga before its pivot, going forward or stuck."""
    definition = request.app.state.sagas.get((saga.type, saga.definition_version))
    if definition is None or saga.status not in ("RUNNING", "NEEDS_ATTENTION"):
        return False
    steps = [a for a in saga.steps if a.phase == "action"]
    at = max((a.step_index for a in steps), default=0)
    going_back = any(a.phase == "compensation" for a in saga.steps) and saga.status == "RUNNING"
    return at < definition.pivot_index and not going_back


@router.post("/sagas/{saga_id}/retry")
async def retry(request: Request, saga_id: uuid.UUID) -> Response:
    role = _role(request)
    if role is None:
        return _to_login()
    if role is not Role.ADMIN:
        raise Forbidden("this token may only read: retrying needs ADMIN_TOKEN")
    form = parse_qs((await request.body()).decode(errors="replace"))
    reason = (form.get("reason") or [""])[0].strip()[:500] or None
    runner, audit = request.app.state.runner, request.app.state.audit
    await service.operator_retry(runner, audit, role, str(saga_id), reason)
    return RedirectResponse(f"/admin/ui/sagas/{saga_id}", status_code=303)


@router.post("/sagas/{saga_id}/cancel")
async def cancel(request: Request, saga_id: uuid.UUID) -> Response:
    role = _role(request)
    if role is None:
        return _to_login()
    if role is not Role.ADMIN:
        raise Forbidden("this token may only read: cancelling needs ADMIN_TOKEN")
    form = parse_qs((await request.body()).decode(errors="replace"))
    reason = (form.get("reason") or [""])[0].strip()[:500]
    if not reason:
        raise DomainError("a cancellation needs a reason", code="reason_required", status_code=422)
    runner, audit = request.app.state.runner, request.app.state.audit
    await service.operator_cancel(runner, audit, role, str(saga_id), reason)
    return RedirectResponse(f"/admin/ui/sagas/{saga_id}", status_code=303)


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    if not _logged_in(request):
        return _to_login()
    actions = await request.app.state.audit.page(200)
    return templates.TemplateResponse(request, "audit.html", {"actions": actions})
