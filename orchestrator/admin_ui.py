"""The admin page: sagas with filters and counts, each saga's timeline, the outbox backlog, and a
retry button for sagas that need an operator. Server-rendered (Jinja2), no front-end build.

Logging in sets the operator's token (the admin token, or the viewer token, which may only read)
in an HttpOnly, SameSite=Strict cookie; every page checks it in constant time, as the admin API
checks its bearer token, and an action needs the admin token.
"""

import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from common.auth import Forbidden, Role, role_of
from common.errors import DomainError
from orchestrator import service
from orchestrator.api import _decode_cursor, _encode_cursor, detail, summary
from orchestrator.schemas import SagaOut
from sagaengine.definition import SETTLE_PATH, SagaStatus
from sagaengine.registry import Registry
from sagaengine.store import OutboxStatus, SagaState

COOKIE = "admin_token"
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(prefix="/admin/ui", include_in_schema=False)
PAGE = 50  # sagas per page
OUTBOX_SHOWN = 200  # pending events on the outbox page (newest first)
LIST_PARAMS = {
    "status", "type", "since", "tz", "cursor", "before", "order_id", "user_id", "concert_id",
    "seat_id", "request_id", "limit",
}  # fmt: skip


Page = Callable[..., Awaitable[Response]]


def _html_errors(page: Page) -> Page:
    """A refusal on a page (an unknown saga, a bad cursor, a retry or cancel of a final saga,
    a viewer acting) answers an HTML page with its message and a way back, with the API's
    status code; the admin API under /admin keeps answering JSON."""

    @functools.wraps(page)
    async def answer(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await page(request, *args, **kwargs)
        except DomainError as error:
            back = request.headers.get("referer") or "/admin/ui"
            if not back.startswith(str(request.base_url).rstrip("/") + "/admin/ui"):
                back = "/admin/ui"
            context = {"error": error, "back": back}
            return templates.TemplateResponse(
                request, "error.html", context, status_code=error.status_code
            )

    return answer


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


KEY_FILTERS = ("order_id", "user_id", "concert_id", "seat_id")


def _since(value: str, tz: str | None) -> datetime:
    """The "since" filter as the operator meant it: an ISO 8601 time with its offset, or a
    `datetime-local` value in the browser's zone, whose offset from UTC in minutes (east
    positive) the page's script sends as `tz`; with neither, UTC. ValueError if unreadable."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        return parsed
    minutes = int(tz) if tz else 0
    if not -16 * 60 <= minutes <= 16 * 60:
        raise ValueError(f"{tz} minutes is no time zone's offset")
    return parsed.replace(tzinfo=timezone(timedelta(minutes=minutes)))


def _filters(params: dict[str, str], types: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The list's filters from the query string, and what is wrong with them: a filter that
    does not read is said so on the page, never silently dropped (dropping it would list
    sagas that do not match as if they did)."""
    errors: list[str] = []
    chosen: dict[str, Any] = {"keys": {}}
    status = params.get("status") or None
    if status is not None and status not in SagaStatus.__members__:
        errors.append(f"status {status!r} is not one of {', '.join(SagaStatus)}")
    chosen["status"] = SagaStatus(status) if status and status in SagaStatus.__members__ else None
    saga_type = params.get("type") or None
    if saga_type is not None and saga_type not in types:
        errors.append(f"type {saga_type!r} is not one of {', '.join(types)}")
    chosen["saga_type"] = saga_type
    for name in KEY_FILTERS:
        value = (params.get(name) or "").strip()
        if not value:
            continue
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) < 2**63:
            errors.append(f"{name.replace('_', ' ')} {value!r} is not an id (a positive number)")
        else:
            chosen["keys"][name] = int(value)
    request_id = (params.get("request_id") or "").strip()
    if len(request_id) > 128:
        errors.append("a request id is at most 128 characters")
    chosen["request_id"] = request_id or None
    limit = params.get("limit") or str(PAGE)
    if not limit.isdigit() or not 1 <= int(limit) <= 200:
        errors.append(f"limit {limit!r} is not a number from 1 to 200")
    chosen["limit"] = int(limit) if limit.isdigit() else PAGE
    chosen["since"] = None
    if params.get("since"):
        try:
            chosen["since"] = _since(params["since"], params.get("tz"))
        except ValueError:
            errors.append(f"since {params['since']!r} is not a date and time")
    return chosen, errors


@router.get("")
@_html_errors
async def sagas(request: Request) -> Response:
    if not _logged_in(request):
        return _to_login()
    registry = request.app.state.sagas
    params = dict(request.query_params)
    chosen, errors = _filters(params, list(registry.current))
    states: list[SagaState] = []
    older = newer = False
    if not errors:
        try:
            after = _decode_cursor(params["cursor"]) if params.get("cursor") else None
            before = _decode_cursor(params["before"]) if params.get("before") else None
        except DomainError as error:
            errors.append(error.message)
        else:
            states = await request.app.state.admin.page(
                status=chosen["status"],
                saga_type=chosen["saga_type"],
                limit=chosen["limit"] + 1,
                after=after,
                before=before if after is None else None,
                since=chosen["since"],
                keys=chosen["keys"],
                request_id=chosen["request_id"],
            )
            if before is not None and after is None:  # a page back: oldest first
                newer = len(states) > chosen["limit"]
                states = states[: chosen["limit"]][::-1]
                older = bool(states)
            else:
                older = len(states) > chosen["limit"]
                states = states[: chosen["limit"]]
                newer = after is not None and bool(states)
    paged = bool(params.get("cursor") or params.get("before"))
    kept = {k: v for k, v in params.items() if k in LIST_PARAMS - {"cursor", "before"} and v}

    def link(**cursor: str) -> str:
        return f"/admin/ui?{urlencode({**kept, **cursor})}"

    context = {
        "sagas": [_row(registry, s) for s in states],
        "counts": await request.app.state.admin.counts_at_a_glance(),
        "statuses": list(SagaStatus),
        "types": list(registry.current),
        "params": params,
        "errors": errors,
        "next_link": link(cursor=_encode_cursor(states[-1])) if older else None,
        "newer_link": link(before=_encode_cursor(states[0])) if newer else None,
        "first_link": link() if paged else None,
        "outbox": await request.app.state.admin.outbox_backlog(at_a_glance=True),
        "can_act": _role(request) is Role.ADMIN,
    }
    return templates.TemplateResponse(
        request, "sagas.html", context, status_code=422 if errors else 200
    )


def _amount(registry: Registry, state: SagaState) -> int | None:
    """How much money the saga moves, from its data (a payment's or refund's `amount`, a
    reservation's `price`): not one of its keys, which are what it is found by."""
    definition = registry.get((state.type, state.version))
    if definition is None:
        return None
    try:
        data = definition.data_of(state.payload, state.results)
    except ValidationError:
        return None
    for name in ("amount", "price"):
        value = getattr(data, name, None)
        if isinstance(value, int):
            return value
    return None


def _row(registry: Registry, state: SagaState) -> dict[str, Any]:
    """A saga as the page lists it: its summary, the money it moves, and why it is where it is
    (what a stuck saga is stuck on, not the error that sent it back)."""
    row = summary(registry, state).model_dump()
    row["amount"] = _amount(registry, state)
    row["others"] = {k: v for k, v in row["keys"].items() if k not in ("user_id",)}
    return row


def _timeline(saga: SagaOut) -> tuple[list[dict[str, Any]], int]:
    start = saga.created_at
    ends = [a.finished_at or datetime.now(UTC) for a in saga.steps] + [
        saga.finished_at or datetime.now(UTC)
    ]
    span = max((max(ends) - start).total_seconds(), 0.001)
    rows = []
    for a in saga.steps:
        finished = a.finished_at or datetime.now(UTC)
        settle = a.phase == "action" and a.request.get("path") == SETTLE_PATH
        rows.append(
            {
                **a.model_dump(),
                # A pivot whose answer was lost is settled by its key: that call is an attempt
                # of the pivot's action, and its answer says whether the action was applied.
                "settle": settle,
                "verdict": (a.response or {}).get("outcome") if settle else None,
                # The key without the saga id every key of the saga starts with.
                "short_key": a.idempotency_key.removeprefix(f"{saga.saga_id}:"),
                "left": round((a.started_at - start).total_seconds() / span * 100, 2),
                "width": max(round((finished - a.started_at).total_seconds() / span * 100, 2), 0.5),
                "ms": round((finished - a.started_at).total_seconds() * 1000, 1),
            }
        )
    return rows, round(span * 1000)


@router.get("/sagas/{saga_id}")
@_html_errors
async def saga_page(request: Request, saga_id: str) -> Response:
    if not _logged_in(request):
        return _to_login()
    runner = request.app.state.runner
    state = await service.get_saga(runner, saga_id)
    saga = await detail(request.app.state.sagas, request.app.state.admin, state)
    timeline, total_ms = _timeline(saga)
    trace_link = request.app.state.settings.trace_link(saga.trace_id)
    context = {
        "saga": saga,
        "amount": _amount(request.app.state.sagas, state),
        "timeline": timeline,
        "total_ms": total_ms,
        "trace_link": trace_link,
        "can_act": _role(request) is Role.ADMIN,
        "cancellable": _cancellable(request, saga),
        # Who stepped in, when, why: the saga's own lines of the audit trail.
        "actions": await request.app.state.audit.page(50, saga_id=saga.saga_id),
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


def _acting(request: Request, doing: str) -> Role | None:
    """The role of the operator about to act (None: not logged in); a viewer's token: 403."""
    role = _role(request)
    if role is not None and role is not Role.ADMIN:
        raise Forbidden(f"this token may only read: {doing} needs ADMIN_TOKEN")
    return role


async def _form(request: Request) -> dict[str, str]:
    """A posted form's fields (the first value of each), trimmed."""
    fields = parse_qs((await request.body()).decode(errors="replace"))
    return {name: values[0].strip() for name, values in fields.items()}


@router.post("/sagas/{saga_id}/retry")
@_html_errors
async def retry(request: Request, saga_id: str) -> Response:
    role = _acting(request, "retrying")
    if role is None:
        return _to_login()
    reason = (await _form(request)).get("reason", "")[:500] or None
    runner, audit = request.app.state.runner, request.app.state.audit
    await service.operator_retry(runner, audit, role, saga_id, reason)
    return RedirectResponse(f"/admin/ui/sagas/{saga_id}", status_code=303)


@router.post("/sagas/{saga_id}/cancel")
@_html_errors
async def cancel(request: Request, saga_id: str) -> Response:
    role = _acting(request, "cancelling")
    if role is None:
        return _to_login()
    reason = (await _form(request)).get("reason", "")[:500]
    if not reason:
        raise DomainError("a cancellation needs a reason", code="reason_required", status_code=422)
    runner, audit = request.app.state.runner, request.app.state.audit
    await service.operator_cancel(runner, audit, role, saga_id, reason)
    return RedirectResponse(f"/admin/ui/sagas/{saga_id}", status_code=303)


BULK_MOST = 100  # as the API's bulk retry: a bounded amount of work per action


def _selection(values: dict[str, str], types: list[str]) -> tuple[str | None, str | None]:
    """The stuck sagas an operator picked: of a type (one this orchestrator runs), at a step."""
    kind = values.get("type") or None
    if kind is not None and kind not in types:
        raise DomainError(f"unknown saga type {kind!r}", code="validation_error", status_code=422)
    step = (values.get("step") or "").strip()[:64] or None
    return kind, step


@router.get("/retry-stuck")
@_html_errors
async def retry_stuck_preview(request: Request) -> Response:
    """A bulk retry's dry run: how many NEEDS_ATTENTION sagas match, which would be retried,
    and the form that confirms it with a reason."""
    if _acting(request, "retrying") is None:
        return _to_login()
    kind, step = _selection(dict(request.query_params), list(request.app.state.sagas.current))
    matching, stuck = await request.app.state.admin.needing_attention(
        saga_type=kind, step=step, since=None, until=None, limit=BULK_MOST
    )
    context = {"type": kind, "step": step, "matching": matching, "stuck": stuck}
    return templates.TemplateResponse(request, "retry_stuck.html", context)


@router.post("/retry-stuck")
@_html_errors
async def retry_stuck(request: Request) -> Response:
    role = _acting(request, "retrying")
    if role is None:
        return _to_login()
    form = await _form(request)
    kind, step = _selection(form, list(request.app.state.sagas.current))
    reason = form.get("reason", "")[:500] or None
    _, stuck = await request.app.state.admin.needing_attention(
        saga_type=kind, step=step, since=None, until=None, limit=BULK_MOST
    )
    runner, audit = request.app.state.runner, request.app.state.audit
    await service.operator_bulk_retry(runner, audit, role, stuck, reason)
    return RedirectResponse("/admin/ui/audit", status_code=303)


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    if not _logged_in(request):
        return _to_login()
    actions = await request.app.state.audit.page(200)
    return templates.TemplateResponse(request, "audit.html", {"actions": actions})


@router.get("/outbox")
async def outbox_page(request: Request) -> Response:
    """The events waiting for the data platform: each one's age, tries and last error (one
    that has failed is still pending: the relay tries it again at its next attempt time)."""
    if not _logged_in(request):
        return _to_login()
    admin = request.app.state.admin
    pending = await admin.outbox_messages(OutboxStatus.PENDING, OUTBOX_SHOWN)
    now = datetime.now(UTC)
    events = [
        {
            "event": m,
            "age": _age((now - m.occurred_at).total_seconds()),
            "failed": m.attempts > 0 or m.last_error is not None,
        }
        for m in pending
    ]
    context = {
        "events": events,
        "backlog": await admin.outbox_backlog(at_a_glance=True),
        "can_act": _role(request) is Role.ADMIN,
    }
    return templates.TemplateResponse(request, "outbox.html", context)


@router.post("/outbox/{event_id}/redeliver")
@_html_errors
async def redeliver(request: Request, event_id: str) -> Response:
    """Deliver a pending event now, not after its backoff (the platform is back)."""
    role = _acting(request, "redelivering")
    if role is None:
        return _to_login()
    try:
        event = uuid.UUID(event_id)
    except ValueError:
        raise DomainError(f"no event {event_id!r}", code="not_found", status_code=404) from None
    saga_id = (await _form(request)).get("saga_id", "")
    admin, audit = request.app.state.admin, request.app.state.audit
    await service.operator_redeliver(admin, audit, role, event, saga_id)
    request.app.state.relay.notify()  # this process's relay, if it runs one, goes at once
    return RedirectResponse("/admin/ui/outbox", status_code=303)


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
