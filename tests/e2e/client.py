"""A small client of the running processes, as a black-box user and an operator see them."""

import time
from typing import Any

import httpx
import psycopg

from tests.conftest import database_url
from tools.invariants import Databases, Report, check
from tools.stack import Stack

SERVICE_AUTH = {"Authorization": "Bearer dev-service-token"}
ADMIN_AUTH = {"Authorization": "Bearer dev-admin-token"}


class Api:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.http = httpx.Client(timeout=90)

    def close(self) -> None:
        self.http.close()

    def url(self, service: str, path: str) -> str:
        return f"{self.stack.url(service)}{path}"

    # -- seeding ---------------------------------------------------------------------------

    def create_user(self, balance: int, name: str = "buyer") -> int:
        r = self.http.post(self.url("user", "/users"), json={"name": name, "balance": balance})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def balance(self, user_id: int) -> int:
        return self.http.get(self.url("user", f"/users/{user_id}")).json()["balance"]

    def create_order(self, user_id: int, amount: int) -> int:
        item = {"product_id": 1, "quantity": 1, "unit_price": amount}
        r = self.http.post(self.url("order", "/orders"), json={"user_id": user_id, "items": [item]})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def order_status(self, order_id: int) -> str:
        return self.http.get(self.url("order", f"/orders/{order_id}")).json()["status"]

    def approved_payments(self, order_id: int) -> list[dict[str, Any]]:
        r = self.http.get(self.url("payment", "/payments"), params={"order_id": order_id})
        return [p for p in r.json() if p["status"] == "APPROVED"]

    # -- sagas -----------------------------------------------------------------------------

    def start_payment(
        self, order_id: Any, key: str | None = None, wait: float | None = None
    ) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        params = {"wait": wait} if wait else {}
        return self.http.post(
            self.url("orchestrator", "/payments"),
            json={"order_id": order_id},
            headers=headers,
            params=params,
        )

    def pay(self, order_id: int, key: str | None = None) -> dict[str, Any]:
        """Start a payment saga, wait for it to be final, and return it with its steps."""
        r = self.start_payment(order_id, key, wait=60)
        assert r.status_code == 200, r.text
        return self.saga(r.json()["saga_id"])

    def start_refund(
        self, order_id: Any, key: str | None = None, wait: float | None = None
    ) -> httpx.Response:
        return self.http.post(
            self.url("orchestrator", "/refunds"),
            json={"order_id": order_id},
            headers={"Idempotency-Key": key} if key else {},
            params={"wait": wait} if wait else {},
        )

    def refund(self, order_id: int, key: str | None = None) -> dict[str, Any]:
        """Start a refund saga, wait for it to be final (or stuck), and return it."""
        r = self.start_refund(order_id, key, wait=60)
        assert r.status_code in (200, 202), r.text
        return self.saga(r.json()["saga_id"], "/refunds")

    def cancel_reservation(
        self, saga_id: str, key: str | None = None, wait: float | None = None
    ) -> httpx.Response:
        return self.http.post(
            self.url("orchestrator", f"/reservations/{saga_id}/cancel"),
            headers={"Idempotency-Key": key} if key else {},
            params={"wait": wait} if wait else {},
        )

    def saga(self, saga_id: str, path: str = "/payments") -> dict[str, Any]:
        r = self.http.get(self.url("orchestrator", f"{path}/{saga_id}"))
        assert r.status_code == 200, r.text
        return r.json()

    def saga_count(self) -> int:
        r = self.http.get(self.url("orchestrator", "/admin/stats"), headers=ADMIN_AUTH)
        return sum(r.json()["sagas_by_status"].values())

    # -- concerts ----------------------------------------------------------------------------

    def create_concert(self, seats: int, price: int) -> tuple[int, list[int]]:
        body = {"title": "concert", "seats": seats, "price": price}
        r = self.http.post(self.url("concert", "/concerts"), json=body)
        assert r.status_code == 201, r.text
        return r.json()["id"], [seat["id"] for seat in r.json()["seats"]]

    def seat_statuses(self, concert_id: int) -> dict[int, str]:
        seats = self.http.get(self.url("concert", f"/concerts/{concert_id}/seats")).json()
        return {seat["id"]: seat["status"] for seat in seats}

    def start_reservation(
        self,
        concert_id: int,
        seat_id: int,
        user_id: int,
        key: str | None = None,
        wait: float | None = None,
    ) -> httpx.Response:
        return self.http.post(
            self.url("orchestrator", "/reservations"),
            json={"concert_id": concert_id, "seat_id": seat_id, "user_id": user_id},
            headers={"Idempotency-Key": key} if key else {},
            params={"wait": wait} if wait else {},
        )

    def reserve(self, concert_id: int, seat_id: int, user_id: int) -> dict[str, Any]:
        r = self.start_reservation(concert_id, seat_id, user_id, wait=60)
        assert r.status_code == 200, r.text
        saga = self.http.get(self.url("orchestrator", f"/reservations/{r.json()['saga_id']}"))
        return saga.json()

    def reservation_payments(self, saga: dict[str, Any]) -> list[dict[str, Any]]:
        hold = next(
            (
                s["response"]
                for s in saga["steps"]
                if s["step"] == "hold_seat" and s["status"] == "SUCCEEDED"
            ),
            None,
        )
        if hold is None:
            return []
        r = self.http.get(
            self.url("payment", "/payments"), params={"reservation_id": hold["reservation_id"]}
        )
        return [p for p in r.json() if p["status"] == "APPROVED"]

    # -- the data platform and the outbox --------------------------------------------------

    def platform_control(self, down=False, fail_rate=0.0, latency_ms=0) -> dict[str, Any]:
        body = {"down": down, "fail_rate": fail_rate, "latency_ms": latency_ms}
        r = self.http.post(self.url("data_platform", "/_control"), json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def platform_failed(self) -> int:
        """Deliveries the platform has answered 500 on purpose (`fail_rate`), so far."""
        return self.http.get(self.url("data_platform", "/_control")).json()["failed"]

    def platform_in_flight(self) -> int:
        return self.http.get(self.url("data_platform", "/_control")).json()["in_flight"]

    def platform_events(self, saga_ids: set[str]) -> list[dict[str, Any]]:
        """The events the platform stored for these sagas, in the order it stored them."""
        events = self.http.get(self.url("data_platform", "/events")).json()
        return [e for e in events if e["payload"].get("saga_id") in saga_ids]

    def outbox_pending(self) -> int:
        """Events the suite's orchestrator has written and not delivered yet."""
        r = self.http.get(
            self.url("orchestrator", "/admin/outbox"), params={"limit": 1}, headers=ADMIN_AUTH
        )
        return int(r.json()["pending"])

    def outbox_rows(self, saga_ids: set[str]) -> list[dict[str, Any]]:
        r = self.http.get(
            self.url("orchestrator", "/admin/outbox"), params={"limit": 500}, headers=ADMIN_AUTH
        )
        return [row for row in r.json()["items"] if row["saga_id"] in saga_ids]

    # -- faults ----------------------------------------------------------------------------

    def fault(
        self, service: str, point: str, mode: str, times: int | None = 1, delay_ms: int = 0
    ) -> None:
        rule = {"point": point, "mode": mode, "times": times, "delay_ms": delay_ms}
        r = self.http.post(self.url(service, "/_faults"), json=rule, headers=SERVICE_AUTH)
        assert r.status_code == 204, r.text

    def clear_faults(self) -> None:
        for service in ("order", "user", "payment", "concert"):
            self.http.delete(self.url(service, "/_faults"), headers=SERVICE_AUTH)


def ledger(user_id: int) -> list[tuple[int, int, str]]:
    """(delta, balance_after, reason) of every balance change of a user, in order."""
    with psycopg.connect(database_url("USERS")) as conn:
        return conn.execute(
            "SELECT delta, balance_after, reason FROM balance_ledger"
            " WHERE user_id = %s ORDER BY id",
            (user_id,),
        ).fetchall()


def attempts(saga: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The saga's history as (step, phase, status), in the order the attempts ran."""
    return [(s["step"], s["phase"], s["status"]) for s in saga["steps"]]


def wait_for(condition, timeout: float = 30, what: str = "condition"):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def databases_under_test(orchestrator: str | None = None) -> Databases:
    return Databases(
        orders=database_url("ORDERS"),
        users=database_url("USERS"),
        payments=database_url("PAYMENTS"),
        orchestrator=orchestrator or database_url("ORCHESTRATOR"),
        concerts=database_url("CONCERTS"),
    )


def assert_invariants(
    saga_ids: list[str], user_ids: list[int], orchestrator: str | None = None
) -> Report:
    """The invariants over these sagas (in the suite's orchestrator database, unless another
    one is named)."""
    report = check(databases_under_test(orchestrator), saga_ids, user_ids)
    assert report.violations == []
    return report


def delayed_in_flight(api: Api, service: str) -> int:
    r = api.http.get(api.url(service, "/_faults"), headers=SERVICE_AUTH)
    return r.json()["delayed_in_flight"]


def held(api: Api, service: str, point: str) -> int:
    """Calls stopped at `point` by a `hold` fault rule right now."""
    r = api.http.get(api.url(service, "/_faults"), headers=SERVICE_AUTH)
    return r.json()["held"].get(point, 0)


def settled(api: Api, saga_id: str, path: str, timeout: float = 60) -> dict[str, Any]:
    """The saga once final; one that stops at NEEDS_ATTENTION is retried, as an operator
    would once the faults are gone, and then waited for."""
    live = ("RUNNING", "COMPENSATING")
    saga = wait_for(
        lambda: (s := api.saga(saga_id, path))["status"] not in live and s, timeout, "a stop"
    )
    if saga["status"] == "NEEDS_ATTENTION":
        api.clear_faults()
        retried = api.http.post(
            api.url("orchestrator", f"/admin/sagas/{saga_id}/retry"), headers=ADMIN_AUTH
        )
        assert retried.status_code == 202, retried.text
        final = ("COMPLETED", "COMPENSATED")
        saga = wait_for(
            lambda: (s := api.saga(saga_id, path))["status"] in final and s, timeout, "the end"
        )
    return saga


def newest_saga(api: Api, saga_type: str, **business_keys: Any) -> str | None:
    """The id of the newest saga of a type whose summary shows these business keys."""
    page = api.http.get(
        api.url("orchestrator", "/admin/sagas"),
        params={"type": saga_type, "limit": 20},
        headers=ADMIN_AUTH,
    ).json()
    for item in page["items"]:
        if all(item.get(k) == v for k, v in business_keys.items()):
            return item["saga_id"]
    return None
