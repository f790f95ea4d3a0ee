"""Many sagas at once: the balance is never overdrawn and an order is never paid twice."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from tests.e2e.client import Api, ledger, wait_for


def _at_once(count: int, call):
    """Run `call(i)` for i in range(count) from `count` threads released together."""
    barrier = Barrier(count)

    def run(i: int):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_fifty_sagas_for_one_balance_that_covers_twenty(api: Api):
    user_id = api.create_user(2_000)
    orders = [api.create_order(user_id, 100) for _ in range(50)]

    answers = _at_once(50, lambda i: api.start_payment(orders[i], wait=60))

    assert {r.status_code for r in answers} == {200}
    sagas = [api.saga(r.json()["saga_id"]) for r in answers]
    completed = [s for s in sagas if s["status"] == "COMPLETED"]
    compensated = [s for s in sagas if s["status"] == "COMPENSATED"]
    assert (len(completed), len(compensated)) == (20, 30)
    assert {s["error"]["code"] for s in compensated} == {"insufficient_balance"}
    assert api.balance(user_id) == 0
    # Never negative at any point: every balance the ledger recorded, in commit order.
    entries = ledger(user_id)
    assert min(balance for _, balance, _ in entries) >= 0
    assert sum(delta for delta, _, _ in entries) == 0
    for saga in sagas:
        paid = saga["status"] == "COMPLETED"
        assert api.order_status(saga["order_id"]) == ("PAID" if paid else "PENDING")
        assert len(api.approved_payments(saga["order_id"])) == (1 if paid else 0)


def test_concurrent_starts_without_a_key_share_one_saga(api: Api):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)

    answers = _at_once(8, lambda _: api.start_payment(order_id))

    started = [r for r in answers if r.status_code == 202]
    # A start that arrives after the saga completed finds the order PAID: refused, no saga.
    late = [r for r in answers if r.status_code != 202]
    assert started
    assert len({r.json()["saga_id"] for r in started}) == 1
    assert all(r.status_code == 409 for r in late)
    saga_id = started[0].json()["saga_id"]
    wait_for(lambda: api.saga(saga_id)["status"] == "COMPLETED", what="the saga to complete")
    assert api.start_payment(order_id).status_code == 409  # paid: no second saga
    assert [delta for delta, _, _ in ledger(user_id)] == [10_000, -7_000]
    assert len(api.approved_payments(order_id)) == 1


def test_concurrent_starts_with_one_key_share_one_saga(api: Api):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)

    answers = _at_once(8, lambda _: api.start_payment(order_id, key=f"same-{order_id}"))

    assert {r.status_code for r in answers} == {202}
    assert len({r.json()["saga_id"] for r in answers}) == 1
    final = api.start_payment(order_id, key=f"same-{order_id}", wait=30)
    assert final.json()["status"] == "COMPLETED"
    assert [delta for delta, _, _ in ledger(user_id)] == [10_000, -7_000]
