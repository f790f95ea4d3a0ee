"""The user service in process, against its real PostgreSQL test database.

Every test makes its own users and keys: the tables are shared and never assumed empty.
"""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from common.fields import INT64_MAX
from tests.integration.support import SERVICE, assert_error, new_key, service_client
from user_service.app import create_app
from user_service.domain import LedgerReason
from user_service.models import IdempotencyRecord, LedgerEntry, User

pytestmark = pytest.mark.usefixtures("databases")

UNKNOWN_USER = INT64_MAX


client = service_client(create_app)


def create_user(client: TestClient, balance: int, name: str | None = None) -> dict[str, Any]:
    response = client.post(
        "/users", json={"name": name or f"user-{uuid.uuid4()}", "balance": balance}
    )
    assert response.status_code == 201, response.text
    return response.json()


def balance_of(client: TestClient, user_id: int) -> int:
    response = client.get(f"/users/{user_id}")
    assert response.status_code == 200, response.text
    return response.json()["balance"]


def deduct(
    client: TestClient, user_id: int, amount: Any, key: str | None, headers: dict | None = None
) -> httpx.Response:
    headers = dict(SERVICE if headers is None else headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/users/{user_id}/deductions", json={"amount": amount}, headers=headers)


def charge_back(
    client: TestClient,
    user_id: int,
    amount: int,
    deduction_key: str,
    key: str,
    headers: dict | None = None,
) -> httpx.Response:
    return client.post(
        f"/users/{user_id}/charge-backs",
        json={"amount": amount, "deduction_key": deduction_key},
        headers={**(SERVICE if headers is None else headers), "Idempotency-Key": key},
    )


def ledger_of(db: sessionmaker[Session], user_id: int) -> list[LedgerEntry]:
    with db() as session:
        return list(
            session.scalars(
                select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)
            )
        )


def key_is_recorded(db: sessionmaker[Session], key: str) -> bool:
    with db() as session:
        return session.get(IdempotencyRecord, key) is not None


# --- users --------------------------------------------------------------------------------------


def test_creates_user_and_reads_it_back(client: TestClient) -> None:
    name = f"alice-{uuid.uuid4()}"
    created = client.post("/users", json={"name": name, "balance": 10_000})
    assert created.status_code == 201
    user = created.json()
    assert user == {"id": user["id"], "name": name, "balance": 10_000}
    assert client.get(f"/users/{user['id']}").json() == user


def test_creates_user_with_zero_balance(client: TestClient) -> None:
    user = create_user(client, 0)
    assert balance_of(client, user["id"]) == 0


def test_records_the_opening_balance_in_the_ledger(client: TestClient, db) -> None:
    user = create_user(client, 2_500)
    [opening] = ledger_of(db, user["id"])
    assert (opening.reason, opening.delta, opening.balance_after) == (
        LedgerReason.OPENING,
        2_500,
        2_500,
    )


def test_creates_user_with_the_largest_storable_balance(client: TestClient) -> None:
    user = create_user(client, INT64_MAX)
    assert balance_of(client, user["id"]) == INT64_MAX


def test_unknown_user_is_not_found(client: TestClient) -> None:
    assert_error(client.get(f"/users/{UNKNOWN_USER}"), 404, "user_not_found")


@pytest.mark.parametrize("user_id", ["abc", "0", "-1", "1.5", "1.0", "+1", str(2**63)])
def test_refuses_malformed_user_id(client: TestClient, user_id: str) -> None:
    assert_error(client.get(f"/users/{user_id}"), 422, "validation_error")


@pytest.mark.parametrize(
    "balance",
    ["100", 5.0, 5.5, -1, 2**63, 10**30, None, True, [100]],
    ids=[
        "numeric-string",
        "float-integral",
        "fraction",
        "negative",
        "int64-overflow",
        "huge",
        "null",
        "bool",
        "list",
    ],
)
def test_refuses_invalid_opening_balance(client: TestClient, db, balance: Any) -> None:
    name = f"bad-{uuid.uuid4()}"
    response = client.post("/users", json={"name": name, "balance": balance})
    assert_error(response, 422, "validation_error")
    with db() as session:
        assert session.scalar(select(func.count()).where(User.name == name)) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"balance": 10},
        {"name": "x"},
        {"name": "", "balance": 10},
        {"name": 5, "balance": 10},
        {},
        [],
        "text",
    ],
    ids=[
        "no-name",
        "no-balance",
        "empty-name",
        "name-not-string",
        "empty-object",
        "list",
        "string",
    ],
)
def test_refuses_incomplete_user(client: TestClient, db, body: Any) -> None:
    with db() as session:
        before = session.scalar(select(func.count()).select_from(User).where(User.name == "x"))
    assert_error(client.post("/users", json=body), 422, "validation_error")
    with db() as session:
        after = session.scalar(select(func.count()).select_from(User).where(User.name == "x"))
    assert after == before


def test_refuses_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/users", content=b'{"name": "x", "balance": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "validation_error")


# --- charge (a point top-up) --------------------------------------------------------------------


def test_charges_without_key_each_time(client: TestClient) -> None:
    user = create_user(client, 100)
    first = client.post(f"/users/{user['id']}/charge", json={"amount": 50})
    assert first.status_code == 200
    assert first.json() == {"id": user["id"], "name": user["name"], "balance": 150}
    assert "Idempotent-Replayed" not in first.headers
    client.post(f"/users/{user['id']}/charge", json={"amount": 50})
    assert balance_of(client, user["id"]) == 200


def test_charges_once_per_idempotency_key(client: TestClient, db) -> None:
    user = create_user(client, 100)
    key = new_key()
    first = client.post(
        f"/users/{user['id']}/charge", json={"amount": 40}, headers={"Idempotency-Key": key}
    )
    again = client.post(
        f"/users/{user['id']}/charge", json={"amount": 40}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"id": user["id"], "name": user["name"], "balance": 140}
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balance_of(client, user["id"]) == 140
    charges = [e for e in ledger_of(db, user["id"]) if e.reason == LedgerReason.CHARGE]
    assert [(e.delta, e.idempotency_key) for e in charges] == [(40, key)]


def test_refuses_charge_key_reused_for_another_amount(client: TestClient) -> None:
    user = create_user(client, 100)
    key = new_key()
    client.post(
        f"/users/{user['id']}/charge", json={"amount": 40}, headers={"Idempotency-Key": key}
    )
    reused = client.post(
        f"/users/{user['id']}/charge", json={"amount": 41}, headers={"Idempotency-Key": key}
    )
    assert_error(reused, 422, "idempotency_key_reused")
    assert balance_of(client, user["id"]) == 140


@pytest.mark.parametrize(
    "amount",
    ["50", 50.0, 0.5, 0, -50, 2**63, None],
    ids=[
        "numeric-string",
        "float-integral",
        "fraction",
        "zero",
        "negative",
        "int64-overflow",
        "null",
    ],
)
def test_refuses_invalid_charge_amount(client: TestClient, amount: Any) -> None:
    user = create_user(client, 100)
    response = client.post(f"/users/{user['id']}/charge", json={"amount": amount})
    assert_error(response, 422, "validation_error")
    assert balance_of(client, user["id"]) == 100


def test_refuses_charge_to_unknown_user(client: TestClient) -> None:
    assert_error(
        client.post(f"/users/{UNKNOWN_USER}/charge", json={"amount": 1}), 404, "user_not_found"
    )


def test_refuses_charge_past_the_largest_storable_balance(client: TestClient, db) -> None:
    user = create_user(client, INT64_MAX - 10)
    response = client.post(f"/users/{user['id']}/charge", json={"amount": 11})
    assert_error(response, 422, "balance_overflow")
    assert balance_of(client, user["id"]) == INT64_MAX - 10
    assert [e.reason for e in ledger_of(db, user["id"])] == [LedgerReason.OPENING]


# --- deduction (a saga action) ------------------------------------------------------------------


def test_deducts_the_amount_from_the_balance(client: TestClient, db) -> None:
    user = create_user(client, 1_000)
    key = new_key()
    response = deduct(client, user["id"], 300, key)
    assert response.status_code == 200
    assert response.json() == {"user_id": user["id"], "amount": 300, "balance": 700}
    assert "Idempotent-Replayed" not in response.headers
    assert balance_of(client, user["id"]) == 700
    last = ledger_of(db, user["id"])[-1]
    assert (last.reason, last.delta, last.balance_after, last.idempotency_key) == (
        LedgerReason.DEDUCTION,
        -300,
        700,
        key,
    )


def test_deducts_the_whole_balance(client: TestClient) -> None:
    user = create_user(client, 500)
    assert deduct(client, user["id"], 500, new_key()).json()["balance"] == 0
    assert balance_of(client, user["id"]) == 0


def test_replays_a_deduction_with_the_same_key(client: TestClient, db) -> None:
    user = create_user(client, 1_000)
    key = new_key()
    first = deduct(client, user["id"], 300, key)
    again = deduct(client, user["id"], 300, key)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert balance_of(client, user["id"]) == 700
    deductions = [e for e in ledger_of(db, user["id"]) if e.reason == LedgerReason.DEDUCTION]
    assert len(deductions) == 1


def test_refuses_a_key_reused_for_another_amount(client: TestClient) -> None:
    user = create_user(client, 1_000)
    key = new_key()
    deduct(client, user["id"], 300, key)
    assert_error(deduct(client, user["id"], 301, key), 422, "idempotency_key_reused")
    assert balance_of(client, user["id"]) == 700


def test_refuses_a_key_reused_for_another_user(client: TestClient) -> None:
    first, second = create_user(client, 1_000), create_user(client, 1_000)
    key = new_key()
    deduct(client, first["id"], 300, key)
    assert_error(deduct(client, second["id"], 300, key), 422, "idempotency_key_reused")
    assert balance_of(client, second["id"]) == 1_000


def test_refuses_deduction_when_balance_is_short(client: TestClient, db) -> None:
    user = create_user(client, 299)
    assert_error(deduct(client, user["id"], 300, new_key()), 409, "insufficient_balance")
    assert balance_of(client, user["id"]) == 299
    assert [e.reason for e in ledger_of(db, user["id"])] == [LedgerReason.OPENING]


def test_judges_a_refusal_afresh_when_retried_once_the_balance_suffices(
    client: TestClient,
) -> None:
    user = create_user(client, 100)
    key = new_key()
    refused = deduct(client, user["id"], 300, key)
    assert_error(refused, 409, "insufficient_balance")
    client.post(f"/users/{user['id']}/charge", json={"amount": 1_000})
    again = deduct(client, user["id"], 300, key)  # nothing was stored for the refusal
    assert again.status_code == 200
    assert balance_of(client, user["id"]) == 800
    replay = deduct(client, user["id"], 300, key)  # what applied is replayed, never re-applied
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert balance_of(client, user["id"]) == 800


def test_refuses_deduction_from_unknown_user(client: TestClient) -> None:
    assert_error(deduct(client, UNKNOWN_USER, 1, new_key()), 404, "user_not_found")


@pytest.mark.parametrize(
    "amount",
    ["300", 300.0, 2.5, 0, -300, 2**63, 10**30, None, True],
    ids=[
        "numeric-string",
        "float-integral",
        "fraction",
        "zero",
        "negative",
        "int64-overflow",
        "huge",
        "null",
        "bool",
    ],
)
def test_refuses_invalid_deduction_amount_without_using_the_key(
    client: TestClient, db, amount: Any
) -> None:
    user = create_user(client, 1_000)
    key = new_key()
    assert_error(deduct(client, user["id"], amount, key), 422, "validation_error")
    assert balance_of(client, user["id"]) == 1_000
    assert not key_is_recorded(db, key)
    assert deduct(client, user["id"], 300, key).json()["balance"] == 700


def test_refuses_deduction_without_amount(client: TestClient) -> None:
    user = create_user(client, 1_000)
    response = client.post(
        f"/users/{user['id']}/deductions",
        json={},
        headers={**SERVICE, "Idempotency-Key": new_key()},
    )
    assert_error(response, 422, "validation_error")
    assert balance_of(client, user["id"]) == 1_000


def test_refuses_deduction_with_malformed_json(client: TestClient) -> None:
    user = create_user(client, 1_000)
    response = client.post(
        f"/users/{user['id']}/deductions",
        content=b'{"amount": 3',
        headers={**SERVICE, "Idempotency-Key": new_key(), "content-type": "application/json"},
    )
    assert_error(response, 422, "validation_error")
    assert balance_of(client, user["id"]) == 1_000


def test_refuses_deduction_without_idempotency_key(client: TestClient) -> None:
    user = create_user(client, 1_000)
    assert_error(deduct(client, user["id"], 300, None), 422, "validation_error")
    assert balance_of(client, user["id"]) == 1_000


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "dev-service-token"}],
    ids=["no-token", "wrong-token", "not-bearer"],
)
def test_refuses_step_calls_without_the_service_token(
    client: TestClient, db, headers: dict[str, str]
) -> None:
    user = create_user(client, 1_000)
    key = new_key()
    assert_error(deduct(client, user["id"], 300, key, headers=headers), 401, "unauthorized")
    assert_error(
        charge_back(client, user["id"], 300, key, new_key(), headers=headers), 401, "unauthorized"
    )
    assert balance_of(client, user["id"]) == 1_000
    assert not key_is_recorded(db, key)


# --- charge-back (the compensation of a deduction) ----------------------------------------------


def test_charge_back_restores_the_deducted_amount_once(client: TestClient, db) -> None:
    user = create_user(client, 1_000)
    deduction_key, key = new_key(), new_key()
    deduct(client, user["id"], 300, deduction_key)
    first = charge_back(client, user["id"], 300, deduction_key, key)
    again = charge_back(client, user["id"], 300, deduction_key, key)
    assert first.status_code == again.status_code == 200
    assert first.json() == {
        "user_id": user["id"],
        "amount": 300,
        "balance": 1_000,
        "reversed": True,
    }
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balance_of(client, user["id"]) == 1_000
    assert [(e.reason, e.delta, e.balance_after) for e in ledger_of(db, user["id"])] == [
        (LedgerReason.OPENING, 1_000, 1_000),
        (LedgerReason.DEDUCTION, -300, 700),
        (LedgerReason.CHARGE, 300, 1_000),
    ]


def test_a_charge_back_always_fits_because_top_ups_leave_it_room(client: TestClient) -> None:
    user = create_user(client, 1_000)
    deduction_key = new_key()
    deduct(client, user["id"], 600, deduction_key)
    # 400 on the balance and 600 that may come back: a top-up past 2**63 - 1 - 1,000 is refused,
    # one up to it is taken.
    past = client.post(f"/users/{user['id']}/charge", json={"amount": INT64_MAX - 999})
    assert_error(past, 422, "balance_overflow")
    assert "given back" in past.json()["error"]["message"]
    topped = client.post(f"/users/{user['id']}/charge", json={"amount": INT64_MAX - 1_000})
    assert topped.json()["balance"] == INT64_MAX - 600

    answer = charge_back(client, user["id"], 600, deduction_key, new_key())

    assert answer.status_code == 200, answer.text
    assert answer.json()["reversed"] is True
    assert balance_of(client, user["id"]) == INT64_MAX


def test_replays_the_deduction_after_its_charge_back(client: TestClient) -> None:
    user = create_user(client, 1_000)
    deduction_key = new_key()
    deduct(client, user["id"], 300, deduction_key)
    charge_back(client, user["id"], 300, deduction_key, new_key())
    again = deduct(client, user["id"], 300, deduction_key)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balance_of(client, user["id"]) == 1_000


def test_charges_back_a_deduction_only_once_even_under_another_key(client: TestClient) -> None:
    user = create_user(client, 1_000)
    deduction_key = new_key()
    deduct(client, user["id"], 300, deduction_key)
    first = charge_back(client, user["id"], 300, deduction_key, new_key())
    second = charge_back(client, user["id"], 300, deduction_key, new_key())
    assert first.json()["reversed"] is True
    assert second.json() == {
        "user_id": user["id"],
        "amount": 0,
        "balance": 1_000,
        "reversed": False,
    }
    assert balance_of(client, user["id"]) == 1_000


def test_charge_back_before_its_deduction_leaves_a_tombstone(client: TestClient, db) -> None:
    user = create_user(client, 1_000)
    deduction_key = new_key()
    early = charge_back(client, user["id"], 300, deduction_key, new_key())
    assert early.status_code == 200
    assert early.json() == {"user_id": user["id"], "amount": 0, "balance": 1_000, "reversed": False}

    late = deduct(client, user["id"], 300, deduction_key)
    assert_error(late, 409, "action_compensated")
    assert balance_of(client, user["id"]) == 1_000
    assert [e.reason for e in ledger_of(db, user["id"])] == [LedgerReason.OPENING]


def test_charge_back_of_a_refused_deduction_changes_nothing(client: TestClient, db) -> None:
    user = create_user(client, 100)
    deduction_key = new_key()
    assert_error(deduct(client, user["id"], 300, deduction_key), 409, "insufficient_balance")
    response = charge_back(client, user["id"], 300, deduction_key, new_key())
    assert response.json()["reversed"] is False
    assert balance_of(client, user["id"]) == 100
    assert [e.reason for e in ledger_of(db, user["id"])] == [LedgerReason.OPENING]


@pytest.mark.parametrize("amount", [299, 301])
def test_refuses_charge_back_that_does_not_match_its_deduction(
    client: TestClient, amount: int
) -> None:
    user = create_user(client, 1_000)
    deduction_key = new_key()
    deduct(client, user["id"], 300, deduction_key)
    response = charge_back(client, user["id"], amount, deduction_key, new_key())
    assert_error(response, 409, "charge_back_mismatch")
    assert balance_of(client, user["id"]) == 700


def test_refuses_charge_back_to_another_user_than_the_deduction(client: TestClient) -> None:
    payer, other = create_user(client, 1_000), create_user(client, 1_000)
    deduction_key = new_key()
    deduct(client, payer["id"], 300, deduction_key)
    response = charge_back(client, other["id"], 300, deduction_key, new_key())
    assert_error(response, 409, "charge_back_mismatch")
    assert balance_of(client, payer["id"]) == 700
    assert balance_of(client, other["id"]) == 1_000


def test_refuses_a_charge_back_naming_a_charge_back_instead_of_a_deduction(
    client: TestClient, db
) -> None:
    """A charge-back's record has the user and amount of its deduction: undoing it would make
    money. A key naming anything but a deduction is a 422 that changes nothing."""
    user = create_user(client, 1_000)
    deduction_key, charge_back_key = new_key(), new_key()
    deduct(client, user["id"], 300, deduction_key)
    deduct(client, user["id"], 300, new_key())  # room that a second give-back could take
    charge_back(client, user["id"], 300, deduction_key, charge_back_key)

    response = charge_back(client, user["id"], 300, charge_back_key, new_key())

    assert_error(response, 422, "not_that_action")
    assert balance_of(client, user["id"]) == 700
    assert [e.reason for e in ledger_of(db, user["id"])] == [
        LedgerReason.OPENING,
        LedgerReason.DEDUCTION,
        LedgerReason.DEDUCTION,
        LedgerReason.CHARGE,
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 300},
        {"deduction_key": "k"},
        {"amount": 0, "deduction_key": "k"},
        {"amount": "300", "deduction_key": "k"},
        {"amount": 300, "deduction_key": ""},
    ],
    ids=["no-key", "no-amount", "zero", "numeric-string", "empty-key"],
)
def test_refuses_invalid_charge_back(client: TestClient, body: dict[str, Any]) -> None:
    user = create_user(client, 1_000)
    response = client.post(
        f"/users/{user['id']}/charge-backs",
        json=body,
        headers={**SERVICE, "Idempotency-Key": new_key()},
    )
    assert_error(response, 422, "validation_error")
    assert balance_of(client, user["id"]) == 1_000


def test_refuses_charge_back_without_idempotency_key(client: TestClient) -> None:
    user = create_user(client, 1_000)
    deduction_key = new_key()
    deduct(client, user["id"], 300, deduction_key)
    response = client.post(
        f"/users/{user['id']}/charge-backs",
        json={"amount": 300, "deduction_key": deduction_key},
        headers=SERVICE,
    )
    assert_error(response, 422, "validation_error")
    assert balance_of(client, user["id"]) == 700


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_deductions_never_overdraw(client: TestClient, db) -> None:
    amount, attempts, affordable = 700, 20, 7
    user = create_user(client, amount * affordable)
    start = threading.Barrier(attempts)

    def attempt(_: int) -> httpx.Response:
        start.wait(timeout=30)
        return deduct(client, user["id"], amount, new_key())

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        responses = list(pool.map(attempt, range(attempts)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * affordable + [409] * (attempts - affordable)
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "insufficient_balance"
    }
    assert balance_of(client, user["id"]) == 0
    ledger = ledger_of(db, user["id"])
    assert all(entry.balance_after >= 0 for entry in ledger)
    assert sum(entry.delta for entry in ledger) == 0
    assert sorted(e.balance_after for e in ledger if e.reason == LedgerReason.DEDUCTION) == [
        amount * n for n in range(affordable)
    ]


def test_concurrent_retries_of_one_deduction_apply_it_once(client: TestClient, db) -> None:
    user = create_user(client, 1_000)
    key, attempts = new_key(), 10
    start = threading.Barrier(attempts)

    def attempt(_: int) -> httpx.Response:
        start.wait(timeout=30)
        return deduct(client, user["id"], 300, key)

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        responses = list(pool.map(attempt, range(attempts)))

    assert {r.status_code for r in responses} == {200}
    assert {r.json()["balance"] for r in responses} == {700}
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert balance_of(client, user["id"]) == 700
    deductions = [e for e in ledger_of(db, user["id"]) if e.reason == LedgerReason.DEDUCTION]
    assert len(deductions) == 1


@pytest.mark.parametrize("round_", range(5))
def test_charge_back_racing_its_deduction_never_moves_the_balance(
    client: TestClient, db, round_: int
) -> None:
    user = create_user(client, 1_000)
    deduction_key = new_key()
    start = threading.Barrier(2)

    def run(call):
        start.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=2) as pool:
        deduction = pool.submit(run, lambda: deduct(client, user["id"], 300, deduction_key))
        compensation = pool.submit(
            run, lambda: charge_back(client, user["id"], 300, deduction_key, new_key())
        )
        deducted, charged_back = deduction.result(), compensation.result()

    assert charged_back.status_code == 200
    if charged_back.json()["reversed"]:
        assert deducted.status_code == 200
    else:
        assert_error(deducted, 409, "action_compensated")
    assert balance_of(client, user["id"]) == 1_000
    assert sum(e.delta for e in ledger_of(db, user["id"])) == 1_000


# --- input the database cannot store ------------------------------------------------------------


def test_refuses_a_user_name_with_a_nul_character(client: TestClient) -> None:
    # PostgreSQL text cannot hold NUL: refused as input, never a 500 from the database.
    response = client.post("/users", json={"name": "a\u0000b", "balance": 1})
    assert_error(response, 422, "validation_error")


def test_refuses_a_deduction_key_with_a_nul_character(client: TestClient) -> None:
    user = create_user(client, 1_000)
    response = charge_back(client, user["id"], 300, "a\u0000b", new_key())
    assert_error(response, 422, "validation_error")
    assert balance_of(client, user["id"]) == 1_000


# --- health and metrics -------------------------------------------------------------------------


def test_reports_healthy_when_its_database_answers(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_serves_request_latency_metrics(client: TestClient) -> None:
    client.get(f"/users/{UNKNOWN_USER}")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'route="/users/{user_id}"' in response.text
    assert "http_request_duration_seconds_count" in response.text


def test_a_client_top_up_key_cannot_take_a_key_the_saga_uses(client: TestClient) -> None:
    """Top-up keys live in their own namespace: a client choosing a saga's step key (they are
    visible in GET /payments/{id}) cannot make that step's call fail."""
    user = create_user(client, 1_000)
    deduction_key, compensation_key = "saga-x:deduct_balance:action", "saga-x:deduct_balance:c"
    deduct(client, user["id"], 300, deduction_key)
    squat = client.post(
        f"/users/{user['id']}/charge",
        json={"amount": 1},
        headers={"Idempotency-Key": compensation_key},
    )
    assert squat.status_code == 200

    back = charge_back(client, user["id"], 300, deduction_key, compensation_key)

    assert back.status_code == 200, back.text
    assert back.json()["reversed"] is True
    assert balance_of(client, user["id"]) == 1_001


def test_a_charge_back_of_a_deduction_that_never_ran_succeeds_even_for_an_unknown_user(
    client: TestClient,
) -> None:
    """A compensation with nothing to undo must never be refused: its refusal would roll back
    the tombstone it places, and the saga could never finish."""
    key = new_key()
    back = charge_back(client, UNKNOWN_USER, 300, key, new_key())
    assert back.status_code == 200
    assert back.json() == {"user_id": UNKNOWN_USER, "amount": 0, "balance": None, "reversed": False}
    late = deduct(client, UNKNOWN_USER, 300, key)
    assert_error(late, 409, "action_compensated")  # the tombstone stood
