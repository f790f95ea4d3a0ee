"""The example of docs/engine.md on real processes: the subscriptions service and the orchestrator
with the renewal saga registered (`python -m examples.subscriptions service|orchestrator`),
beside the suite's user service and data platform."""

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from common.db import drop_database, migrate
from tests.conftest import PREFIX, database_url
from tests.e2e.client import ADMIN_AUTH, Api, attempts, wait_for
from tests.e2e.inprocess import private_orchestrator_database
from tools.stack import Process, Stack, free_port, orchestrator_process

RENEWALS = "/sagas/subscription_renewal"


@pytest.fixture(scope="module")
def example(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The example's two processes, on databases of their own, and the suite's user service and
    data platform: a stack whose `orchestrator` runs renewals."""
    logs = tmp_path_factory.mktemp("example-logs")
    subscriptions_db = make_url(database_url("ORCHESTRATOR")).set(
        drivername="postgresql+psycopg", database=f"{PREFIX}_subscriptions"
    )
    drop_database(subscriptions_db)
    migrate(subscriptions_db, "subscriptions")
    service_env = {
        **stack.processes["user"].env,
        "SUBSCRIPTIONS_DATABASE_URL": subscriptions_db.set(
            drivername="postgresql"
        ).render_as_string(hide_password=False),
    }
    service = Process(
        "examples.subscriptions", free_port(), service_env, logs / "subscriptions.log", ("service",)
    )
    # Its own orchestrator database: the suite's orchestrator knows no renewal saga.
    orchestrator_env = {
        "ORCHESTRATOR_DATABASE_URL": private_orchestrator_database("subscriptions"),
        "SUBSCRIPTIONS_SERVICE_URL": service.url,
    }
    orchestrator = replace(
        orchestrator_process(stack, logs, "example-orchestrator", orchestrator_env),
        package="examples.subscriptions",
        command=("orchestrator",),
    )
    example = Stack(
        processes={
            "user": stack.processes["user"],
            "data_platform": stack.processes["data_platform"],
            "subscriptions": service,
            "orchestrator": orchestrator,
        }
    )
    try:
        for process in (service, orchestrator):
            process.start()
        for process in (service, orchestrator):
            process.wait_healthy()
        yield example
    finally:
        orchestrator.stop()
        service.stop()


@pytest.fixture
def api(example: Stack) -> Iterator[Api]:
    api = Api(example)
    yield api
    api.close()


def _subscription(api: Api, user_id: int, price: int, paid_through: str = "2026-12") -> int:
    body = {"user_id": user_id, "price": price, "paid_through": paid_through}
    r = api.http.post(api.url("subscriptions", "/subscriptions"), json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _paid_through(api: Api, subscription_id: int) -> str:
    r = api.http.get(api.url("subscriptions", f"/subscriptions/{subscription_id}"))
    return str(r.json()["paid_through"])


def _renew(api: Api, subscription_id: int, month: str, key: str | None = None) -> httpx.Response:
    return api.http.post(
        api.url("orchestrator", RENEWALS),
        json={"subscription_id": subscription_id, "month": month},
        headers={"Idempotency-Key": key} if key else {},
        params={"wait": 30},
    )


def _renewal(api: Api, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    saga: dict[str, Any] = api.saga(response.json()["saga_id"], RENEWALS)
    return saga


def test_a_renewal_takes_the_price_and_pays_the_subscription_through_its_month(api: Api):
    user_id = api.create_user(10_000)
    subscription_id = _subscription(api, user_id, 3_000)

    saga = _renewal(api, _renew(api, subscription_id, "2027-01", key="renew-2027-01"))

    assert saga["status"] == "COMPLETED" and saga["error"] is None
    assert attempts(saga) == [
        ("reserve_renewal", "action", "SUCCEEDED"),
        ("deduct_balance", "action", "SUCCEEDED"),
        ("activate_renewal", "action", "SUCCEEDED"),
    ]
    assert saga["keys"] == {"subscription_id": subscription_id, "user_id": user_id}
    assert api.balance(user_id) == 7_000
    assert _paid_through(api, subscription_id) == "2027-01"
    events = wait_for(lambda: api.platform_events({saga["saga_id"]}), what="the event")
    assert [(e["type"], e["payload"]["amount"]) for e in events] == [
        ("subscription.renewed", 3_000)
    ]


def test_a_renewal_the_balance_refuses_releases_its_reservation(api: Api):
    user_id = api.create_user(1_000)
    subscription_id = _subscription(api, user_id, 3_000)

    saga = _renewal(api, _renew(api, subscription_id, "2027-01"))

    assert saga["status"] == "COMPENSATED"
    assert saga["error"]["code"] == "insufficient_balance"
    assert attempts(saga) == [
        ("reserve_renewal", "action", "SUCCEEDED"),
        ("deduct_balance", "action", "REFUSED"),
        ("reserve_renewal", "compensation", "SUCCEEDED"),
    ]
    assert api.balance(user_id) == 1_000
    assert _paid_through(api, subscription_id) == "2026-12"
    # Released, the month can be renewed once the balance covers it.
    topped_up = api.http.post(api.url("user", f"/users/{user_id}/charge"), json={"amount": 5_000})
    assert topped_up.status_code == 200, topped_up.text
    again = _renewal(api, _renew(api, subscription_id, "2027-01"))
    assert again["status"] == "COMPLETED" and again["saga_id"] != saga["saga_id"]
    assert (api.balance(user_id), _paid_through(api, subscription_id)) == (3_000, "2027-01")


def test_a_key_sent_again_answers_the_same_renewal_and_renews_once(api: Api):
    user_id = api.create_user(10_000)
    subscription_id = _subscription(api, user_id, 3_000)

    first = _renewal(api, _renew(api, subscription_id, "2027-01", key="once"))
    again = _renewal(api, _renew(api, subscription_id, "2027-01", key="once"))

    assert again["saga_id"] == first["saga_id"] and again["status"] == "COMPLETED"
    assert api.balance(user_id) == 7_000
    other_month = _renew(api, subscription_id, "2027-02", key="once")
    assert other_month.status_code == 422, other_month.text
    assert other_month.json()["error"]["code"] == "idempotency_key_reused"
    renewed = _renew(api, subscription_id, "2027-01")
    assert renewed.status_code == 409 and renewed.json()["error"]["code"] == "already_renewed"
    assert api.balance(user_id) == 7_000


@pytest.mark.parametrize(
    ("subscription", "month", "status", "code"),
    [
        (None, "2027-01", 404, "subscription_not_found"),
        ("known", "2027-03", 409, "subscription_not_renewable"),
    ],
)
def test_a_renewal_its_first_step_refuses_leaves_no_saga(
    api: Api, subscription: str | None, month: str, status: int, code: str
):
    user_id = api.create_user(10_000)
    subscription_id = _subscription(api, user_id, 3_000) if subscription else 2**62
    stats = api.url("orchestrator", "/admin/stats")
    before = sum(api.http.get(stats, headers=ADMIN_AUTH).json()["sagas_by_status"].values())

    refused = _renew(api, subscription_id, month)

    assert (refused.status_code, refused.json()["error"]["code"]) == (status, code)
    after = sum(api.http.get(stats, headers=ADMIN_AUTH).json()["sagas_by_status"].values())
    assert after == before
    assert api.balance(user_id) == 10_000
