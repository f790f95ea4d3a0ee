"""A start re-sent with its key answers its own saga, even when the check that could refuse it
(the order's status, the seat's) ran after the first request's saga finished.

The race, played in a fixed order with `hold` fault points on the reads the starts make: the
first request's read is held; the re-send passes its key lookup (no saga yet) and its read is
held too; the first request goes on, and its saga completes (the order is PAID, the seat
RESERVED); then the re-send's read goes on, and finds a paid order or a taken seat."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.client import SERVICE_AUTH, Api, assert_invariants, held, wait_for
from tools.stack import Process, Stack, orchestrator_process


@pytest.fixture
def patient_orchestrator(stack: Stack, tmp_path) -> Process:
    """An orchestrator whose reads wait longer than the holds last (the suite's waits 1 s)."""
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


def _release_one(api: Api, service: str, point: str) -> None:
    r = api.http.post(
        api.url(service, "/_faults/release"), json={"point": point}, headers=SERVICE_AUTH
    )
    assert r.json() == {"released": 1}


def _race(api: Api, service: str, point: str, start: Callable[[], httpx.Response]):
    """Run `start` twice, the second overtaking the first as described above; return both
    answers."""
    api.fault(service, point, "hold", times=2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(start)
        wait_for(lambda: held(api, service, point) == 1, 30, "the first start's read to be held")
        resent = pool.submit(start)
        wait_for(lambda: held(api, service, point) == 2, 30, "the re-send's read to be held")
        _release_one(api, service, point)
        first_answer = first.result(timeout=60)
        _release_one(api, service, point)
        return first_answer, resent.result(timeout=60)


def test_a_payment_resent_with_its_key_answers_its_saga_after_the_order_was_paid(
    api: Api, patient_orchestrator: Process
):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)

    def start() -> httpx.Response:
        with httpx.Client(timeout=60) as http:
            return http.post(
                f"{patient_orchestrator.url}/payments",
                params={"wait": 30},
                json={"order_id": order_id},
                headers={"Idempotency-Key": f"race-{order_id}"},
            )

    first, resent = _race(api, "order", "get_order", start)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "COMPLETED"
    assert resent.status_code == 200, resent.text
    assert resent.json() == first.json()
    assert api.order_status(order_id) == "PAID"
    assert len(api.approved_payments(order_id)) == 1
    assert api.balance(user_id) == 3_000
    assert_invariants([first.json()["saga_id"]], [user_id])


def test_a_reservation_resent_with_its_key_answers_its_saga_after_the_seat_was_taken(
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

    first, resent = _race(api, "concert", "get_concert", start)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "COMPLETED"
    assert resent.status_code == 200, resent.text
    assert resent.json() == first.json()
    assert api.seat_statuses(concert_id)[seats[0]] == "RESERVED"
    assert api.balance(user_id) == 6_000
    assert_invariants([first.json()["saga_id"]], [user_id])
