"""The payment service in process, against its real PostgreSQL test database.

Every test uses its own order ids and keys: the tables are shared and never assumed empty.
"""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from payment_service.app import create_app
from payment_service.models import IdempotencyRecord
from tests.integration.support import SERVICE, assert_error, new_key, service_client

pytestmark = pytest.mark.usefixtures("databases")


client = service_client(create_app)


def new_id() -> int:
    # The payment service knows neither orders nor users; random ids keep tests apart.
    return secrets.randbelow(2**62) + 1


def approve(
    client: TestClient,
    body: dict[str, Any],
    key: str | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    headers = dict(SERVICE if headers is None else headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/payments", json=body, headers=headers)


def cancel(
    client: TestClient, approval_key: str, key: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        "/payments/cancellations",
        json={"approval_key": approval_key},
        headers={**(SERVICE if headers is None else headers), "Idempotency-Key": key},
    )


def payments_of(client: TestClient, order_id: int) -> list[dict[str, Any]]:
    response = client.get("/payments", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    return response.json()


def a_payment(amount: int = 9_000) -> dict[str, int]:
    return {"order_id": new_id(), "user_id": new_id(), "amount": amount}


# --- approve and list ---------------------------------------------------------------------------


def test_approves_a_payment_and_lists_it_by_order(client: TestClient) -> None:
    body = a_payment()
    response = approve(client, body, new_key())
    assert response.status_code == 201
    payment = response.json()
    assert payment == {"id": payment["id"], **body, "reservation_id": None, "status": "APPROVED"}
    assert "Idempotent-Replayed" not in response.headers
    assert payments_of(client, body["order_id"]) == [payment]


def test_lists_nothing_for_an_order_without_payments(client: TestClient) -> None:
    assert payments_of(client, new_id()) == []


def test_lists_every_payment_without_a_filter_a_page_at_a_time(client: TestClient) -> None:
    made = [approve(client, a_payment(), new_key()).json() for _ in range(3)]
    first = client.get("/payments", params={"after": made[0]["id"] - 1, "limit": 2})
    assert first.status_code == 200
    assert first.json() == made[:2]
    rest = client.get("/payments", params={"after": first.json()[-1]["id"], "limit": 2})
    assert rest.json()[0] == made[2]
    assert_error(client.get("/payments", params={"limit": 1001}), 422, "validation_error")


@pytest.mark.parametrize("order_id", ["abc", "0", "-1", "1.5", str(2**63)])
def test_refuses_a_malformed_order_filter(client: TestClient, order_id: str) -> None:
    response = client.get("/payments", params={"order_id": order_id})
    assert_error(response, 422, "validation_error")


def test_replays_an_approval_with_the_same_key(client: TestClient) -> None:
    body, key = a_payment(), new_key()
    first = approve(client, body, key)
    again = approve(client, body, key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(payments_of(client, body["order_id"])) == 1


def test_refuses_an_approval_key_reused_for_another_amount(client: TestClient) -> None:
    body, key = a_payment(), new_key()
    first = approve(client, body, key).json()
    assert_error(approve(client, {**body, "amount": 9_001}, key), 422, "idempotency_key_reused")
    assert payments_of(client, body["order_id"]) == [first]


def test_refuses_a_second_approval_for_the_same_order(client: TestClient) -> None:
    body = a_payment()
    first = approve(client, body, new_key()).json()
    second = approve(client, {**body, "amount": 1}, new_key())
    assert_error(second, 409, "payment_already_approved")
    assert payments_of(client, body["order_id"]) == [first]


def test_judges_a_refused_approval_afresh_when_retried_with_its_key(client: TestClient) -> None:
    body = a_payment()
    first_key, second_key = new_key(), new_key()
    approve(client, body, first_key)
    refused = approve(client, body, second_key)
    assert_error(refused, 409, "payment_already_approved")
    cancel(client, first_key, new_key())  # the order has no approved payment any more
    again = approve(client, body, second_key)
    assert again.status_code == 201
    assert [p["status"] for p in payments_of(client, body["order_id"])] == [
        "CANCELLED",
        "APPROVED",
    ]


BAD_APPROVALS = {
    "amount-numeric-string": {"amount": "9000"},
    "amount-float-integral": {"amount": 9000.0},
    "amount-fraction": {"amount": 0.5},
    "amount-zero": {"amount": 0},
    "amount-negative": {"amount": -9000},
    "amount-int64-overflow": {"amount": 2**63},
    "amount-null": {"amount": None},
    "user-numeric-string": {"user_id": "7"},
    "user-zero": {"user_id": 0},
    "user-int64-overflow": {"user_id": 2**63},
}


@pytest.mark.parametrize("change", list(BAD_APPROVALS.values()), ids=list(BAD_APPROVALS))
def test_refuses_an_invalid_approval_and_records_nothing(
    client: TestClient, db, change: dict[str, Any]
) -> None:
    body, key = a_payment(), new_key()
    assert_error(approve(client, {**body, **change}, key), 422, "validation_error")
    assert payments_of(client, body["order_id"]) == []
    with db() as session:
        assert session.get(IdempotencyRecord, key) is None


@pytest.mark.parametrize("field", ["order_id", "user_id", "amount"])
def test_refuses_an_approval_with_a_missing_field(client: TestClient, field: str) -> None:
    body = a_payment()
    incomplete = {k: v for k, v in body.items() if k != field}
    assert_error(approve(client, incomplete, new_key()), 422, "validation_error")
    assert payments_of(client, body["order_id"]) == []


def test_refuses_an_order_id_given_as_a_string(client: TestClient) -> None:
    body = a_payment()
    assert_error(
        approve(client, {**body, "order_id": str(body["order_id"])}, new_key()),
        422,
        "validation_error",
    )
    assert payments_of(client, body["order_id"]) == []


def test_refuses_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/payments",
        content=b'{"order_id": 1, "user_id": 2, "amount"',
        headers={**SERVICE, "Idempotency-Key": new_key(), "content-type": "application/json"},
    )
    assert_error(response, 422, "validation_error")


def test_refuses_an_approval_without_idempotency_key(client: TestClient) -> None:
    body = a_payment()
    assert_error(approve(client, body, None), 422, "validation_error")
    assert payments_of(client, body["order_id"]) == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "dev-service-token"}],
    ids=["no-token", "wrong-token", "not-bearer"],
)
def test_refuses_step_calls_without_the_service_token(
    client: TestClient, db, headers: dict[str, str]
) -> None:
    body, key = a_payment(), new_key()
    assert_error(approve(client, body, key, headers=headers), 401, "unauthorized")
    assert payments_of(client, body["order_id"]) == []

    approval_key = new_key()
    payment = approve(client, a_payment(), approval_key).json()
    assert_error(cancel(client, approval_key, new_key(), headers=headers), 401, "unauthorized")
    assert payments_of(client, payment["order_id"]) == [payment]
    with db() as session:
        assert session.get(IdempotencyRecord, key) is None


# --- cancellation (a refund, the compensation of an approval) -----------------------------------


def test_cancels_the_payment_its_approval_created_once(client: TestClient) -> None:
    body, approval_key, key = a_payment(), new_key(), new_key()
    payment = approve(client, body, approval_key).json()
    first = cancel(client, approval_key, key)
    assert first.status_code == 200
    assert first.json() == {"payment": {**payment, "status": "CANCELLED"}, "cancelled": True}
    again = cancel(client, approval_key, key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert payments_of(client, body["order_id"]) == [{**payment, "status": "CANCELLED"}]


def test_approves_an_order_again_after_its_payment_was_cancelled(client: TestClient) -> None:
    body, approval_key = a_payment(), new_key()
    approve(client, body, approval_key)
    cancel(client, approval_key, new_key())
    assert approve(client, body, new_key()).status_code == 201
    statuses = [p["status"] for p in payments_of(client, body["order_id"])]
    assert statuses == ["CANCELLED", "APPROVED"]


def test_cancellation_before_its_approval_leaves_a_tombstone(client: TestClient) -> None:
    body, approval_key = a_payment(), new_key()
    early = cancel(client, approval_key, new_key())
    assert early.status_code == 200
    assert early.json() == {"payment": None, "cancelled": False}

    late = approve(client, body, approval_key)
    assert_error(late, 409, "action_compensated")
    assert payments_of(client, body["order_id"]) == []


def test_cancellation_of_a_refused_approval_leaves_the_approved_payment(
    client: TestClient,
) -> None:
    body, refused_key = a_payment(), new_key()
    payment = approve(client, body, new_key()).json()
    assert_error(approve(client, body, refused_key), 409, "payment_already_approved")
    response = cancel(client, refused_key, new_key())
    assert response.status_code == 200
    assert response.json() == {"payment": None, "cancelled": False}
    assert payments_of(client, body["order_id"]) == [payment]


@pytest.mark.parametrize(
    "body", [{}, {"approval_key": ""}, {"approval_key": 5}], ids=["missing", "empty", "not-string"]
)
def test_refuses_an_invalid_cancellation(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post(
        "/payments/cancellations", json=body, headers={**SERVICE, "Idempotency-Key": new_key()}
    )
    assert_error(response, 422, "validation_error")


def test_refuses_a_cancellation_without_idempotency_key(client: TestClient) -> None:
    approval_key = new_key()
    payment = approve(client, a_payment(), approval_key).json()
    response = client.post(
        "/payments/cancellations", json={"approval_key": approval_key}, headers=SERVICE
    )
    assert_error(response, 422, "validation_error")
    assert payments_of(client, payment["order_id"]) == [payment]


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_approvals_for_one_order_approve_exactly_one(client: TestClient) -> None:
    body, attempts = a_payment(), 10
    together = threading.Barrier(attempts)

    def attempt(_: int) -> httpx.Response:
        together.wait(timeout=30)
        return approve(client, body, new_key())

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        responses = list(pool.map(attempt, range(attempts)))

    assert sorted(r.status_code for r in responses) == [201] + [409] * (attempts - 1)
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "payment_already_approved"
    }
    [winner] = [r.json() for r in responses if r.status_code == 201]
    assert payments_of(client, body["order_id"]) == [winner]


@pytest.mark.parametrize("round_", range(5))
def test_cancellation_racing_its_approval_leaves_no_approved_payment(
    client: TestClient, round_: int
) -> None:
    body, approval_key = a_payment(), new_key()
    together = threading.Barrier(2)

    def run(call):
        together.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=2) as pool:
        approval = pool.submit(run, lambda: approve(client, body, approval_key))
        cancellation = pool.submit(run, lambda: cancel(client, approval_key, new_key()))
        approved, cancelled = approval.result(), cancellation.result()

    assert cancelled.status_code == 200
    if cancelled.json()["cancelled"]:
        assert approved.status_code == 201
        assert [p["status"] for p in payments_of(client, body["order_id"])] == ["CANCELLED"]
    else:
        assert_error(approved, 409, "action_compensated")
        assert payments_of(client, body["order_id"]) == []


# --- input the database cannot store ------------------------------------------------------------


def test_refuses_an_approval_key_with_a_nul_character(client: TestClient, db) -> None:
    # PostgreSQL text cannot hold NUL: refused as input, never a 500 from the database.
    key = new_key()
    assert_error(cancel(client, "a\u0000b", key), 422, "validation_error")
    with db() as session:
        assert session.get(IdempotencyRecord, key) is None


# --- health and metrics -------------------------------------------------------------------------


def test_reports_healthy_when_its_database_answers(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_serves_request_latency_metrics(client: TestClient) -> None:
    client.get("/payments", params={"order_id": new_id()})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert 'route="/payments"' in response.text


# --- refunds (the refund saga's pivot) -----------------------------------------------------------


def refund(client: TestClient, approval_key: str, key: str) -> httpx.Response:
    return client.post(
        "/payments/refunds",
        json={"approval_key": approval_key},
        headers={**SERVICE, "Idempotency-Key": key},
    )


def test_a_refund_cancels_the_approved_payment_once_and_replays(client: TestClient) -> None:
    body, approval_key = a_payment(), new_key()
    approve(client, body, approval_key)
    key = new_key()

    first = refund(client, approval_key, key)
    again = refund(client, approval_key, key)

    assert first.status_code == again.status_code == 200
    assert first.json()["cancelled"] is True
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [p["status"] for p in payments_of(client, body["order_id"])] == ["CANCELLED"]


def test_a_refund_of_a_payment_cancelled_already_is_refused(client: TestClient) -> None:
    body, approval_key = a_payment(), new_key()
    approve(client, body, approval_key)
    refund(client, approval_key, new_key())

    assert_error(refund(client, approval_key, new_key()), 409, "payment_not_refundable")
    assert_error(cancel_then_refund(client, approval_key), 409, "payment_not_refundable")


def test_a_refund_or_a_cancellation_that_names_its_own_key_names_no_approval(
    client: TestClient,
) -> None:
    """Its own key is claimed by its own transaction, not an approval that ran: nothing to give
    back, a 409 (or an empty cancellation), never a 5xx (found by the fuzz test)."""
    key = new_key()
    assert_error(refund(client, key, key), 409, "payment_not_refundable")
    other = new_key()
    assert cancel(client, other, other).status_code == 200


def test_a_refund_or_a_cancellation_naming_a_key_that_approved_nothing_is_refused(
    client: TestClient,
) -> None:
    """A key that applied another operation (here a cancellation) is no approval: a 422 that
    changes nothing, never a 5xx (found by the fuzz test) nor an undo of what it names."""
    body, approval_key = a_payment(), new_key()
    approve(client, body, approval_key)
    cancellation_key = new_key()
    assert cancel(client, approval_key, cancellation_key).json()["cancelled"] is True

    assert_error(cancel(client, cancellation_key, new_key()), 422, "not_that_action")
    assert_error(refund(client, cancellation_key, new_key()), 422, "not_that_action")
    # The cancellation it named is still the one that undid the approval, and stands.
    assert cancel(client, approval_key, cancellation_key).json()["cancelled"] is True
    assert [p["status"] for p in payments_of(client, body["order_id"])] == ["CANCELLED"]


def test_a_key_written_before_operations_were_recorded_is_still_refused_not_a_500(
    client: TestClient,
) -> None:
    """Records older than the operation column carry none: the store trusts them, and the
    payment service still finds no payment approved under such a key: a 422, never a 5xx."""
    body, approval_key = a_payment(), new_key()
    approve(client, body, approval_key)
    cancellation_key = new_key()
    cancel(client, approval_key, cancellation_key)
    with client.app.state.sessionmaker() as session, session.begin():
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == cancellation_key)
            .values(operation=None)
        )

    assert_error(cancel(client, cancellation_key, new_key()), 422, "not_that_action")
    assert_error(refund(client, cancellation_key, new_key()), 422, "not_that_action")
    assert [p["status"] for p in payments_of(client, body["order_id"])] == ["CANCELLED"]


def cancel_then_refund(client: TestClient, approval_key: str) -> httpx.Response:
    cancel(client, approval_key, new_key())  # a compensation that finds it cancelled already
    return refund(client, approval_key, new_key())


def test_a_refund_of_an_approval_that_never_went_through_is_refused_and_changes_nothing(
    client: TestClient,
) -> None:
    body, approval_key = a_payment(), new_key()

    assert_error(refund(client, approval_key, new_key()), 409, "payment_not_refundable")
    # A refusal stores nothing, no tombstone either: the approval may still go through.
    assert approve(client, body, approval_key).status_code == 201
    assert [p["status"] for p in payments_of(client, body["order_id"])] == ["APPROVED"]
