"""Refunds (the seed's payment cancellation), against the real services: a paid order's money
back, the refusals, the races, and a fault at every step and phase of the refund saga."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.client import Api, assert_invariants, attempts, held, newest_saga, settled, wait_for
from tools.stack import Stack

REFUND_STEPS = ["start_order_refund", "refund_payment", "credit_balance", "complete_order_refund"]


def _paid(api: Api, balance: int = 10_000, amount: int = 7_000) -> tuple[int, int, str]:
    """A user, an order of `amount` paid by a payment saga, and that saga's id."""
    user_id = api.create_user(balance)
    order_id = api.create_order(user_id, amount)
    payment = api.pay(order_id)
    assert payment["status"] == "COMPLETED"
    return user_id, order_id, payment["saga_id"]


def _payments(api: Api, order_id: int) -> list[str]:
    r = api.http.get(api.url("payment", "/payments"), params={"order_id": order_id})
    return [p["status"] for p in r.json()]


def _refunded(api: Api, user_id: int, order_id: int, payment_saga: str, refund: dict) -> None:
    assert refund["status"] == "COMPLETED", refund
    assert api.order_status(order_id) == "REFUNDED"
    assert _payments(api, order_id) == ["CANCELLED"]
    assert api.balance(user_id) == 10_000
    assert_invariants([payment_saga, refund["saga_id"]], [user_id])


def test_a_refund_gives_a_paid_orders_money_back(api: Api):
    user_id, order_id, payment_saga = _paid(api)
    assert api.balance(user_id) == 3_000

    refund = api.refund(order_id, key=f"refund-{order_id}")

    assert [(s["step"], s["phase"], s["status"]) for s in refund["steps"]] == [
        (step, "action", "SUCCEEDED") for step in REFUND_STEPS
    ]
    _refunded(api, user_id, order_id, payment_saga, refund)
    events = wait_for(
        lambda: api.platform_events({refund["saga_id"]}), 30, "the order.refunded event"
    )
    assert [e["type"] for e in events] == ["order.refunded"]
    assert events[0]["payload"] | {"saga_id": None} == {
        "saga_id": None,
        "order_id": order_id,
        "user_id": user_id,
        "amount": 7_000,
        "items": [{"product_id": 1, "quantity": 1, "unit_price": 7_000}],
        "payment_saga_id": payment_saga,
    }


def test_refuses_to_refund_an_order_that_is_not_paid_without_a_saga(api: Api):
    user_id = api.create_user(10_000)
    pending = api.create_order(user_id, 100)
    cancelled = api.create_order(user_id, 100)
    api.http.post(api.url("order", f"/orders/{cancelled}/cancel"))
    _, refunded, _ = _paid(api)
    api.refund(refunded)
    before = api.saga_count()

    answers = {
        "pending": api.start_refund(pending),
        "cancelled": api.start_refund(cancelled, key=f"refund-{cancelled}"),
        "refunded": api.start_refund(refunded),
        "refunded, another key": api.start_refund(refunded, key=f"again-{refunded}"),
        "unknown": api.start_refund(2**62),
    }

    codes = {name: (r.status_code, r.json()["error"]["code"]) for name, r in answers.items()}
    assert codes == {
        "pending": (409, "order_not_refundable"),
        "cancelled": (409, "order_not_refundable"),
        "refunded": (409, "order_not_refundable"),
        "refunded, another key": (409, "order_not_refundable"),
        "unknown": (404, "order_not_found"),
    }
    assert api.saga_count() == before
    assert api.order_status(pending) == "PENDING"


def test_the_same_key_gives_one_refund(api: Api):
    user_id, order_id, payment_saga = _paid(api)

    first = api.start_refund(order_id, key=f"once-{order_id}", wait=30)
    again = api.start_refund(order_id, key=f"once-{order_id}", wait=30)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    _refunded(api, user_id, order_id, payment_saga, api.saga(first.json()["saga_id"], "/refunds"))


def test_a_paid_order_being_refunded_cannot_be_paid_or_refunded_again(api: Api):
    user_id, order_id, payment_saga = _paid(api)
    api.fault("order", "start_refund", "hold")  # the refund's first step waits in the service
    with ThreadPoolExecutor(1) as pool:
        refunding = pool.submit(api.start_refund, order_id, f"slow-{order_id}", 30)
        wait_for(lambda: held(api, "order", "start_refund") == 1, 30, "the refund to start")
        second = api.start_refund(order_id, key=f"other-{order_id}")
        api.clear_faults()
        refund = refunding.result(timeout=60)
    payment = api.start_payment(order_id)

    assert (second.status_code, second.json()["error"]["code"]) == (409, "refund_in_progress")
    assert (payment.status_code, payment.json()["error"]["code"]) == (409, "order_not_payable")
    _refunded(api, user_id, order_id, payment_saga, api.saga(refund.json()["saga_id"], "/refunds"))


def test_a_refund_and_a_payment_of_one_order_started_at_once_never_both_apply(api: Api):
    user_id = api.create_user(100_000)
    orders = [api.create_order(user_id, 1_000) for _ in range(12)]

    def race(order_id: int) -> tuple[int, int]:
        with ThreadPoolExecutor(2) as pool:
            payment = pool.submit(api.start_payment, order_id, f"pay-{order_id}", 30)
            refund = pool.submit(api.start_refund, order_id, f"refund-{order_id}", 30)
            return payment.result(), refund.result()

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(race, orders))

    saga_ids = []
    for order_id, (payment, refund) in zip(orders, answers, strict=True):
        assert payment.status_code == 200, payment.text
        saga_ids.append(payment.json()["saga_id"])
        if refund.status_code == 200:  # the payment was done before the refund looked
            saga_ids.append(refund.json()["saga_id"])
            assert api.order_status(order_id) == "REFUNDED"
        else:
            assert (refund.status_code, refund.json()["error"]["code"]) == (
                409,
                "order_not_refundable",
            )
            assert api.order_status(order_id) == "PAID"
    assert_invariants(saga_ids, [user_id])


# -- a fault at every step and phase ------------------------------------------------------------

# (service, fault point) of each call of the refund saga, and what a refusal there leads to.
POINTS = {
    "start_order_refund": ("order", "start_refund"),
    "refund_payment": ("payment", "refund_payment"),
    "credit_balance": ("user", "charge_back"),
    "complete_order_refund": ("order", "complete_refund"),
    "release_order_refund": ("order", "release_refund"),  # reached when the pivot is refused
}
REFUSED_ENDS = {
    "start_order_refund": "COMPENSATED",  # refused: nothing to undo
    "refund_payment": "COMPENSATED",  # the pivot refused: the order goes back to PAID
    "credit_balance": "COMPLETED",  # past the pivot: stuck, then an operator's retry
    "complete_order_refund": "COMPLETED",
    "release_order_refund": "COMPENSATED",  # a compensation refused: stuck, then a retry
}


def _run_with_fault(api: Api, step: str, mode: str) -> tuple[dict, int, int, str]:
    user_id, order_id, payment_saga = _paid(api)
    if step == "release_order_refund":
        api.fault("payment", "refund_payment", "refuse")
    service, point = POINTS[step]
    api.fault(service, point, mode, delay_ms=1_500 if mode == "delay" else 0)
    r = api.start_refund(order_id, key=f"fault-{order_id}")  # it may stop short of final
    assert r.status_code == 202, r.text
    return settled(api, r.json()["saga_id"], "/refunds"), user_id, order_id, payment_saga


@pytest.mark.parametrize("step", list(POINTS))
@pytest.mark.parametrize("mode", ["refuse", "lose_response", "delay"])
def test_a_fault_at_any_step_of_a_refund_leaves_the_money_whole(api: Api, step: str, mode: str):
    refund, user_id, order_id, payment_saga = _run_with_fault(api, step, mode)

    expected = (
        REFUSED_ENDS[step] if mode == "refuse" or step == "release_order_refund" else ("COMPLETED")
    )
    assert refund["status"] == expected, attempts(refund)
    if expected == "COMPLETED":
        _refunded(api, user_id, order_id, payment_saga, refund)
    else:
        assert api.order_status(order_id) == "PAID"
        assert _payments(api, order_id) == ["APPROVED"]
        assert api.balance(user_id) == 3_000
        assert_invariants([payment_saga, refund["saga_id"]], [user_id])


@pytest.mark.parametrize("step", [*REFUND_STEPS, "release_order_refund"])
def test_an_orchestrator_killed_mid_refund_finishes_it_after_restart(
    api: Api, stack: Stack, step: str
):
    user_id, order_id, payment_saga = _paid(api)
    undoing = step == "release_order_refund"
    if undoing:  # the pivot refused: the kill comes during the compensation of step 1
        api.fault("payment", "refund_payment", "refuse")
    service, point = POINTS[step]
    api.fault(service, point, "delay", delay_ms=700)  # in flight long enough to be seen
    in_step, phase = ("start_order_refund", "compensation") if undoing else (step, "action")
    orchestrator = stack.processes["orchestrator"]
    with ThreadPoolExecutor(1) as pool:
        pool.submit(api.start_refund, order_id, f"kill-{order_id}")
        refund_id = wait_for(
            lambda: newest_saga(api, "refund", order_id=order_id), 15, "the refund to be recorded"
        )

        def in_flight() -> bool:
            return any(
                (s["step"], s["phase"], s["status"]) == (in_step, phase, "STARTED")
                for s in api.saga(refund_id, "/refunds")["steps"]
            )

        wait_for(in_flight, 15, f"{step} to be in flight")
        orchestrator.kill()
    orchestrator.restart()

    answer = api.start_refund(order_id, key=f"kill-{order_id}", wait=30)

    final = "COMPENSATED" if undoing else "COMPLETED"
    assert answer.json() == {"saga_id": refund_id, "status": final}
    refund = api.saga(refund_id, "/refunds")
    assert "INTERRUPTED" in {s["status"] for s in refund["steps"]}
    if undoing:
        assert api.order_status(order_id) == "PAID"
        assert api.balance(user_id) == 3_000
        assert_invariants([payment_saga, refund_id], [user_id])
    else:
        _refunded(api, user_id, order_id, payment_saga, refund)
