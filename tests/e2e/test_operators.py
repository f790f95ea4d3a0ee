"""Operators, on real processes: two roles (the admin token acts, the viewer token only reads),
and an audit trail that records each action once, with who, why and what came of it."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.client import ADMIN_AUTH, Api, wait_for

VIEWER_AUTH = {"Authorization": "Bearer dev-viewer-token"}  # tools.stack's ADMIN_VIEWER_TOKEN


def _stuck_payment(api: Api) -> str:
    """A payment saga stopped at NEEDS_ATTENTION: its charge-back fails past its budget."""
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 1_000)
    api.fault("payment", "approve_payment", "refuse")
    api.fault("user", "charge_back", "error", times=None)
    saga_id = api.start_payment(order_id, key=f"operators-{order_id}", wait=2).json()["saga_id"]
    wait_for(lambda: api.saga(saga_id)["status"] == "NEEDS_ATTENTION", what="a stuck saga")
    return saga_id


def _actions_on(api: Api, saga_id: str, auth=ADMIN_AUTH) -> list[dict]:
    page = api.http.get(api.url("orchestrator", "/admin/audit"), headers=auth)
    assert page.status_code == 200, page.text
    return [a for a in page.json()["items"] if a["saga_id"] == saga_id]


def test_a_viewer_reads_everything_and_acts_on_nothing(api: Api):
    saga_id = _stuck_payment(api)
    for path in ("/admin/sagas", f"/admin/sagas/{saga_id}", "/admin/audit", "/admin/outbox"):
        assert api.http.get(api.url("orchestrator", path), headers=VIEWER_AUTH).status_code == 200

    retried = api.http.post(
        api.url("orchestrator", f"/admin/sagas/{saga_id}/retry"), headers=VIEWER_AUTH
    )

    assert retried.status_code == 403
    assert retried.json()["error"]["code"] == "forbidden"
    assert api.saga(saga_id)["status"] == "NEEDS_ATTENTION"  # nothing changed
    assert _actions_on(api, saga_id) == []  # refused before it was an action
    stranger = {"Authorization": "Bearer not-a-token"}
    assert api.http.get(api.url("orchestrator", "/admin/audit"), headers=stranger).status_code == (
        401
    )


def test_each_retry_is_in_the_audit_trail_once_with_who_why_and_its_result(api: Api):
    saga_id = _stuck_payment(api)
    api.clear_faults()

    retried = api.http.post(
        api.url("orchestrator", f"/admin/sagas/{saga_id}/retry"),
        headers={**ADMIN_AUTH, "X-Request-ID": f"audit-{saga_id}"},
        json={"reason": "the user service is back"},
    )
    assert retried.status_code == 202
    wait_for(lambda: api.saga(saga_id)["status"] == "COMPENSATED", what="the retried saga")
    again = api.http.post(
        api.url("orchestrator", f"/admin/sagas/{saga_id}/retry"), headers=ADMIN_AUTH
    )
    assert again.status_code == 409

    actions = _actions_on(api, saga_id, auth=VIEWER_AUTH)  # a viewer reads the trail too
    assert [(a["actor"], a["action"], a["reason"], a["result"]) for a in actions] == [
        ("admin", "retry", None, "saga_not_retryable"),  # newest first
        ("admin", "retry", "the user service is back", "accepted"),
    ]
    assert actions[1]["request_id"] == f"audit-{saga_id}"


def test_the_admin_page_shows_the_audit_trail_and_a_retry_only_to_the_admin(api: Api):
    saga_id = _stuck_payment(api)
    page = api.url("orchestrator", f"/admin/ui/sagas/{saga_id}")

    as_viewer = httpx.get(page, cookies={"admin_token": "dev-viewer-token"})
    as_admin = httpx.get(page, cookies={"admin_token": "dev-admin-token"})

    assert 'id="attention"' in as_viewer.text and 'id="retry"' not in as_viewer.text
    assert 'id="retry"' in as_admin.text
    refused = httpx.post(f"{page}/retry", cookies={"admin_token": "dev-viewer-token"})
    assert refused.status_code == 403

    api.clear_faults()
    done = httpx.post(
        f"{page}/retry",
        cookies={"admin_token": "dev-admin-token"},
        data={"reason": "fixed from the page"},
    )
    assert done.status_code == 303
    audit = httpx.get(
        api.url("orchestrator", "/admin/ui/audit"), cookies={"admin_token": "dev-viewer-token"}
    )
    assert saga_id in audit.text and "fixed from the page" in audit.text


def test_a_bulk_retry_s_dry_run_and_run_agree_and_each_saga_is_audited(api: Api):
    started = datetime.now(UTC) - timedelta(seconds=1)  # this test's sagas, not earlier ones
    stuck = sorted(_stuck_payment(api) for _ in range(2))
    url = api.url("orchestrator", "/admin/sagas/retry")
    which = {"type": "payment", "step": "deduct_balance", "since": started.isoformat()}

    dry = api.http.post(url, json={**which, "dry_run": True}, headers=ADMIN_AUTH).json()
    assert (dry["matching"], sorted(dry["saga_ids"]), dry["retried"]) == (2, stuck, [])
    assert api.http.post(url, json=which, headers=VIEWER_AUTH).status_code == 403
    assert [api.saga(s)["status"] for s in stuck] == ["NEEDS_ATTENTION"] * 2  # nothing moved

    api.clear_faults()
    run = api.http.post(
        url, json={**which, "reason": "charge-backs work again"}, headers=ADMIN_AUTH
    )
    assert run.status_code == 200, run.text
    assert sorted(run.json()["retried"]) == stuck == sorted(run.json()["saga_ids"])
    for saga_id in stuck:
        wait_for(lambda s=saga_id: api.saga(s)["status"] == "COMPENSATED", what="retried")
        assert [(a["action"], a["result"]) for a in _actions_on(api, saga_id)] == [
            ("bulk_retry", "accepted")
        ]
    again = api.http.post(url, json={**which, "dry_run": True}, headers=ADMIN_AUTH).json()
    assert again["matching"] == 0


@pytest.mark.parametrize(
    "body",
    [{"limit": 101}, {"since": "2026-11-30T10:00:00"}, {"status": "RUNNING"}],
    ids=["past the bound", "a time without its zone", "an unknown filter"],
)
def test_a_bulk_retry_it_cannot_read_is_a_422(api: Api, body: dict):
    answer = api.http.post(
        api.url("orchestrator", "/admin/sagas/retry"), json=body, headers=ADMIN_AUTH
    )
    assert answer.status_code == 422
