"""The payment saga across real processes: the happy path, the seed notes' four failure points,
transient faults, unknown outcomes, and a compensation that needs an operator."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.client import ADMIN_AUTH, Api, attempts, held, ledger, wait_for

ACTIONS = ["start_order_payment", "deduct_balance", "approve_payment", "complete_order_payment"]


def _opened(api: Api, balance: int = 10_000, amount: int = 7_000) -> tuple[int, int]:
    user_id = api.create_user(balance)
    return user_id, api.create_order(user_id, amount)


def _assert_nothing_happened(api: Api, user_id: int, order_id: int, balance: int) -> None:
    assert api.order_status(order_id) == "PENDING"
    assert api.balance(user_id) == balance
    assert api.approved_payments(order_id) == []


def test_pays_an_order_through_all_four_steps(api: Api):
    user_id, order_id = _opened(api)

    saga = api.pay(order_id)

    assert saga["status"] == "COMPLETED"
    assert saga["error"] is None
    assert attempts(saga) == [(step, "action", "SUCCEEDED") for step in ACTIONS]
    assert api.order_status(order_id) == "PAID"
    assert api.balance(user_id) == 3_000
    [payment] = api.approved_payments(order_id)
    assert (payment["amount"], payment["user_id"]) == (7_000, user_id)
    assert [delta for delta, _, _ in ledger(user_id)] == [10_000, -7_000]


# The seed notes' four failure cases: (service, fault point, the step that fails)
FAILURE_POINTS = [
    ("order", "start_payment", 0),
    ("user", "deduct", 1),
    ("payment", "approve_payment", 2),
    ("order", "complete_payment", 3),
]


@pytest.mark.parametrize(
    ("service", "point", "failed"), FAILURE_POINTS, ids=[p for _, p, _ in FAILURE_POINTS]
)
def test_compensates_earlier_steps_in_reverse_when_a_step_fails(
    api: Api, service: str, point: str, failed: int
):
    user_id, order_id = _opened(api)
    api.fault(service, point, "refuse")

    saga = api.pay(order_id)

    assert saga["status"] == "COMPENSATED"
    assert saga["error"]["code"] == "injected_failure"
    assert saga["error"]["step"] == ACTIONS[failed]
    expected = [(step, "action", "SUCCEEDED") for step in ACTIONS[:failed]]
    expected.append((ACTIONS[failed], "action", "REFUSED"))  # a refusal is not retried
    expected += [(step, "compensation", "SUCCEEDED") for step in reversed(ACTIONS[:failed])]
    assert attempts(saga) == expected
    _assert_nothing_happened(api, user_id, order_id, 10_000)
    # The money moved out and back exactly once each, and never below zero.
    deltas = [delta for delta, _, _ in ledger(user_id)]
    assert deltas == ([10_000, -7_000, 7_000] if failed >= 2 else [10_000])


def test_an_order_cancelled_while_its_first_step_waits_is_refused_without_a_saga(api: Api):
    user_id, order_id = _opened(api)
    before = api.saga_count()
    # The saga's first step (the order's lock, which is also the start's check) is held in the
    # order service; the user cancels the order meanwhile.
    api.fault("order", "start_payment", "hold")
    with ThreadPoolExecutor(1) as pool:
        start = pool.submit(api.start_payment, order_id, f"cancel-{order_id}")
        wait_for(lambda: held(api, "order", "start_payment") == 1, 30, "the first step held")
        cancelled = api.http.post(api.url("order", f"/orders/{order_id}/cancel"))
        api.clear_faults()
        started = start.result(timeout=30)

    assert cancelled.status_code == 200
    assert (started.status_code, started.json()["error"]["code"]) == (409, "order_not_payable")
    assert api.saga_count() == before  # refused by its first step: no saga stands
    assert api.order_status(order_id) == "CANCELLED"
    assert api.balance(user_id) == 10_000
    assert api.approved_payments(order_id) == []


@pytest.mark.parametrize(("mode", "delay_ms"), [("error", 0), ("delay", 1_500)])
def test_retries_a_transient_fault_under_the_same_key(api: Api, mode: str, delay_ms: int):
    """503 once, or an answer slower than the client's 1 s timeout once: retried, paid once."""
    user_id, order_id = _opened(api)
    api.fault("payment", "approve_payment", mode, delay_ms=delay_ms)

    saga = api.pay(order_id)

    assert saga["status"] == "COMPLETED"
    approvals = [s for s in saga["steps"] if s["step"] == "approve_payment"]
    assert [a["status"] for a in approvals] == ["FAILED", "SUCCEEDED"]
    assert len({a["idempotency_key"] for a in approvals}) == 1
    assert len(api.approved_payments(order_id)) == 1
    assert [delta for delta, _, _ in ledger(user_id)] == [10_000, -7_000]
    assert api.balance(user_id) == 3_000


def test_compensates_a_step_that_never_answers_and_never_applies_it_late(api: Api):
    """The deduction keeps failing: it is compensated by its key, which leaves a tombstone."""
    user_id, order_id = _opened(api)
    api.fault("user", "deduct", "error", times=None)

    saga = api.pay(order_id)

    assert saga["status"] == "COMPENSATED"
    assert saga["error"] == {**saga["error"], "code": "injected_failure", "step": "deduct_balance"}
    assert attempts(saga)[-2:] == [
        ("deduct_balance", "compensation", "SUCCEEDED"),
        ("start_order_payment", "compensation", "SUCCEEDED"),
    ]
    _assert_nothing_happened(api, user_id, order_id, 10_000)
    # The deduction arriving now, late, with the saga's key is refused.
    api.clear_faults()
    key = next(s["idempotency_key"] for s in saga["steps"] if s["step"] == "deduct_balance")
    late = api.http.post(
        api.url("user", f"/users/{user_id}/deductions"),
        json={"amount": 7_000},
        headers={"Idempotency-Key": key, "Authorization": "Bearer dev-service-token"},
    )
    assert (late.status_code, late.json()["error"]["code"]) == (409, "action_compensated")
    assert api.balance(user_id) == 10_000


def test_undoes_a_step_that_applied_but_whose_answer_was_lost(api: Api):
    user_id, order_id = _opened(api)
    api.fault("user", "deduct", "lose_response", times=None)

    saga = api.pay(order_id)

    assert saga["status"] == "COMPENSATED"
    assert [delta for delta, _, _ in ledger(user_id)] == [10_000, -7_000, 7_000]
    _assert_nothing_happened(api, user_id, order_id, 10_000)


def test_completes_when_the_pivot_applied_but_its_answer_was_lost(api: Api):
    user_id, order_id = _opened(api)
    api.fault("order", "complete_payment", "lose_response", times=None)

    saga = api.pay(order_id)

    assert saga["status"] == "COMPLETED"
    assert api.order_status(order_id) == "PAID"
    assert api.balance(user_id) == 3_000
    assert len(api.approved_payments(order_id)) == 1


def test_compensates_when_the_pivot_never_answers_and_never_applies_it_late(api: Api):
    user_id, order_id = _opened(api)
    api.fault("order", "complete_payment", "error", times=None)

    saga = api.pay(order_id)

    assert saga["status"] == "COMPENSATED"
    assert saga["error"]["code"] == "action_not_applied"
    _assert_nothing_happened(api, user_id, order_id, 10_000)


def test_a_compensation_failing_past_its_budget_needs_attention_until_an_operator_retries(
    api: Api,
):
    user_id, order_id = _opened(api)
    api.fault("payment", "approve_payment", "refuse")
    api.fault("user", "charge_back", "error", times=None)

    stuck = api.start_payment(order_id, key=f"stuck-{order_id}", wait=2)
    saga_id = stuck.json()["saga_id"]
    saga = wait_for(
        lambda: (s := api.saga(saga_id))["status"] == "NEEDS_ATTENTION" and s,
        what="the saga to need attention",
    )

    assert saga["attention"]["step"] == "deduct_balance"
    assert saga["attention"]["phase"] == "compensation"
    assert api.balance(user_id) == 3_000  # the deduction is not undone yet
    listed = api.http.get(
        api.url("orchestrator", "/admin/sagas"),
        params={"status": "NEEDS_ATTENTION"},
        headers=ADMIN_AUTH,
    ).json()["items"]
    assert saga_id in [s["saga_id"] for s in listed]

    api.clear_faults()
    retried = api.http.post(
        api.url("orchestrator", f"/admin/sagas/{saga_id}/retry"), headers=ADMIN_AUTH
    )
    assert retried.status_code == 202
    final = api.start_payment(order_id, key=f"stuck-{order_id}", wait=30)

    assert final.json() == {"saga_id": saga_id, "status": "COMPENSATED"}
    _assert_nothing_happened(api, user_id, order_id, 10_000)
    again = api.http.post(
        api.url("orchestrator", f"/admin/sagas/{saga_id}/retry"), headers=ADMIN_AUTH
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "saga_not_retryable")
