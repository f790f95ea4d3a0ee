"""A start re-sent with its key answers its own saga, whatever the first request is doing.

A start records its saga and makes the saga's first call (which is also the check that may
refuse it) before it answers. A client that re-sends its start while the first request is still
waiting on that call finds a saga that is `starting`: the re-send waits for the first request's
decision, and then answers that saga, or, if the first step refused the start (and the saga was
removed), the same refusal. Played in a fixed order with a `hold` fault point on the first step.
(The race this replaces: a check read from the order ahead of the saga, and a re-send whose
check ran after the first saga completed, answered 409 to a client whose money was taken. With
no check ahead of the saga, that window is gone.)"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.client import SERVICE_AUTH, Api, assert_invariants, held, wait_for
from tools.stack import Process, Stack, orchestrator_process


@pytest.fixture
def patient_orchestrator(stack: Stack, tmp_path) -> Process:
    """An orchestrator whose calls wait longer than the holds last (the suite's wait 1 s)."""
    process = orchestrator_process(
        stack,
        tmp_path,
        "orchestrator-patient",
        {"ORCHESTRATOR_STEP_TIMEOUT": "15", "ORCHESTRATOR_LEASE_SECONDS": "30"},
    )
    process.start()
    process.wait_healthy()
    yield process
    process.stop()


def _release(api: Api, service: str, point: str) -> None:
    r = api.http.post(
        api.url(service, "/_faults/release"), json={"point": point}, headers=SERVICE_AUTH
    )
    assert r.json() == {"released": 1}


def _waiting(orchestrator: Process) -> float:
    """Starts waiting in `orchestrator` for another request's saga to be decided."""
    metrics = httpx.get(f"{orchestrator.url}/metrics").text
    return sum(
        float(line.split()[-1]) for line in metrics.splitlines()
        if line.startswith("saga_starts_waiting ")
    )  # fmt: skip


def _race(
    api: Api,
    orchestrator: Process,
    service: str,
    point: str,
    start: Callable[[], httpx.Response],
    meanwhile: Callable[[], object] = lambda: None,
) -> tuple[httpx.Response, httpx.Response]:
    """Start, and re-send the start while the first one's first call is held, until the re-send
    waits on the first one's saga; `meanwhile` runs then, before that call is let go. Both
    answers."""
    api.fault(service, point, "hold")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(start)
        wait_for(lambda: held(api, service, point) == 1, 30, "the first call to be held")
        resent = pool.submit(start)
        wait_for(lambda: _waiting(orchestrator) == 1, 30, "the re-send to wait on that saga")
        meanwhile()
        _release(api, service, point)
        return first.result(timeout=60), resent.result(timeout=60)


def _pay(url: str, order_id: int):
    def start() -> httpx.Response:
        with httpx.Client(timeout=60) as http:
            return http.post(
                f"{url}/payments",
                params={"wait": 30},
                json={"order_id": order_id},
                headers={"Idempotency-Key": f"race-{order_id}"},
            )

    return start


def test_a_payment_resent_while_its_first_step_waits_answers_the_same_saga(
    api: Api, patient_orchestrator: Process
):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)

    pay = _pay(patient_orchestrator.url, order_id)
    first, resent = _race(api, patient_orchestrator, "order", "start_payment", pay)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "COMPLETED"
    assert resent.status_code == 200, resent.text
    assert resent.json() == first.json()
    assert api.order_status(order_id) == "PAID"
    assert len(api.approved_payments(order_id)) == 1
    assert api.balance(user_id) == 3_000
    assert_invariants([first.json()["saga_id"]], [user_id])


def test_a_payment_resent_while_its_first_step_refuses_is_refused_alike(
    api: Api, patient_orchestrator: Process
):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    before = api.saga_count()

    def cancel() -> None:
        assert api.http.post(api.url("order", f"/orders/{order_id}/cancel")).status_code == 200

    pay = _pay(patient_orchestrator.url, order_id)
    first, resent = _race(
        api, patient_orchestrator, "order", "start_payment", pay, meanwhile=cancel
    )

    for answer in (first, resent):
        assert (answer.status_code, answer.json()["error"]["code"]) == (409, "order_not_payable")
    assert api.saga_count() == before  # refused by its first step: no saga stands
    assert api.order_status(order_id) == "CANCELLED"
    assert api.balance(user_id) == 10_000


def test_a_reservation_resent_while_its_first_step_waits_answers_the_same_saga(
    api: Api, patient_orchestrator: Process
):
    user_id = api.create_user(10_000)
    concert_id, seats = api.create_concert(seats=2, price=4_000)
    body = {"concert_id": concert_id, "seat_id": seats[0], "user_id": user_id}

    def start() -> httpx.Response:
        with httpx.Client(timeout=60) as http:
            return http.post(
                f"{patient_orchestrator.url}/reservations",
                params={"wait": 30},
                json=body,
                headers={"Idempotency-Key": f"race-seat-{seats[0]}"},
            )

    first, resent = _race(api, patient_orchestrator, "concert", "hold_seat", start)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "COMPLETED"
    assert resent.status_code == 200, resent.text
    assert resent.json() == first.json()
    assert api.seat_statuses(concert_id)[seats[0]] == "RESERVED"
    assert api.balance(user_id) == 6_000
    assert_invariants([first.json()["saga_id"]], [user_id])
