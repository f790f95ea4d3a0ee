"""SIGKILL the orchestrator while a saga is in flight at each step and phase: once restarted it
resumes every saga from its persisted step, and nothing is lost or applied twice."""

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.conftest import database_url
from tests.e2e.client import Api, assert_invariants, wait_for
from tools.stack import Stack

# (failing action that turns the saga back, or None; the call held in flight; final status)
IN_FLIGHT = {
    "action 1: lock the order": (None, ("order", "start_payment"), "COMPLETED"),
    "action 2: deduct": (None, ("user", "deduct"), "COMPLETED"),
    "action 3: approve": (None, ("payment", "approve_payment"), "COMPLETED"),
    "action 4: the pivot": (None, ("order", "complete_payment"), "COMPLETED"),
    "compensation 3: cancel payment": (
        ("order", "complete_payment"),
        ("payment", "cancel_payment"),
        "COMPENSATED",
    ),
    "compensation 2: charge back": (
        ("payment", "approve_payment"),
        ("user", "charge_back"),
        "COMPENSATED",
    ),
    "compensation 1: release order": (
        ("user", "deduct"),
        ("order", "release_payment"),
        "COMPENSATED",
    ),
}
STEP_OF_POINT = {
    "start_payment": "start_order_payment",
    "release_payment": "start_order_payment",
    "deduct": "deduct_balance",
    "charge_back": "deduct_balance",
    "approve_payment": "approve_payment",
    "cancel_payment": "approve_payment",
    "complete_payment": "complete_order_payment",
}


def _saga_of(order_id: int) -> str | None:
    """The id of the payment saga of an order, read from the orchestrator's database."""
    with psycopg.connect(database_url("ORCHESTRATOR")) as conn:
        row = conn.execute(
            "SELECT id FROM sagas WHERE type = 'payment' AND payload->>'order_id' = %s",
            (str(order_id),),
        ).fetchone()
    return str(row[0]) if row else None


@pytest.mark.parametrize("case", IN_FLIGHT, ids=list(IN_FLIGHT))
def test_a_saga_killed_mid_call_finishes_after_restart(api: Api, stack: Stack, case: str):
    refused, (service, point), final = IN_FLIGHT[case]
    phase = "compensation" if refused else "action"
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    if refused:
        api.fault(*refused, "refuse")
    # The held call takes 0.7 s in the service (under the client's 1 s timeout): long enough
    # to see it in flight and kill the orchestrator while it is.
    api.fault(service, point, "delay", delay_ms=700)
    # The start answers once the first step's call is back (that step is its check): started
    # in the background, so that the kill can come while that first call is in flight too.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(api.start_payment, order_id, f"crash-{order_id}")
        saga_id = wait_for(lambda: _saga_of(order_id), 15, "the saga to be recorded")

        def in_flight() -> bool:
            return any(
                (s["step"], s["phase"], s["status"]) == (STEP_OF_POINT[point], phase, "STARTED")
                for s in api.saga(saga_id)["steps"]
            )

        wait_for(in_flight, 15, f"{case} to be in flight")
        orchestrator = stack.processes["orchestrator"]
        orchestrator.kill()
    orchestrator.restart()  # same port, same instance id: it takes its sagas back at once

    answer = api.start_payment(order_id, key=f"crash-{order_id}", wait=30)
    saga = api.saga(saga_id)
    assert answer.json() == {"saga_id": saga_id, "status": final}
    statuses = [s["status"] for s in saga["steps"]]
    assert "INTERRUPTED" in statuses  # the call the killed process never saw the end of
    assert "STARTED" not in statuses
    assert_invariants([saga_id], [user_id])
    assert api.balance(user_id) == (3_000 if final == "COMPLETED" else 10_000)
