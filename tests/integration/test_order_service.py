"""The order service in process, against its real PostgreSQL test database.

Every test makes its own orders and keys: the tables are shared and never assumed empty.
"""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from common.fields import INT64_MAX
from order_service.app import create_app
from order_service.models import IdempotencyRecord, Order
from tests.integration.support import SERVICE, assert_error, new_key, service_client

pytestmark = pytest.mark.usefixtures("databases")

UNKNOWN_ORDER = INT64_MAX
ITEMS = [
    {"product_id": 11, "quantity": 2, "unit_price": 1_500},
    {"product_id": 12, "quantity": 1, "unit_price": 7_000},
    {"product_id": 11, "quantity": 3, "unit_price": 250},
]
ITEMS_AMOUNT = 2 * 1_500 + 1 * 7_000 + 3 * 250


client = service_client(create_app)


def new_user_id() -> int:
    # The order service does not know users; a random id keeps this test's orders apart.
    return secrets.randbelow(2**62) + 1


def create_order(client: TestClient, items: list[dict[str, int]] | None = None) -> dict[str, Any]:
    response = client.post("/orders", json={"user_id": new_user_id(), "items": items or ITEMS})
    assert response.status_code == 201, response.text
    return response.json()


def status_of(client: TestClient, order_id: int) -> str:
    response = client.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    return response.json()["status"]


def step(
    client: TestClient,
    order_id: int,
    action: str,
    key: str | None,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    headers = dict(SERVICE if headers is None else headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/orders/{order_id}/{action}", json=body, headers=headers)


def start(client: TestClient, order_id: int, key: str, **kw: Any) -> httpx.Response:
    return step(client, order_id, "payment-start", key, **kw)


def complete(client: TestClient, order_id: int, key: str, **kw: Any) -> httpx.Response:
    return step(client, order_id, "payment-complete", key, **kw)


def release(
    client: TestClient, order_id: int, start_key: str, key: str, **kw: Any
) -> httpx.Response:
    return step(client, order_id, "payment-release", key, {"start_key": start_key}, **kw)


def orders_of(db: sessionmaker[Session], user_id: int) -> int:
    with db() as session:
        return session.scalar(
            select(func.count()).select_from(Order).where(Order.user_id == user_id)
        )


def order_in(client: TestClient, status: str) -> dict[str, Any]:
    order = create_order(client)
    if status in ("PAYMENT_IN_PROGRESS", "PAID"):
        assert start(client, order["id"], new_key()).status_code == 200
    if status == "PAID":
        assert complete(client, order["id"], new_key()).status_code == 200
    if status == "CANCELLED":
        assert client.post(f"/orders/{order['id']}/cancel").status_code == 200
    assert status_of(client, order["id"]) == status
    return order


# --- create and read ----------------------------------------------------------------------------


def test_creates_pending_order_with_amount_summed_from_its_items(client: TestClient) -> None:
    user_id = new_user_id()
    response = client.post("/orders", json={"user_id": user_id, "items": ITEMS})
    assert response.status_code == 201
    order = response.json()
    assert order == {
        "id": order["id"],
        "user_id": user_id,
        "amount": ITEMS_AMOUNT,
        "status": "PENDING",
        "items": ITEMS,
    }
    assert client.get(f"/orders/{order['id']}").json() == order


def test_accepts_an_amount_of_exactly_the_largest_storable_value(client: TestClient) -> None:
    order = create_order(client, [{"product_id": 1, "quantity": 1, "unit_price": INT64_MAX}])
    assert order["amount"] == INT64_MAX


def test_refuses_an_amount_past_the_largest_storable_value(client: TestClient, db) -> None:
    user_id = new_user_id()
    items = [
        {"product_id": 1, "quantity": 2**62, "unit_price": 1},
        {"product_id": 2, "quantity": 2**62, "unit_price": 1},
    ]
    response = client.post("/orders", json={"user_id": user_id, "items": items})
    assert_error(response, 422, "amount_too_large")
    assert orders_of(db, user_id) == 0


def test_unknown_order_is_not_found(client: TestClient) -> None:
    assert_error(client.get(f"/orders/{UNKNOWN_ORDER}"), 404, "order_not_found")


@pytest.mark.parametrize("order_id", ["abc", "0", "-3", "2.5", "2.0", "+2", "1e3", str(2**63)])
def test_refuses_malformed_order_id(client: TestClient, order_id: str) -> None:
    assert_error(client.get(f"/orders/{order_id}"), 422, "validation_error")


GOOD_ITEM = {"product_id": 1, "quantity": 2, "unit_price": 100}
BAD_ITEMS = {
    "quantity-numeric-string": {**GOOD_ITEM, "quantity": "2"},
    "quantity-float-integral": {**GOOD_ITEM, "quantity": 2.0},
    "quantity-fraction": {**GOOD_ITEM, "quantity": 1.5},
    "quantity-zero": {**GOOD_ITEM, "quantity": 0},
    "quantity-negative": {**GOOD_ITEM, "quantity": -2},
    "quantity-int64-overflow": {**GOOD_ITEM, "quantity": 2**63},
    "quantity-missing": {"product_id": 1, "unit_price": 100},
    "price-numeric-string": {**GOOD_ITEM, "unit_price": "100"},
    "price-float-integral": {**GOOD_ITEM, "unit_price": 5.0},
    "price-zero": {**GOOD_ITEM, "unit_price": 0},
    "price-negative": {**GOOD_ITEM, "unit_price": -100},
    "price-int64-overflow": {**GOOD_ITEM, "unit_price": 2**63},
    "price-missing": {"product_id": 1, "quantity": 2},
    "product-numeric-string": {**GOOD_ITEM, "product_id": "1"},
    "product-zero": {**GOOD_ITEM, "product_id": 0},
    "product-missing": {"quantity": 2, "unit_price": 100},
    "item-not-object": 5,
}


@pytest.mark.parametrize("item", list(BAD_ITEMS.values()), ids=list(BAD_ITEMS))
def test_refuses_invalid_item_and_creates_nothing(client: TestClient, db, item: Any) -> None:
    user_id = new_user_id()
    response = client.post("/orders", json={"user_id": user_id, "items": [GOOD_ITEM, item]})
    assert_error(response, 422, "validation_error")
    assert orders_of(db, user_id) == 0


@pytest.mark.parametrize(
    "user_id",
    ["5", 5.0, 0, -5, 2**63, None],
    ids=["numeric-string", "float-integral", "zero", "negative", "int64-overflow", "null"],
)
def test_refuses_invalid_user_id(client: TestClient, user_id: Any) -> None:
    response = client.post("/orders", json={"user_id": user_id, "items": [GOOD_ITEM]})
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "body",
    [{"items": []}, {}, {"items": None}, {"items": GOOD_ITEM}],
    ids=["empty-items", "missing-items", "null-items", "items-not-list"],
)
def test_refuses_an_order_without_items(client: TestClient, db, body: dict[str, Any]) -> None:
    user_id = new_user_id()
    assert_error(client.post("/orders", json={"user_id": user_id, **body}), 422, "validation_error")
    assert orders_of(db, user_id) == 0


def test_refuses_an_order_without_user(client: TestClient) -> None:
    assert_error(client.post("/orders", json={"items": [GOOD_ITEM]}), 422, "validation_error")


@pytest.mark.parametrize("content", [b'{"user_id": 1, "items": [', b"", b"[]", b'"order"'])
def test_refuses_malformed_json(client: TestClient, content: bytes) -> None:
    response = client.post("/orders", content=content, headers={"content-type": "application/json"})
    assert_error(response, 422, "validation_error")


# --- cancel -------------------------------------------------------------------------------------


def test_cancels_a_pending_order(client: TestClient) -> None:
    order = create_order(client)
    response = client.post(f"/orders/{order['id']}/cancel")
    assert response.status_code == 200
    assert response.json() == {**order, "status": "CANCELLED"}
    assert status_of(client, order["id"]) == "CANCELLED"


@pytest.mark.parametrize("status", ["PAYMENT_IN_PROGRESS", "PAID", "CANCELLED"])
def test_refuses_to_cancel_an_order_that_is_not_pending(client: TestClient, status: str) -> None:
    order = order_in(client, status)
    assert_error(client.post(f"/orders/{order['id']}/cancel"), 409, "order_not_cancellable")
    assert status_of(client, order["id"]) == status


def test_refuses_to_cancel_an_unknown_order(client: TestClient) -> None:
    assert_error(client.post(f"/orders/{UNKNOWN_ORDER}/cancel"), 404, "order_not_found")


# --- payment-start (saga action: take the semantic lock) ----------------------------------------


def test_payment_start_moves_a_pending_order_into_payment(client: TestClient) -> None:
    order = create_order(client)
    response = start(client, order["id"], new_key())
    assert response.status_code == 200
    assert response.json() == {**order, "status": "PAYMENT_IN_PROGRESS"}
    assert "Idempotent-Replayed" not in response.headers
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"


def test_replays_payment_start_with_the_same_key(client: TestClient) -> None:
    order = create_order(client)
    key = new_key()
    first = start(client, order["id"], key)
    again = start(client, order["id"], key)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"


@pytest.mark.parametrize("status", ["PAYMENT_IN_PROGRESS", "PAID", "CANCELLED"])
def test_refuses_payment_start_unless_pending(client: TestClient, status: str) -> None:
    order = order_in(client, status)
    assert_error(start(client, order["id"], new_key()), 409, "order_not_payable")
    assert status_of(client, order["id"]) == status


def test_judges_a_refused_payment_start_afresh_when_retried_with_its_key(
    client: TestClient,
) -> None:
    order = create_order(client)
    holder, key = new_key(), new_key()
    start(client, order["id"], holder)
    assert_error(start(client, order["id"], key), 409, "order_not_payable")
    assert release(client, order["id"], "unused-start-key", new_key()).status_code == 200
    # Releasing under an unknown start key changes nothing: the order is still in payment.
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"
    release(client, order["id"], holder, new_key())
    again = start(client, order["id"], key)  # the refusal was not stored: judged afresh
    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"


def test_refuses_payment_start_key_reused_for_another_order(client: TestClient) -> None:
    first, second = create_order(client), create_order(client)
    key = new_key()
    start(client, first["id"], key)
    assert_error(start(client, second["id"], key), 422, "idempotency_key_reused")
    assert status_of(client, second["id"]) == "PENDING"


def test_refuses_payment_start_of_an_unknown_order(client: TestClient) -> None:
    assert_error(start(client, UNKNOWN_ORDER, new_key()), 404, "order_not_found")


# --- payment-complete (the pivot) ---------------------------------------------------------------


def test_payment_complete_marks_an_order_in_payment_paid(client: TestClient) -> None:
    order = order_in(client, "PAYMENT_IN_PROGRESS")
    key = new_key()
    response = complete(client, order["id"], key)
    assert response.status_code == 200
    assert response.json() == {**order, "status": "PAID"}
    again = complete(client, order["id"], key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == response.json()
    assert status_of(client, order["id"]) == "PAID"


@pytest.mark.parametrize("status", ["PENDING", "PAID", "CANCELLED"])
def test_refuses_payment_complete_unless_in_payment(client: TestClient, status: str) -> None:
    order = order_in(client, status)
    assert_error(complete(client, order["id"], new_key()), 409, "order_not_in_payment")
    assert status_of(client, order["id"]) == status


def test_settling_an_applied_completion_returns_its_record(client: TestClient) -> None:
    order = order_in(client, "PAYMENT_IN_PROGRESS")
    key = new_key()
    completed = complete(client, order["id"], key)
    settled = client.post("/_idempotency/settle", json={"key": key}, headers=SERVICE)
    assert settled.status_code == 200
    assert settled.json() == {
        "key": key,
        "outcome": "APPLIED",
        "status_code": 200,
        "response": completed.json(),
    }
    assert status_of(client, order["id"]) == "PAID"


def test_settling_a_completion_that_never_arrived_refuses_it_later(client: TestClient) -> None:
    order = order_in(client, "PAYMENT_IN_PROGRESS")
    key = new_key()
    settled = client.post("/_idempotency/settle", json={"key": key}, headers=SERVICE)
    assert settled.json() == {
        "key": key,
        "outcome": "TOMBSTONE",
        "status_code": None,
        "response": None,
    }
    assert_error(complete(client, order["id"], key), 409, "action_compensated")
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"


def test_refuses_settle_without_the_service_token(client: TestClient, db) -> None:
    key = new_key()
    assert_error(client.post("/_idempotency/settle", json={"key": key}), 401, "unauthorized")
    with db() as session:
        assert session.get(IdempotencyRecord, key) is None


# --- payment-release (compensation of payment-start) --------------------------------------------


def test_payment_release_returns_the_order_to_pending_once(client: TestClient) -> None:
    order = create_order(client)
    start_key, key = new_key(), new_key()
    start(client, order["id"], start_key)
    first = release(client, order["id"], start_key, key)
    assert first.status_code == 200
    assert first.json() == {"order": {**order, "status": "PENDING"}, "released": True}
    again = release(client, order["id"], start_key, key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert status_of(client, order["id"]) == "PENDING"


def test_a_released_order_can_be_paid_by_a_new_saga(client: TestClient) -> None:
    order = create_order(client)
    start_key = new_key()
    start(client, order["id"], start_key)
    release(client, order["id"], start_key, new_key())
    assert start(client, order["id"], new_key()).status_code == 200
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"


def test_payment_release_before_its_start_leaves_a_tombstone(client: TestClient) -> None:
    order = create_order(client)
    start_key = new_key()
    early = release(client, order["id"], start_key, new_key())
    assert early.status_code == 200
    assert early.json() == {"order": order, "released": False}

    late = start(client, order["id"], start_key)
    assert_error(late, 409, "action_compensated")
    assert status_of(client, order["id"]) == "PENDING"


def test_payment_release_of_a_refused_start_changes_nothing(client: TestClient) -> None:
    order = order_in(client, "CANCELLED")
    start_key = new_key()
    assert_error(start(client, order["id"], start_key), 409, "order_not_payable")
    response = release(client, order["id"], start_key, new_key())
    assert response.status_code == 200
    assert response.json()["released"] is False
    assert status_of(client, order["id"]) == "CANCELLED"


def test_a_release_naming_another_orders_start_or_another_step_is_refused(
    client: TestClient,
) -> None:
    """A release undoes only the start of its own order: naming another order's start, or a
    key of another step, is a 422 that changes nothing, never a release of the wrong order."""
    mine, theirs = create_order(client), create_order(client)
    my_start, their_start = new_key(), new_key()
    start(client, mine["id"], my_start)
    start(client, theirs["id"], their_start)
    completion = new_key()
    complete(client, theirs["id"], completion)

    assert_error(release(client, mine["id"], their_start, new_key()), 422, "not_that_action")
    assert_error(release(client, mine["id"], completion, new_key()), 422, "not_that_action")
    assert status_of(client, mine["id"]) == "PAYMENT_IN_PROGRESS"
    assert status_of(client, theirs["id"]) == "PAID"
    # My own start is still there to undo.
    assert release(client, mine["id"], my_start, new_key()).json()["released"] is True


def test_payment_release_leaves_a_paid_order_paid(client: TestClient) -> None:
    order = create_order(client)
    start_key = new_key()
    start(client, order["id"], start_key)
    complete(client, order["id"], new_key())
    assert_error(release(client, order["id"], start_key, new_key()), 409, "order_not_in_payment")
    assert status_of(client, order["id"]) == "PAID"


@pytest.mark.parametrize(
    "body", [{}, {"start_key": ""}, {"start_key": 5}], ids=["missing", "empty", "not-string"]
)
def test_refuses_invalid_payment_release(client: TestClient, body: dict[str, Any]) -> None:
    order = order_in(client, "PAYMENT_IN_PROGRESS")
    response = step(client, order["id"], "payment-release", new_key(), body)
    assert_error(response, 422, "validation_error")
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"


# --- the step endpoints' guards -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic dev-service-token"}],
    ids=["no-token", "wrong-token", "not-bearer"],
)
def test_refuses_step_calls_without_the_service_token(
    client: TestClient, db, headers: dict[str, str]
) -> None:
    pending, in_payment = create_order(client), order_in(client, "PAYMENT_IN_PROGRESS")
    key = new_key()
    assert_error(start(client, pending["id"], key, headers=headers), 401, "unauthorized")
    assert_error(complete(client, in_payment["id"], key, headers=headers), 401, "unauthorized")
    assert_error(
        release(client, in_payment["id"], key, new_key(), headers=headers), 401, "unauthorized"
    )
    assert status_of(client, pending["id"]) == "PENDING"
    assert status_of(client, in_payment["id"]) == "PAYMENT_IN_PROGRESS"
    with db() as session:
        assert session.get(IdempotencyRecord, key) is None


@pytest.mark.parametrize("action", ["payment-start", "payment-complete", "payment-release"])
def test_refuses_step_calls_without_idempotency_key(client: TestClient, action: str) -> None:
    status = "PENDING" if action == "payment-start" else "PAYMENT_IN_PROGRESS"
    order = order_in(client, status)
    body = {"start_key": new_key()} if action == "payment-release" else None
    assert_error(step(client, order["id"], action, None, body), 422, "validation_error")
    assert status_of(client, order["id"]) == status


@pytest.mark.parametrize("key", ["", "k" * 201], ids=["empty", "too-long"])
def test_refuses_an_invalid_idempotency_key(client: TestClient, key: str) -> None:
    order = create_order(client)
    assert_error(start(client, order["id"], key), 422, "validation_error")
    assert status_of(client, order["id"]) == "PENDING"


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_payment_starts_let_exactly_one_saga_lock_the_order(client: TestClient) -> None:
    order, attempts = create_order(client), 10
    start_together = threading.Barrier(attempts)

    def attempt(_: int) -> httpx.Response:
        start_together.wait(timeout=30)
        return start(client, order["id"], new_key())

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        responses = list(pool.map(attempt, range(attempts)))

    assert sorted(r.status_code for r in responses) == [200] + [409] * (attempts - 1)
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "order_not_payable"
    }
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"


def test_cancel_racing_payment_start_lets_only_one_of_them_win(client: TestClient) -> None:
    order = create_order(client)
    together = threading.Barrier(2)

    def run(call):
        together.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=2) as pool:
        started = pool.submit(run, lambda: start(client, order["id"], new_key()))
        cancelled = pool.submit(run, lambda: client.post(f"/orders/{order['id']}/cancel"))
        outcomes = {started.result().status_code, cancelled.result().status_code}

    assert outcomes == {200, 409}
    expected = "PAYMENT_IN_PROGRESS" if started.result().status_code == 200 else "CANCELLED"
    assert status_of(client, order["id"]) == expected


# --- input the database cannot store ------------------------------------------------------------


def test_refuses_a_start_key_with_a_nul_character(client: TestClient) -> None:
    # PostgreSQL text cannot hold NUL: refused as input, never a 500 from the database.
    order = order_in(client, "PAYMENT_IN_PROGRESS")
    response = release(client, order["id"], "a\u0000b", new_key())
    assert_error(response, 422, "validation_error")
    assert status_of(client, order["id"]) == "PAYMENT_IN_PROGRESS"


# --- health and metrics -------------------------------------------------------------------------


def test_reports_healthy_when_its_database_answers(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_serves_request_latency_metrics(client: TestClient) -> None:
    client.get(f"/orders/{UNKNOWN_ORDER}")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert 'route="/orders/{order_id}"' in response.text


def test_a_release_of_a_start_that_never_ran_succeeds_even_for_an_unknown_order(
    client: TestClient,
) -> None:
    start_key = new_key()
    released = release(client, UNKNOWN_ORDER, start_key, new_key())
    assert released.status_code == 200
    assert released.json() == {"order": None, "released": False}
    assert_error(start(client, UNKNOWN_ORDER, start_key), 409, "action_compensated")


# --- refunds (the refund saga's steps) -----------------------------------------------------------


def test_a_refund_moves_a_paid_order_to_refunded_through_its_lock(client: TestClient) -> None:
    order = order_in(client, "PAID")
    started = step(client, order["id"], "refund-start", new_key())
    assert started.status_code == 200, started.text
    assert status_of(client, order["id"]) == "REFUND_IN_PROGRESS"
    # Meanwhile the order is locked: no payment, no second refund.
    assert_error(start(client, order["id"], new_key()), 409, "order_not_payable")
    assert_error(step(client, order["id"], "refund-start", new_key()), 409, "order_not_refundable")

    done = step(client, order["id"], "refund-complete", new_key())

    assert done.status_code == 200, done.text
    assert done.json()["status"] == status_of(client, order["id"]) == "REFUNDED"


@pytest.mark.parametrize("status", ["PENDING", "PAYMENT_IN_PROGRESS", "CANCELLED"])
def test_refuses_a_refund_unless_paid(client: TestClient, status: str) -> None:
    order = order_in(client, status)
    assert_error(step(client, order["id"], "refund-start", new_key()), 409, "order_not_refundable")
    assert status_of(client, order["id"]) == status


def test_a_refund_release_gives_the_order_back_paid_once(client: TestClient) -> None:
    order = order_in(client, "PAID")
    start_key = new_key()
    step(client, order["id"], "refund-start", start_key)

    released = step(client, order["id"], "refund-release", new_key(), {"start_key": start_key})
    again = step(client, order["id"], "refund-release", new_key(), {"start_key": start_key})

    assert released.json()["released"] is True
    assert again.json()["released"] is False  # undone at most once, whoever asks
    assert status_of(client, order["id"]) == "PAID"


def test_a_refund_release_before_its_start_leaves_a_tombstone(client: TestClient) -> None:
    order = order_in(client, "PAID")
    start_key = new_key()

    released = step(client, order["id"], "refund-release", new_key(), {"start_key": start_key})
    late = step(client, order["id"], "refund-start", start_key)

    assert released.json()["released"] is False
    assert_error(late, 409, "action_compensated")
    assert status_of(client, order["id"]) == "PAID"
