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


def test_a_refusal_after_a_timed_out_attempt_is_compensated_by_its_key_too(api: Api):
    """The first deduction attempt times out; the retry is refused. The refusal alone does not
    prove the first attempt did nothing, so the deduction is also compensated by its key."""
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    api.fault("user", "deduct", "delay", delay_ms=1_500)  # held past the 1 s client timeout
    api.fault("user", "deduct", "refuse")  # whichever attempt claims the key first is refused

    answer = api.start_payment(order_id, key=f"refused-{order_id}", wait=30)
    saga_id = answer.json()["saga_id"]

    saga = api.saga(saga_id)
    assert saga["status"] == "COMPENSATED"
    deductions = [
        s["status"]
        for s in saga["steps"]
        if (s["step"], s["phase"]) == ("deduct_balance", "action")
    ]
    assert deductions == ["FAILED", "REFUSED"]
    assert [(s["step"], s["phase"], s["status"]) for s in saga["steps"]][-2:] == [
        ("deduct_balance", "compensation", "SUCCEEDED"),
        ("start_order_payment", "compensation", "SUCCEEDED"),
    ]
    wait_for(lambda: delayed_in_flight(api, "user") == 0, 10, "the held attempt to finish")
    assert api.balance(user_id) == 10_000
    assert_invariants([saga_id], [user_id])
