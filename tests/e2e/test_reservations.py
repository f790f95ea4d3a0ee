"""Concert seat reservations: a second saga definition on the same orchestrator."""

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.client import ADMIN_AUTH, Api, assert_invariants, ledger, wait_for

STEPS = ["hold_seat", "deduct_balance", "approve_payment", "confirm_reservation"]


def test_reserves_a_seat_through_all_four_steps(api: Api):
    concert_id, seats = api.create_concert(seats=5, price=5_000)
    user_id = api.create_user(10_000)

    saga = api.reserve(concert_id, seats[2], user_id)

    assert (saga["type"], saga["status"]) == ("reservation", "COMPLETED")
    assert [(s["step"], s["status"]) for s in saga["steps"]] == [(s, "SUCCEEDED") for s in STEPS]
    assert api.seat_statuses(concert_id)[seats[2]] == "RESERVED"
    assert api.balance(user_id) == 5_000
    assert [p["amount"] for p in api.reservation_payments(saga)] == [5_000]
    [event] = wait_for(
        lambda: api.platform_events({saga["saga_id"]}), 30, "the reservation.confirmed event"
    )
    assert event["type"] == "reservation.confirmed"
    assert (event["payload"]["seat_id"], event["payload"]["amount"]) == (seats[2], 5_000)


def test_a_hundred_users_racing_for_ten_seats_get_exactly_ten(api: Api):
    concert_id, seats = api.create_concert(seats=10, price=1_000)
    users = [api.create_user(3_000) for _ in range(100)]
    rng = random.Random(7)
    attempts = [(user, seat) for user in users for seat in rng.sample(seats, 3)]
    rng.shuffle(attempts)

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(
            pool.map(lambda a: api.start_reservation(concert_id, a[1], a[0], wait=120), attempts)
        )

    # 409 seat_taken: another user held or had the seat when this one's first step (the hold,
    # which is also the start's check) tried it; no saga for those.
    assert {r.status_code for r in answers} <= {200, 409}
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} <= {"seat_taken"}
    saga_ids = [r.json()["saga_id"] for r in answers if r.status_code == 200]
    statuses = [r.json()["status"] for r in answers if r.status_code == 200]
    assert statuses.count("COMPLETED") == 10
    assert set(statuses) <= {"COMPLETED", "COMPENSATED"}
    assert set(api.seat_statuses(concert_id).values()) == {"RESERVED"}
    report = assert_invariants(saga_ids, users)  # money, no seat reserved twice, ...
    assert report.money["opening"] == 300_000
    confirmed = wait_for(
        lambda: (
            [e for e in api.platform_events(set(saga_ids)) if e["type"] == "reservation.confirmed"]
            if len(api.platform_events(set(saga_ids))) == len(saga_ids)
            else None
        ),
        60,
        "every reservation event",
    )
    assert len(confirmed) == 10
    assert len({e["payload"]["seat_id"] for e in confirmed}) == 10


FAILURE_POINTS = [
    ("concert", "hold_seat", 0),
    ("user", "deduct", 1),
    ("payment", "approve_payment", 2),
    ("concert", "confirm_reservation", 3),
]


@pytest.mark.parametrize(
    ("service", "point", "failed"), FAILURE_POINTS, ids=[p for _, p, _ in FAILURE_POINTS]
)
def test_a_failed_reservation_leaves_the_seat_free_and_the_money_as_it_was(
    api: Api, service: str, point: str, failed: int
):
    concert_id, seats = api.create_concert(seats=3, price=4_000)
    user_id = api.create_user(10_000)
    api.fault(service, point, "refuse")

    saga = api.reserve(concert_id, seats[0], user_id)

    assert saga["status"] == "COMPENSATED"
    assert saga["error"]["step"] == STEPS[failed]
    expected = [(step, "action", "SUCCEEDED") for step in STEPS[:failed]]
    expected.append((STEPS[failed], "action", "REFUSED"))
    expected += [(step, "compensation", "SUCCEEDED") for step in reversed(STEPS[:failed])]
    assert [(s["step"], s["phase"], s["status"]) for s in saga["steps"]] == expected
    assert api.seat_statuses(concert_id)[seats[0]] == "AVAILABLE"
    assert api.balance(user_id) == 10_000
    assert api.reservation_payments(saga) == []
    assert sum(delta for delta, _, _ in ledger(user_id)) == 10_000
    assert_invariants([saga["saga_id"]], [user_id])


def test_refuses_unknown_concerts_and_seats_and_reserved_seats_without_a_saga(api: Api):
    concert_id, seats = api.create_concert(seats=2, price=1_000)
    other_concert, other_seats = api.create_concert(seats=1, price=1_000)
    user_id = api.create_user(10_000)
    api.reserve(concert_id, seats[0], user_id)
    before = api.saga_count()

    cases = {
        "unknown concert": (
            api.start_reservation(2**62, seats[1], user_id),
            404,
            "concert_not_found",
        ),
        "seat of another concert": (
            api.start_reservation(concert_id, other_seats[0], user_id),
            404,
            "seat_not_found",
        ),
        "reserved seat": (api.start_reservation(concert_id, seats[0], user_id), 409, "seat_taken"),
    }
    for name, (answer, status, code) in cases.items():
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), name
    bad = api.http.post(
        api.url("orchestrator", "/reservations"),
        json={"concert_id": "1", "seat_id": seats[1], "user_id": user_id},
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "validation_error")
    assert api.saga_count() == before
    listed = api.http.get(
        api.url("orchestrator", "/admin/sagas"), params={"type": "reservation"}, headers=ADMIN_AUTH
    ).json()["items"]
    assert listed and {s["type"] for s in listed} == {"reservation"}
