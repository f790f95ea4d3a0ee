"""The orchestrator's public contract: idempotent starts, refusals, bad input, authentication."""

import httpx
import pytest

from tests.e2e.client import ADMIN_AUTH, Api, ledger
from tools.stack import Stack, free_port, orchestrator_process

INT64_MAX = 2**63 - 1


def test_the_same_key_returns_its_saga_even_after_the_order_was_paid(api: Api):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)

    first = api.start_payment(order_id, key=f"k-{order_id}", wait=30)
    again = api.start_payment(order_id, key=f"k-{order_id}")

    assert first.status_code == 200
    assert again.status_code == 202
    assert again.json() == {"saga_id": first.json()["saga_id"], "status": "COMPLETED"}
    assert [delta for delta, _, _ in ledger(user_id)] == [10_000, -7_000]


def test_refuses_a_key_reused_for_another_order(api: Api):
    user_id = api.create_user(10_000)
    first, second = api.create_order(user_id, 100), api.create_order(user_id, 200)
    api.start_payment(first, key=f"reuse-{first}", wait=30)
    before = api.saga_count()

    reused = api.start_payment(second, key=f"reuse-{first}")

    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert api.saga_count() == before
    assert api.order_status(second) == "PENDING"


def test_refuses_unknown_paid_and_cancelled_orders_without_creating_a_saga(api: Api):
    user_id = api.create_user(10_000)
    paid = api.create_order(user_id, 100)
    api.pay(paid)
    cancelled = api.create_order(user_id, 100)
    api.http.post(api.url("order", f"/orders/{cancelled}/cancel"))
    before = api.saga_count()

    unknown = api.start_payment(INT64_MAX)
    again = api.start_payment(paid)
    dead = api.start_payment(cancelled, key=f"dead-{cancelled}")

    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "order_not_found")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "order_not_payable")
    assert (dead.status_code, dead.json()["error"]["code"]) == (409, "order_not_payable")
    assert api.saga_count() == before
    assert api.balance(user_id) == 9_900


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "1"},
        {"order_id": 1.0},
        {"order_id": 1.5},
        {"order_id": 0},
        {"order_id": -3},
        {"order_id": INT64_MAX + 1},
        {"order_id": None},
        {},
        [],
        "order",
    ],
    ids=repr,
)
@pytest.mark.parametrize("path", ["/payments", "/sagas/payment"])
def test_refuses_malformed_start_requests_with_422(api: Api, body, path: str):
    before = api.saga_count()

    r = api.http.post(api.url("orchestrator", path), json=body)

    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    assert api.saga_count() == before


def test_refuses_broken_json_and_bad_wait_values(api: Api):
    broken = api.http.post(
        api.url("orchestrator", "/payments"),
        content=b'{"order_id": ',
        headers={"content-type": "application/json"},
    )
    bad_wait = api.http.post(
        api.url("orchestrator", "/payments"), json={"order_id": 1}, params={"wait": "-1"}
    )
    assert (broken.status_code, broken.json()["error"]["code"]) == (422, "validation_error")
    assert (bad_wait.status_code, bad_wait.json()["error"]["code"]) == (422, "validation_error")


def test_a_start_of_an_unknown_saga_type_is_a_404_and_records_nothing(api: Api):
    before = api.saga_count()

    r = api.http.post(api.url("orchestrator", "/sagas/no_such_saga"), json={"order_id": 1})

    assert (r.status_code, r.json()["error"]["code"]) == (404, "saga_not_found")
    assert api.saga_count() == before


def test_a_saga_is_read_under_its_own_type_only(api: Api):
    saga = api.pay(api.create_order(api.create_user(1_000), 100))

    mine = api.http.get(api.url("orchestrator", f"/sagas/payment/{saga['saga_id']}"))
    other = api.http.get(api.url("orchestrator", f"/sagas/refund/{saga['saga_id']}"))

    assert mine.status_code == 200
    assert mine.json()["keys"] == {"order_id": saga["order_id"], "user_id": saga["user_id"]}
    assert (other.status_code, other.json()["error"]["code"]) == (404, "saga_not_found")


@pytest.mark.parametrize("saga_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "1"])
def test_answers_404_for_an_unknown_saga(api: Api, saga_id: str):
    r = api.http.get(api.url("orchestrator", f"/payments/{saga_id}"))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "saga_not_found")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}])
def test_admin_endpoints_need_the_admin_token(api: Api, headers):
    user_id = api.create_user(100)
    saga_id = api.pay(api.create_order(user_id, 100))["saga_id"]

    for method, path in [
        ("GET", "/admin/sagas"),
        ("GET", f"/admin/sagas/{saga_id}"),
        ("POST", f"/admin/sagas/{saga_id}/retry"),
        ("GET", "/admin/stats"),
    ]:
        r = api.http.request(method, api.url("orchestrator", path), headers=headers)
        assert r.status_code == 401, path
        assert r.json() == {
            "error": {"code": "unauthorized", "message": "missing or invalid bearer token"}
        }
    assert api.saga(saga_id)["status"] == "COMPLETED"


def test_admin_lists_sagas_newest_first_a_page_at_a_time(api: Api):
    user_id = api.create_user(1_000)
    ids = [api.pay(api.create_order(user_id, 100))["saga_id"] for _ in range(3)]

    pages, cursor = [], None
    for _ in range(3):
        params = {"limit": 1, "type": "payment", **({"cursor": cursor} if cursor else {})}
        page = api.http.get(
            api.url("orchestrator", "/admin/sagas"), params=params, headers=ADMIN_AUTH
        ).json()
        pages.append(page["items"][0]["saga_id"])
        cursor = page["next_cursor"]

    assert pages == list(reversed(ids))
    detail = api.http.get(
        api.url("orchestrator", f"/admin/sagas/{ids[0]}"), headers=ADMIN_AUTH
    ).json()
    assert [s["step"] for s in detail["steps"]] == [
        "start_order_payment",
        "deduct_balance",
        "approve_payment",
        "complete_order_payment",
    ]
    bad = api.http.get(
        api.url("orchestrator", "/admin/sagas"), params={"cursor": "???"}, headers=ADMIN_AUTH
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_cursor")


def test_a_keyed_start_for_an_order_another_request_is_paying_is_refused(api: Api):
    """Its key would otherwise name no saga, or a different one later."""
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    api.fault("user", "deduct", "delay", delay_ms=700)  # keep the first saga running a while
    first = api.start_payment(order_id)

    keyed = api.start_payment(order_id, key=f"late-{order_id}")

    assert first.status_code == 202
    assert (keyed.status_code, keyed.json()["error"]["code"]) == (409, "payment_in_progress")
    assert first.json()["saga_id"] in keyed.json()["error"]["message"]
    assert api.start_payment(order_id, wait=30).json()["status"] == "COMPLETED"
    assert [delta for delta, _, _ in ledger(user_id)] == [10_000, -7_000]


def test_a_start_whose_first_step_cannot_reach_its_service_is_a_503_without_a_saga(
    api: Api, stack: Stack, tmp_path
):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the call never leaves
    orphan = orchestrator_process(
        stack, tmp_path, "orchestrator-no-orders", {"ORDER_SERVICE_URL": nowhere}
    )
    orphan.start()
    try:
        orphan.wait_healthy()
        order_id = api.create_order(api.create_user(10_000), 100)
        before = api.saga_count()

        answer = httpx.post(f"{orphan.url}/payments", json={"order_id": order_id}, timeout=30)

        assert answer.status_code == 503
        assert answer.headers["Retry-After"]
        assert answer.json()["error"]["code"] == "dependency_unavailable"
        assert api.saga_count() == before
        assert api.order_status(order_id) == "PENDING"
    finally:
        orphan.stop()
