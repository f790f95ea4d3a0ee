"""An action that arrives after its compensation is refused, never applied."""

from tests.e2e.client import Api, assert_invariants, delayed_in_flight, ledger, wait_for


def test_a_deduction_slower_than_every_retry_arrives_after_its_charge_back_and_is_refused(
    api: Api,
):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    # Every deduction attempt is held 8 s in the user service, far past the client's 1 s
    # timeout: the orchestrator gives up (4 attempts, about 4.5 s) and compensates by the
    # deduction's key while all four are still waiting to run.
    api.fault("user", "deduct", "delay", times=None, delay_ms=8_000)

    saga = api.pay(order_id)

    assert saga["status"] == "COMPENSATED"
    assert saga["error"]["code"] == "timeout"
    charge_back = next(
        s for s in saga["steps"] if (s["step"], s["phase"]) == ("deduct_balance", "compensation")
    )
    assert charge_back["response"]["reversed"] is False  # nothing to undo: a tombstone instead
    assert delayed_in_flight(api, "user") > 0  # the deductions have not run yet...
    wait_for(lambda: delayed_in_flight(api, "user") == 0, 30, "the late deductions to arrive")
    # ...and when they do, each is refused by the tombstone: the money never moved.
    assert [reason for _, _, reason in ledger(user_id)] == ["OPENING"]
    assert api.balance(user_id) == 10_000
    assert api.order_status(order_id) == "PENDING"
    assert_invariants([saga["saga_id"]], [user_id])
