"""`python -m orchestrator.cli`: the operator's command line, over the admin API, so it works
against an orchestrator anywhere (`--url`, or ORCHESTRATOR_URL).

    python -m orchestrator.cli sagas list --status NEEDS_ATTENTION --user-id 7
    python -m orchestrator.cli sagas show <saga id>
    python -m orchestrator.cli sagas retry <saga id> --reason "the user service is back"
    python -m orchestrator.cli sagas cancel <saga id> --reason "the customer called"
    python -m orchestrator.cli sagas retry-all --type payment --step deduct_balance --dry-run
    python -m orchestrator.cli audit

The token comes from the environment (ADMIN_TOKEN, or ADMIN_VIEWER_TOKEN to only read), never
from the command line, where other users of the machine could read it. `--json` prints what the
API answered. Exit codes: 0 done; 1 the orchestrator refused (the error's code and message are
printed); 2 a usage error; 3 the orchestrator could not be reached or failed (try again).
"""

import json
import os
import sys
from datetime import datetime
from typing import Annotated, Any, NoReturn

import httpx
import typer

DEFAULT_URL = "http://127.0.0.1:8000"
REFUSED, UNREACHABLE = 1, 3

app = typer.Typer(
    help="The operator's command line, over the admin API (the token from ADMIN_TOKEN).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
sagas = typer.Typer(help="List, show, retry and cancel sagas.", no_args_is_help=True)
app.add_typer(sagas, name="sagas")

Url = Annotated[str, typer.Option(envvar="ORCHESTRATOR_URL", help="the orchestrator's base URL")]
AsJson = Annotated[bool, typer.Option("--json", help="print the API's answer as JSON")]
Reason = Annotated[str | None, typer.Option(help="why, for the audit trail")]


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _token() -> str:
    token = os.environ.get("ADMIN_TOKEN") or os.environ.get("ADMIN_VIEWER_TOKEN")
    if not token:
        _fail(2, "set ADMIN_TOKEN (or ADMIN_VIEWER_TOKEN, to only read) in the environment")
    return token


def _call(url: str, method: str, path: str, **kwargs: Any) -> Any:
    """The API's answer to one request, or an exit with what went wrong."""
    headers = {"Authorization": f"Bearer {_token()}"}
    try:
        answer = httpx.request(
            method, f"{url.rstrip('/')}{path}", headers=headers, timeout=30, **kwargs
        )
    except httpx.HTTPError as error:
        _fail(UNREACHABLE, f"the orchestrator at {url} cannot be reached: {error}")
    if answer.status_code >= 500:
        _fail(UNREACHABLE, f"the orchestrator answered {answer.status_code}: {answer.text[:300]}")
    if answer.status_code >= 400:
        try:
            refusal = answer.json()["error"]
            what, message = f"{answer.status_code} {refusal['code']}", refusal["message"]
        except (ValueError, KeyError, TypeError):
            what, message = str(answer.status_code), answer.text[:300]
        _fail(REFUSED, f"refused ({what}): {message}")
    return answer.json()


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    for line in [header, *rows]:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _when(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _why(saga: dict[str, Any]) -> str:
    """What a saga is stuck on, or what turned it back."""
    problem = saga.get("attention") or saga.get("error")
    if not problem:
        return ""
    where = f" at {problem.get('step')}" + (
        f" ({problem['phase']})" if problem.get("phase") else ""
    )
    return f"{problem.get('code')}{where}"


@sagas.command("list")
def list_sagas(
    url: Url = DEFAULT_URL,
    status: Annotated[
        str | None, typer.Option(help="RUNNING, COMPENSATING, COMPLETED, ...")
    ] = None,
    type: Annotated[str | None, typer.Option(help="payment, refund, reservation, ...")] = None,
    order_id: Annotated[int | None, typer.Option(help="sagas carrying this order")] = None,
    user_id: Annotated[int | None, typer.Option(help="sagas carrying this user")] = None,
    concert_id: Annotated[int | None, typer.Option(help="sagas carrying this concert")] = None,
    seat_id: Annotated[int | None, typer.Option(help="sagas carrying this seat")] = None,
    request_id: Annotated[str | None, typer.Option(help="the request that started it")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="at most this many")] = 20,
    as_json: AsJson = False,
) -> None:
    """The newest sagas matching every filter given."""
    filters = {
        "status": status,
        "type": type,
        "order_id": order_id,
        "user_id": user_id,
        "concert_id": concert_id,
        "seat_id": seat_id,
        "request_id": request_id,
        "limit": limit,
    }
    page = _call(
        url, "GET", "/admin/sagas", params={k: v for k, v in filters.items() if v is not None}
    )
    if as_json:
        _print_json(page)
        return
    rows = [
        [
            s["saga_id"],
            s["type"],
            s["status"],
            _when(s["created_at"]),
            " ".join(f"{k}={v}" for k, v in s.get("keys", {}).items() if v is not None),
            _why(s),
        ]
        for s in page["items"]
    ]
    _table(rows, ["SAGA", "TYPE", "STATUS", "STARTED (UTC)", "KEYS", "WHY"])
    if page.get("next_cursor"):
        typer.echo("(more: raise --limit, up to 200)")


@sagas.command("show")
def show(saga_id: str, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """One saga with every attempt of its steps."""
    saga = _call(url, "GET", f"/admin/sagas/{saga_id}")
    if as_json:
        _print_json(saga)
        return
    typer.echo(f"{saga['type']} saga {saga['saga_id']}: {saga['status']}")
    keys = " ".join(f"{k}={v}" for k, v in saga.get("keys", {}).items() if v is not None)
    typer.echo(f"started {_when(saga['created_at'])} UTC  {keys}")
    if _why(saga):
        typer.echo(f"{'needs attention' if saga.get('attention') else 'turned back'}: {_why(saga)}")
    if saga.get("trace_id"):
        typer.echo(f"trace {saga['trace_id']}")
    rows = [
        [
            a["step"],
            a["phase"],
            str(a["attempt"]),
            a["status"],
            _when(a["started_at"]),
            (a.get("error") or {}).get("code", ""),
        ]
        for a in saga["steps"]
    ]
    _table(rows, ["STEP", "PHASE", "ATTEMPT", "STATUS", "STARTED (UTC)", "ERROR"])


@sagas.command("retry")
def retry(saga_id: str, url: Url = DEFAULT_URL, reason: Reason = None) -> None:
    """Resume a NEEDS_ATTENTION saga where it stopped."""
    answer = _call(url, "POST", f"/admin/sagas/{saga_id}/retry", json={"reason": reason})
    typer.echo(f"saga {answer['saga_id']} retried: {answer['status']}")


@sagas.command("cancel")
def cancel(
    saga_id: str,
    reason: Annotated[str, typer.Option(help="why (required), for the audit trail")],
    url: Url = DEFAULT_URL,
) -> None:
    """Stop a saga before its pivot: it compensates what it applied."""
    answer = _call(url, "POST", f"/admin/sagas/{saga_id}/cancel", json={"reason": reason})
    typer.echo(f"saga {answer['saga_id']} cancelled: {answer['status']}, compensating")


@sagas.command("retry-all")
def retry_all(
    url: Url = DEFAULT_URL,
    type: Annotated[str | None, typer.Option(help="sagas of this type")] = None,
    step: Annotated[str | None, typer.Option(help="stuck at this step")] = None,
    since: Annotated[
        str | None, typer.Option(help="started at or after (ISO 8601, with zone)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="started before (ISO 8601, with zone)")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100, help="at most this many, oldest first")
    ] = 100,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only say which")] = False,
    reason: Reason = None,
) -> None:
    """Retry the NEEDS_ATTENTION sagas matching every filter given."""
    body = {"type": type, "step": step, "since": since, "until": until, "limit": limit}
    body = {k: v for k, v in body.items() if v is not None}
    answer = _call(
        url, "POST", "/admin/sagas/retry", json={**body, "dry_run": dry_run, "reason": reason}
    )
    if dry_run:
        typer.echo(f"{answer['matching']} match; a run would retry {len(answer['saga_ids'])}:")
        for saga_id in answer["saga_ids"]:
            typer.echo(f"  {saga_id}")
        return
    typer.echo(f"retried {len(answer['retried'])} of {answer['matching']} matching")
    for saga_id in answer["not_retryable"]:
        typer.echo(f"  {saga_id}: no longer needed attention")


@app.command("audit")
def audit(
    url: Url = DEFAULT_URL,
    limit: Annotated[int, typer.Option(min=1, max=200, help="at most this many")] = 20,
    as_json: AsJson = False,
) -> None:
    """The operators' actions, newest first."""
    page = _call(url, "GET", "/admin/audit", params={"limit": limit})
    if as_json:
        _print_json(page)
        return
    rows = [
        [
            _when(a["at"]),
            a["actor"],
            a["action"],
            a["saga_id"] or "",
            a["result"],
            a["reason"] or "",
        ]
        for a in page["items"]
    ]
    _table(rows, ["WHEN (UTC)", "WHO", "ACTION", "SAGA", "RESULT", "REASON"])


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
