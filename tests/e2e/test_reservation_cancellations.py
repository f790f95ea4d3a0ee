"""Cancelling a confirmed seat reservation, against the real services: the seat free for anyone
again and the price back, the refusals, and a fault at every step and phase of the saga."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.client import Api, assert_invariants, attempts, newest_saga, settled, wait_for
from tools.stack import Stack

STEPS = ["start_cancellation", "refund_payment", "credit_balance", "complete_cancellation"]
POINTS = {
    "start_cancellation": ("concert", "start_cancellation"),
    "refund_payment": ("payment", "refund_payment"),
    "credit_balance": ("user", "charge_back"),
    "complete_cancellation": ("concert", "complete_cancellation"),
    "release_cancellation": ("concert", "release_cancellation"),  # when the pivot is refused
}
REFUSED_ENDS = {
    "start_cancellation": "COMPENSATED",
    "refund_payment": "COMPENSATED",
    "credit_balance": "COMPLETED",  # past the pivot: stuck, then an operator's retry
    "complete_cancellation": "COMPLETED",
    "release_cancellation": "COMPENSATED",
}
PRICE = 4_000


def _reserved(api: Api) -> tuple[int, int, int, str]:
    """A user with a confirmed seat: (user, concert, seat, reservation saga id)."""
    user_id = api.create_user(10_000)
    concert_id, seats = api.create_concert(seats=2, price=PRICE)
    reservation = api.reserve(concert_id, seats[0], user_id)
    assert reservation["status"] == "COMPLETED"
    return user_id, concert_id, seats[0], reservation["saga_id"]


def _cancelled(api: Api, user_id: int, concert_id: int, seat_id: int, sagas: list[str]) -> None:
    assert api.seat_statuses(concert_id)[seat_id] == "AVAILABLE"
    assert api.balance(user_id) == 10_000
    reservation = api.saga(sagas[0], "/reservations")
    assert [p["status"] for p in api.reservation_payments(reservation)] == []
    assert_invariants(sagas, [user_id])


def test_a_cancelled_reservation_frees_its_seat_for_anyone_and_gives_the_price_back(api: Api):
    user_id, concert_id, seat_id, reservation = _reserved(api)
    assert api.balance(user_id) == 6_000

    answer = api.cancel_reservation(reservation, key=f"cancel-{reservation}", wait=30)

    assert answer.status_code == 200, answer.text
    cancellation = api.saga(answer.json()["saga_id"], "/reservations")  # shown there too
    assert cancellation["type"] == "reservation_cancellation"
    assert [(s["step"], s["status"]) for s in cancellation["steps"]] == [
        (step, "SUCCEEDED") for step in STEPS
    ]
    _cancelled(api, user_id, concert_id, seat_id, [reservation, cancellation["saga_id"]])
    events = wait_for(
        lambda: api.platform_events({cancellation["saga_id"]}), 30, "reservation.cancelled"
    )
    assert [e["type"] for e in events] == ["reservation.cancelled"]
    assert events[0]["payload"]["amount"] == PRICE
    assert events[0]["payload"]["user_id"] == user_id
    assert events[0]["payload"]["seat_id"] == seat_id

    other = api.create_user(10_000)
    again = api.reserve(concert_id, seat_id, other)
    assert again["status"] == "COMPLETED"
    assert api.seat_statuses(concert_id)[seat_id] == "RESERVED"
    assert api.balance(other) == 6_000
    assert_invariants([reservation, cancellation["saga_id"], again["saga_id"]], [user_id, other])


def test_refuses_a_cancellation_that_cannot_be_made_without_a_saga(api: Api):
    user_id, _, _, reservation = _reserved(api)
    api.cancel_reservation(reservation, wait=30)
    concert_id, seats = api.create_concert(seats=1, price=20_000)  # more than the balance
    failed = api.reserve(concert_id, seats[0], user_id)
    assert failed["status"] == "COMPENSATED"
    payment = api.pay(api.create_order(user_id, 100))
    before = api.saga_count()

    answers = {
        "cancelled": api.cancel_reservation(reservation),
        "cancelled, another key": api.cancel_reservation(reservation, key="another"),
        "compensated": api.cancel_reservation(failed["saga_id"]),
        "a payment": api.cancel_reservation(payment["saga_id"]),
        "unknown": api.cancel_reservation("00000000-0000-4000-8000-000000000000"),
        "not an id": api.cancel_reservation("nope"),
    }

    codes = {name: (r.status_code, r.json()["error"]["code"]) for name, r in answers.items()}
    assert codes == {
        "cancelled": (409, "reservation_not_cancellable"),
        "cancelled, another key": (409, "reservation_not_cancellable"),
        "compensated": (409, "reservation_not_cancellable"),
        "a payment": (404, "saga_not_found"),
        "unknown": (404, "saga_not_found"),
        "not an id": (404, "saga_not_found"),
    }
    assert api.saga_count() == before


def test_the_same_key_gives_one_cancellation(api: Api):
    user_id, concert_id, seat_id, reservation = _reserved(api)

    with ThreadPoolExecutor(3) as pool:
        answers = list(
            pool.map(lambda _: api.cancel_reservation(reservation, key="once", wait=30), range(3))
        )

    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["saga_id"] for r in answers}) == 1
    _cancelled(api, user_id, concert_id, seat_id, [reservation, answers[0].json()["saga_id"]])


@pytest.mark.parametrize("step", list(POINTS))
@pytest.mark.parametrize("mode", ["refuse", "lose_response", "delay"])
def test_a_fault_at_any_step_of_a_cancellation_leaves_seat_and_money_whole(
    api: Api, step: str, mode: str
):
    user_id, concert_id, seat_id, reservation = _reserved(api)
    if step == "release_cancellation":
        api.fault("payment", "refund_payment", "refuse")
    service, point = POINTS[step]
    api.fault(service, point, mode, delay_ms=1_500 if mode == "delay" else 0)

    answer = api.cancel_reservation(reservation, key=f"fault-{reservation}")
    assert answer.status_code == 202, answer.text
    cancellation = settled(api, answer.json()["saga_id"], "/reservations")

    undone = mode == "refuse" or step == "release_cancellation"
    expected = REFUSED_ENDS[step] if undone else "COMPLETED"
    assert cancellation["status"] == expected, attempts(cancellation)
    sagas = [reservation, cancellation["saga_id"]]
    if expected == "COMPLETED":
        _cancelled(api, user_id, concert_id, seat_id, sagas)
    else:
        assert api.seat_statuses(concert_id)[seat_id] == "RESERVED"
        assert api.balance(user_id) == 10_000 - PRICE
        assert_invariants(sagas, [user_id])


@pytest.mark.parametrize("step", [*STEPS, "release_cancellation"])
def test_an_orchestrator_killed_mid_cancellation_finishes_it_after_restart(
    api: Api, stack: Stack, step: str
):
    user_id, concert_id, seat_id, reservation = _reserved(api)
    undoing = step == "release_cancellation"
    if undoing:  # the pivot refused: the kill comes during the compensation of step 1
        api.fault("payment", "refund_payment", "refuse")
    service, point = POINTS[step]
    api.fault(service, point, "delay", delay_ms=700)
    in_step, phase = ("start_cancellation", "compensation") if undoing else (step, "action")
    orchestrator = stack.processes["orchestrator"]
    with ThreadPoolExecutor(1) as pool:
        pool.submit(api.cancel_reservation, reservation, f"kill-{reservation}")
        saga_id = wait_for(
            lambda: newest_saga(api, "reservation_cancellation", seat_id=seat_id), 15, "a saga"
        )

        def in_flight() -> bool:
            return any(
                (s["step"], s["phase"], s["status"]) == (in_step, phase, "STARTED")
                for s in api.saga(saga_id, "/reservations")["steps"]
            )

        wait_for(in_flight, 15, f"{step} to be in flight")
        orchestrator.kill()
    orchestrator.restart()

    answer = api.cancel_reservation(reservation, key=f"kill-{reservation}", wait=30)

    final = "COMPENSATED" if undoing else "COMPLETED"
    assert answer.json() == {"saga_id": saga_id, "status": final}
    cancellation = api.saga(saga_id, "/reservations")
    assert "INTERRUPTED" in {s["status"] for s in cancellation["steps"]}
    if undoing:
        assert api.seat_statuses(concert_id)[seat_id] == "RESERVED"
        assert api.balance(user_id) == 10_000 - PRICE
        assert_invariants([reservation, saga_id], [user_id])
    else:
        _cancelled(api, user_id, concert_id, seat_id, [reservation, saga_id])
