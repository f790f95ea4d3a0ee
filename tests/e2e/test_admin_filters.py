"""An operator finds sagas by the business keys they carry and by the request that started
them; a filter the list does not know is refused, never ignored."""

import uuid

import pytest

from tests.e2e.client import ADMIN_AUTH, Api


def _listed(api: Api, **filters) -> list[dict]:
    page = api.http.get(api.url("orchestrator", "/admin/sagas"), params=filters, headers=ADMIN_AUTH)
    assert page.status_code == 200, page.text
    return page.json()["items"]


def test_sagas_are_found_by_order_user_and_request(api: Api):
    user_id, other_user = api.create_user(10_000), api.create_user(10_000)
    order_id = api.create_order(user_id, 1_000)
    other_order = api.create_order(other_user, 1_000)
    request_id = f"find-me-{uuid.uuid4().hex}"
    paid = api.http.post(
        api.url("orchestrator", "/payments"),
        params={"wait": 30},
        json={"order_id": order_id},
        headers={"X-Request-ID": request_id},
    ).json()["saga_id"]
    api.pay(other_order)
    refund = api.refund(order_id)["saga_id"]

    by_order = _listed(api, order_id=order_id)
    assert [s["saga_id"] for s in by_order] == [refund, paid]  # newest first
    # The payment learned its user from the order, after its start: found by it all the same.
    assert [s["saga_id"] for s in _listed(api, user_id=user_id)] == [refund, paid]
    assert [s["user_id"] for s in by_order] == [user_id, user_id]
    assert [s["saga_id"] for s in _listed(api, user_id=user_id, type="payment")] == [paid]
    assert [s["saga_id"] for s in _listed(api, request_id=request_id)] == [paid]
    assert _listed(api, order_id=order_id, user_id=other_user) == []  # every key must match


def test_reservations_are_found_by_concert_and_seat(api: Api):
    user_id = api.create_user(10_000)
    concert_id, seats = api.create_concert(3, 1_000)
    first = api.reserve(concert_id, seats[0], user_id)["saga_id"]
    second = api.reserve(concert_id, seats[1], user_id)["saga_id"]

    assert [s["saga_id"] for s in _listed(api, concert_id=concert_id)] == [second, first]
    assert [s["saga_id"] for s in _listed(api, concert_id=concert_id, seat_id=seats[0])] == [first]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"orderid": "5"}, "unknown_filter"),  # a typo is not "every saga"
        ({"order_id": "five"}, "validation_error"),
        ({"user_id": "0"}, "validation_error"),
        ({"request_id": "x" * 129}, "validation_error"),
    ],
    ids=["unknown filter", "not a number", "not an id", "too long"],
)
def test_a_filter_it_cannot_apply_is_a_422(api: Api, params: dict, code: str):
    answer = api.http.get(
        api.url("orchestrator", "/admin/sagas"), params=params, headers=ADMIN_AUTH
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == code
