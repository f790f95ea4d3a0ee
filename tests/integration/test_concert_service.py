"""The concert service in-process on PostgreSQL: concerts and seats, holds that expire, and
confirmation that can never double-book a seat."""

import pytest
from fastapi.testclient import TestClient

from concert_service.app import create_app
from concert_service.config import Settings
from tests.integration.support import SERVICE, new_key

pytestmark = pytest.mark.usefixtures("databases")


def _client(hold_seconds: float) -> TestClient:
    return TestClient(create_app(Settings(hold_seconds=hold_seconds)))


def _concert(client: TestClient, seats: int = 2, price: int = 1_000) -> dict:
    r = client.post("/concerts", json={"title": "Live", "seats": seats, "price": price})
    assert r.status_code == 201, r.text
    return r.json()


def _hold(client, concert, seat, user=1, key=None):
    return client.post(
        f"/concerts/{concert['id']}/seats/{seat['id']}/holds",
        json={"user_id": user},
        headers={**SERVICE, "Idempotency-Key": key or new_key()},
    )


def _confirm(client, reservation_id, key=None):
    return client.post(
        f"/reservations/{reservation_id}/confirm",
        headers={**SERVICE, "Idempotency-Key": key or new_key()},
    )


def _statuses(client, concert) -> list[str]:
    return [s["status"] for s in client.get(f"/concerts/{concert['id']}/seats").json()]


def test_creates_a_concert_with_numbered_available_seats():
    with _client(60) as client:
        concert = _concert(client, seats=3, price=5_000)
        assert concert["title"] == "Live"
        assert [(s["number"], s["status"]) for s in concert["seats"]] == [
            (1, "AVAILABLE"),
            (2, "AVAILABLE"),
            (3, "AVAILABLE"),
        ]
        assert client.get("/concerts/999999999").json()["error"]["code"] == "concert_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x", "seats": 0, "price": 1},
        {"title": "x", "seats": "3", "price": 1},
        {"title": "x", "seats": 3, "price": 0},
        {"title": "x", "seats": 3, "price": 2**63},
        {"title": "", "seats": 3, "price": 1},
        {"title": "x", "seats": 10_001, "price": 1},
    ],
    ids=repr,
)
def test_refuses_bad_concerts_with_422(body):
    with _client(60) as client:
        r = client.post("/concerts", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")


def test_a_held_seat_cannot_be_held_again_until_released():
    with _client(60) as client:
        concert = _concert(client)
        seat = concert["seats"][0]
        first_key = new_key()
        assert _hold(client, concert, seat, key=first_key).status_code == 201
        taken = _hold(client, concert, seat, user=2)
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "seat_taken")
        assert _statuses(client, concert)[0] == "HELD"
        released = client.post(
            "/holds/release",
            json={"hold_key": first_key},
            headers={**SERVICE, "Idempotency-Key": new_key()},
        )
        assert released.json()["released"] is True
        assert _hold(client, concert, seat, user=2).status_code == 201


def test_an_expired_hold_is_superseded_and_can_never_be_confirmed():
    """The saga holding the seat stalled past the expiry; another reservation took the seat.
    The stalled one's confirmation is refused: no double booking."""
    with _client(0) as client:  # every hold expires at once
        concert = _concert(client)
        seat = concert["seats"][0]
        stalled = _hold(client, concert, seat, user=1).json()
        assert _statuses(client, concert)[0] == "AVAILABLE"  # its hold ran out

        taker = _hold(client, concert, seat, user=2)
        assert taker.status_code == 201

        late = _confirm(client, stalled["reservation_id"])
        assert (late.status_code, late.json()["error"]["code"]) == (409, "hold_lost")
        assert _confirm(client, taker.json()["reservation_id"]).status_code == 200
        assert _statuses(client, concert)[0] == "RESERVED"
        again = _hold(client, concert, seat, user=3)
        assert (again.status_code, again.json()["error"]["code"]) == (409, "seat_taken")


def test_an_expired_hold_nobody_took_can_still_be_confirmed():
    with _client(0) as client:
        concert = _concert(client)
        hold = _hold(client, concert, concert["seats"][1]).json()
        assert _confirm(client, hold["reservation_id"]).status_code == 200
        assert _statuses(client, concert)[1] == "RESERVED"


def test_a_release_before_its_hold_leaves_a_tombstone():
    with _client(60) as client:
        concert = _concert(client)
        hold_key = new_key()
        early = client.post(
            "/holds/release",
            json={"hold_key": hold_key},
            headers={**SERVICE, "Idempotency-Key": new_key()},
        )
        assert early.json() == {"reservation_id": None, "released": False}
        late = _hold(client, concert, concert["seats"][0], key=hold_key)
        assert (late.status_code, late.json()["error"]["code"]) == (409, "action_compensated")
        assert _statuses(client, concert)[0] == "AVAILABLE"


def _cancel(client, reservation_id, action, key=None, body=None):
    return client.post(
        f"/reservations/{reservation_id}/cancel-{action}",
        json=body,
        headers={**SERVICE, "Idempotency-Key": key or new_key()},
    )


def _confirmed(client, concert, seat) -> int:
    reservation_id = _hold(client, concert, seat).json()["reservation_id"]
    assert _confirm(client, reservation_id).status_code == 200
    return reservation_id


def test_a_cancelled_reservation_keeps_its_seat_until_done_then_frees_it_for_anyone():
    with _client(hold_seconds=60) as client:
        concert = _concert(client)
        seat = concert["seats"][0]
        reservation_id = _confirmed(client, concert, seat)

        started = _cancel(client, reservation_id, "start")
        meanwhile = _hold(client, concert, seat, user=2)
        assert started.json()["status"] == "CANCELLING"
        assert meanwhile.status_code == 409  # the seat is still taken while cancelling
        assert _statuses(client, concert)[0] == "RESERVED"
        assert _cancel(client, reservation_id, "complete").json()["status"] == "CANCELLED"
        assert _statuses(client, concert)[0] == "AVAILABLE"
        assert _hold(client, concert, seat, user=2).status_code == 201  # anyone's again


def test_only_a_confirmed_reservation_can_be_cancelled():
    with _client(hold_seconds=60) as client:
        concert = _concert(client)
        held = _hold(client, concert, concert["seats"][0]).json()["reservation_id"]
        refused = _cancel(client, held, "start")
        assert (refused.status_code, refused.json()["error"]["code"]) == (
            409,
            "reservation_not_cancellable",
        )
        assert _cancel(client, 2**62, "start").status_code == 404


def test_a_cancellation_release_gives_it_back_confirmed_once_or_leaves_a_tombstone():
    with _client(hold_seconds=60) as client:
        concert = _concert(client)
        reservation_id = _confirmed(client, concert, concert["seats"][0])
        start_key = new_key()
        _cancel(client, reservation_id, "start", start_key)
        back = _cancel(client, reservation_id, "release", body={"start_key": start_key})
        again = _cancel(client, reservation_id, "release", body={"start_key": start_key})
        assert (back.json()["released"], again.json()["released"]) == (True, False)
        assert back.json()["status"] == "CONFIRMED"

        early_key = new_key()
        early = _cancel(client, reservation_id, "release", body={"start_key": early_key})
        late = _cancel(client, reservation_id, "start", early_key)
        assert early.json()["released"] is False
        assert (late.status_code, late.json()["error"]["code"]) == (409, "action_compensated")
        assert _statuses(client, concert)[0] == "RESERVED"


def test_a_release_naming_another_reservations_start_or_another_step_is_refused():
    """A compensation undoes only the action it compensates, of its own reservation: anything
    else is a 422 that changes nothing."""
    with _client(hold_seconds=60) as client:
        concert = _concert(client)
        mine = _confirmed(client, concert, concert["seats"][0])
        theirs = _confirmed(client, concert, concert["seats"][1])
        my_start, their_start = new_key(), new_key()
        _cancel(client, mine, "start", my_start)
        _cancel(client, theirs, "start", their_start)

        wrong = _cancel(client, mine, "release", body={"start_key": their_start})
        not_a_hold = client.post(
            "/holds/release",
            json={"hold_key": my_start},
            headers={**SERVICE, "Idempotency-Key": new_key()},
        )

        for answer in (wrong, not_a_hold):
            assert (answer.status_code, answer.json()["error"]["code"]) == (422, "not_that_action")
        back = _cancel(client, mine, "release", body={"start_key": my_start})
        assert (back.json()["released"], back.json()["status"]) == (True, "CONFIRMED")
        theirs_back = _cancel(client, theirs, "release", body={"start_key": their_start})
        assert theirs_back.json()["released"] is True
