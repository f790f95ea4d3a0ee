"""An operator cancels a saga, on real processes: before its pivot it stops going forward and
compensates what it applied, also with a call in flight; past it, or final, 409 and nothing
changes; a viewer may not; each cancellation is in the audit trail once."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.client import ADMIN_AUTH, SERVICE_AUTH, Api, assert_invariants, held, wait_for
from tests.e2e.test_operators import VIEWER_AUTH, _actions_on, _stuck_payment


def _cancel(api: Api, saga_id: str, reason: str, auth=ADMIN_AUTH):
    return api.http.post(
        api.url("orchestrator", f"/admin/sagas/{saga_id}/cancel"),
        json={"reason": reason},
        headers=auth,
    )


def _release(api: Api, service: str, point: str) -> None:
    r = api.http.post(
        api.url(service, "/_faults/release"), json={"point": point}, headers=SERVICE_AUTH
    )
    assert r.status_code == 200, r.text


def _newest_payment(api: Api, order_id: int) -> str | None:
    items = api.http.get(
        api.url("orchestrator", "/admin/sagas"), params={"order_id": order_id}, headers=ADMIN_AUTH
    ).json()["items"]
    return items[0]["saga_id"] if items else None


def test_a_saga_cancelled_with_its_payment_call_in_flight_is_compensated_whole(api: Api):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 3_000)
    api.fault("payment", "approve_payment", "hold")  # step 3's call waits in the service
    with ThreadPoolExecutor(1) as pool:
        pool.submit(api.start_payment, order_id, f"cancel-{order_id}")
        wait_for(lambda: held(api, "payment", "approve_payment") == 1, what="the call held")
        saga_id = _newest_payment(api, order_id)
        assert saga_id is not None

        cancelled = _cancel(api, saga_id, "the customer changed their mind")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["saga_id"] == saga_id
        _release(api, "payment", "approve_payment")  # the call ends (or has timed out)

    saga = wait_for(
        lambda: (s := api.saga(saga_id))["status"] == "COMPENSATED" and s, what="compensated"
    )
    assert saga["error"]["code"] == "cancelled"
    assert "the customer changed their mind" in saga["error"]["message"]
    compensations = [s["step"] for s in saga["steps"] if s["phase"] == "compensation"]
    # The payment call's outcome, whichever it was, is undone by its key, then the rest.
    assert compensations == ["approve_payment", "deduct_balance", "start_order_payment"]
    assert "complete_order_payment" not in {
        s["step"] for s in saga["steps"] if s["status"] == "SUCCEEDED"
    }  # the pivot never ran
    assert api.balance(user_id) == 10_000
    assert api.order_status(order_id) != "PAID"
    assert_invariants([saga_id], [user_id])
    assert [(a["action"], a["result"]) for a in _actions_on(api, saga_id)] == [
        ("cancel", "accepted")
    ]


def test_a_cancel_past_the_pivot_is_a_409_and_changes_nothing(api: Api):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 2_000)
    api.fault("order", "complete_payment", "hold")  # the pivot's call is in flight
    with ThreadPoolExecutor(1) as pool:
        pool.submit(api.start_payment, order_id, f"pivot-{order_id}")
        wait_for(lambda: held(api, "order", "complete_payment") == 1, what="the pivot held")
        saga_id = _newest_payment(api, order_id)
        assert saga_id is not None

        at_pivot = _cancel(api, saga_id, "too late")
        _release(api, "order", "complete_payment")

    assert at_pivot.status_code == 409
    assert at_pivot.json()["error"]["code"] == "saga_not_cancellable"
    wait_for(lambda: api.saga(saga_id)["status"] == "COMPLETED", what="the saga to complete")
    final = _cancel(api, saga_id, "far too late")
    assert final.status_code == 409
    saga = api.saga(saga_id)
    assert (saga["status"], saga["error"]) == ("COMPLETED", None)
    assert api.balance(user_id) == 8_000
    assert [(a["action"], a["result"]) for a in _actions_on(api, saga_id)] == [
        ("cancel", "saga_not_cancellable"),
        ("cancel", "saga_not_cancellable"),
    ]


def test_a_stuck_saga_before_its_pivot_is_cancelled_into_its_compensation(api: Api):
    saga_id = _stuck_payment(api)  # stuck compensating step 2: its charge-back failed
    api.clear_faults()

    assert _cancel(api, saga_id, "give up on it").status_code == 202

    saga = wait_for(
        lambda: (s := api.saga(saga_id))["status"] == "COMPENSATED" and s, what="compensated"
    )
    assert saga["attention"] is None
    assert saga["error"]["code"] == "cancelled"
    assert saga["error"]["cause"]["code"] == "injected_failure"  # why it first went back


@pytest.mark.parametrize(
    ("body", "status"),
    [({}, 422), ({"reason": ""}, 422), ({"reason": "x" * 501}, 422), ({"why": "x"}, 422)],
    ids=["no reason", "an empty reason", "too long", "an unknown field"],
)
def test_a_cancel_it_cannot_read_is_a_422_and_a_viewer_s_a_403(api: Api, body, status):
    saga_id = api.pay(api.create_order(api.create_user(5_000), 1_000))["saga_id"]
    answer = api.http.post(
        api.url("orchestrator", f"/admin/sagas/{saga_id}/cancel"), json=body, headers=ADMIN_AUTH
    )
    assert answer.status_code == status
    assert _cancel(api, saga_id, "viewer", auth=VIEWER_AUTH).status_code == 403
    assert _actions_on(api, saga_id) == []


def test_the_admin_page_cancels_with_a_reason(api: Api):
    saga_id = _stuck_payment(api)
    api.clear_faults()
    page = api.url("orchestrator", f"/admin/ui/sagas/{saga_id}")
    admin, viewer = {"admin_token": "dev-admin-token"}, {"admin_token": "dev-viewer-token"}

    assert 'id="cancel"' in httpx.get(page, cookies=admin).text
    assert 'id="cancel"' not in httpx.get(page, cookies=viewer).text
    no_reason = httpx.post(f"{page}/cancel", cookies=admin, data={"reason": " "})
    assert no_reason.status_code == 422
    done = httpx.post(f"{page}/cancel", cookies=admin, data={"reason": "from the page"})
    assert done.status_code == 303

    wait_for(lambda: api.saga(saga_id)["status"] == "COMPENSATED", what="compensated")
    assert 'id="cancel"' not in httpx.get(page, cookies=admin).text  # final: nothing to cancel
    assert [(a["action"], a["reason"]) for a in _actions_on(api, saga_id)] == [
        ("cancel", "from the page")
    ]
