"""The operators' command line against a running orchestrator: list with a filter, show, retry,
bulk retry, the audit trail; its errors and exit codes."""

import json
import os
import subprocess
import sys

from tests.e2e.client import Api, wait_for
from tests.e2e.test_operators import _stuck_payment
from tools.stack import ROOT


def _cli(
    api: Api, *args: str, token: str | None = "dev-admin-token"
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "ADMIN_VIEWER_TOKEN")}
    env["ORCHESTRATOR_URL"] = api.stack.url("orchestrator")
    if token is not None:
        env["ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_operator_lists_shows_retries_and_reads_the_audit_trail(api: Api):
    saga_id = _stuck_payment(api)
    user_id = api.saga(saga_id)["user_id"]

    listed = _cli(api, "sagas", "list", "--user-id", str(user_id), "--status", "NEEDS_ATTENTION")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:4] == ["SAGA", "TYPE", "STATUS", "STARTED"]
    assert row.split()[:3] == [saga_id, "payment", "NEEDS_ATTENTION"]
    assert f"user_id={user_id}" in row and "at deduct_balance (compensation)" in row

    shown = _cli(api, "sagas", "show", saga_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"payment saga {saga_id}: NEEDS_ATTENTION")
    assert "needs attention: " in shown.stdout and "approve_payment" in shown.stdout
    as_json = json.loads(_cli(api, "sagas", "show", saga_id, "--json").stdout)
    assert as_json["saga_id"] == saga_id and as_json["steps"]

    api.clear_faults()
    retried = _cli(api, "sagas", "retry", saga_id, "--reason", "from the command line")
    assert retried.returncode == 0, retried.stderr
    wait_for(lambda: api.saga(saga_id)["status"] == "COMPENSATED", what="the retried saga")

    trail = json.loads(_cli(api, "audit", "--json").stdout)["items"]
    mine = [a for a in trail if a["saga_id"] == saga_id]
    assert [(a["action"], a["reason"], a["result"]) for a in mine] == [
        ("retry", "from the command line", "accepted")
    ]
    table = _cli(api, "audit").stdout
    assert saga_id in table and "from the command line" in table


def test_an_operator_cancels_a_saga_before_its_pivot(api: Api):
    saga_id = _stuck_payment(api)
    api.clear_faults()

    cancelled = _cli(api, "sagas", "cancel", saga_id, "--reason", "no longer wanted")

    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"saga {saga_id} cancelled")
    wait_for(lambda: api.saga(saga_id)["status"] == "COMPENSATED", what="the cancelled saga")
    again = _cli(api, "sagas", "cancel", saga_id, "--reason", "twice")
    assert again.returncode == 1 and "saga_not_cancellable" in again.stderr
    assert _cli(api, "sagas", "cancel", saga_id).returncode == 2  # a reason is required


def test_a_bulk_retry_dry_run_says_how_many(api: Api):
    dry = _cli(api, "sagas", "retry-all", "--type", "no-such-type", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("0 match; a run would retry 0")


def test_errors_are_one_line_and_an_exit_code(api: Api):
    unknown = _cli(api, "sagas", "show", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("refused (404 ")
    final = api.pay(api.create_order(api.create_user(5_000), 1_000))["saga_id"]
    not_stuck = _cli(api, "sagas", "retry", final)
    assert (not_stuck.returncode, not_stuck.stderr.split(":")[0]) == (
        1,
        "refused (409 saga_not_retryable)",
    )
    viewer = _cli(api, "sagas", "retry", final, token="dev-viewer-token")
    assert viewer.returncode == 1 and viewer.stderr.startswith("refused (403 forbidden)")
    assert _cli(api, "audit", token=None).returncode == 2  # no token: said, nothing sent
    assert _cli(api, "audit", token="wrong").returncode == 1  # 401
    down = _cli(api, "audit", "--url", "http://127.0.0.1:1")
    assert down.returncode == 3 and "cannot be reached" in down.stderr
    for output in (unknown, not_stuck, viewer, down):
        assert "Traceback" not in output.stderr
