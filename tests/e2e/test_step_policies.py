"""Steps may declare their own timeout and retry policy, and steps after the pivot only go
forward: driven by a runner against the real services."""

import asyncio
import time
from dataclasses import replace

from orchestrator.payment_saga import PAYMENT_SAGA
from sagaengine.definition import RemoteCall, RetryPolicy, SagaDefinition, Step, StepKind
from sagaengine.starting import start_saga
from tests.e2e.client import Api, assert_invariants
from tests.e2e.inprocess import runner, saga_store
from tools.stack import Stack

STEPS = PAYMENT_SAGA.steps


def _pay(api: Api, stack: Stack, definition: SagaDefinition, order_id: int, operator=False):
    """Run one saga of `definition`; with `operator`, wait until it needs attention, clear the
    faults and retry it, as an operator would."""

    async def scenario():
        async with (
            saga_store() as store,
            runner(store, stack, f"policy-{order_id}", {definition.key: definition}) as saga_runner,
        ):
            saga = await start_saga(saga_runner, definition, {"order_id": order_id}, None)
            if operator:
                deadline = time.monotonic() + 30
                while (saga := await store.get(saga.id)).status != "NEEDS_ATTENTION":
                    assert saga.status == "RUNNING" and time.monotonic() < deadline, saga
                    await asyncio.sleep(0.05)
                stuck = saga
                api.clear_faults()
                assert await saga_runner.retry(saga)
            final = await saga_runner.wait_until_final(saga.id, 30)
            return final, await store.admin.attempts(saga.id), stuck if operator else None

    return asyncio.run(scenario())


def test_a_step_retries_the_refusal_codes_its_policy_calls_not_yet(api: Api, stack: Stack):
    patient = RetryPolicy(
        attempts=4, initial_backoff=0.05, max_backoff=0.1, retry_on=frozenset({"injected_failure"})
    )
    definition = replace(
        PAYMENT_SAGA,
        version=101,
        steps=(STEPS[0], replace(STEPS[1], retry=patient), STEPS[2], STEPS[3]),
    )
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    api.fault("user", "deduct", "refuse", times=2)

    saga, attempts, _ = _pay(api, stack, definition, order_id)

    assert saga.status == "COMPLETED"
    deductions = [a.status for a in attempts if a.step_name == "deduct_balance"]
    assert deductions == ["REFUSED", "REFUSED", "SUCCEEDED"]
    assert_invariants([str(saga.id)], [user_id])


def test_a_step_waits_as_long_as_its_own_timeout_says(api: Api, stack: Stack):
    """The runner's default timeout is 1 s; this step allows 3 s, so a 1.5 s answer is fine."""
    definition = replace(
        PAYMENT_SAGA,
        version=102,
        steps=(STEPS[0], replace(STEPS[1], timeout=3.0), STEPS[2], STEPS[3]),
    )
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    api.fault("user", "deduct", "delay", delay_ms=1_500)
    api.fault("payment", "approve_payment", "delay", delay_ms=1_500)

    saga, attempts, _ = _pay(api, stack, definition, order_id)

    assert saga.status == "COMPLETED"
    assert [a.status for a in attempts if a.step_name == "deduct_balance"] == ["SUCCEEDED"]
    # The approval keeps the default 1 s timeout: its first attempt timed out.
    assert [a.status for a in attempts if a.step_name == "approve_payment"] == [
        "FAILED",
        "SUCCEEDED",
    ]


def _post_pivot_call(ctx) -> RemoteCall:
    """Stands in for a step after the pivot (say, a notification): idempotent and harmless. It
    settles a key nobody uses, through an endpoint the saga's forward path never calls, so that
    a fault can be injected into it alone."""
    return RemoteCall(
        "order",
        "POST",
        f"/orders/{ctx.data.order_id}/payment-release",
        {"start_key": f"{ctx.saga_id}:unused"},
    )


def test_a_step_after_the_pivot_is_never_compensated_and_waits_for_an_operator(
    api: Api, stack: Stack
):
    after_pivot = Step("after_pivot", _post_pivot_call, kind=StepKind.RETRIABLE)
    definition = replace(PAYMENT_SAGA, version=103, steps=(*STEPS, after_pivot))
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    api.fault("order", "release_payment", "error", times=None)

    saga, attempts, stuck = _pay(api, stack, definition, order_id, operator=True)

    assert (stuck.step, stuck.attention["step"]) == (4, "after_pivot")
    assert saga.status == "COMPLETED"
    assert all(a.phase == "action" for a in attempts)  # nothing was ever compensated
    assert api.order_status(order_id) == "PAID"
    assert api.balance(user_id) == 3_000
