"""The bench's peers (`tools/peers/`) do for a payment the work ours does: they read the order
before anything starts, hold one workflow per order, and tell the data platform the outcome with
the event ours' outbox would send. Their engines are the bench extras (`pip install .[bench]`),
which CI does not install: a peer whose package is missing is skipped."""

from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.conftest import PREFIX, TEST_PG_URL
from tests.e2e.client import Api, wait_for
from tools.peers import PeerHandle, start_peer
from tools.peers.payment import event_id
from tools.stack import ORCHESTRATOR_TEST_ENV, Stack

PACKAGES = {"dbos": "dbos", "temporal": "temporalio"}


def _peer_param(name: str):
    missing = find_spec(PACKAGES[name]) is None
    reason = f"the bench extras are not installed (no {PACKAGES[name]})"
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=reason))


@pytest.fixture(scope="module", params=[_peer_param(name) for name in PACKAGES])
def peer(request, stack: Stack, tmp_path_factory) -> PeerHandle:
    log_dir: Path = tmp_path_factory.mktemp(f"{request.param}-logs")
    handle = start_peer(
        request.param,
        stack,
        log_dir,
        TEST_PG_URL,
        database=f"{PREFIX}_peer_dbos",
        env=ORCHESTRATOR_TEST_ENV,  # the suite's short timeouts and budgets, as its orchestrator
    )
    yield handle
    handle.stop()


def _pay(api: Api, peer: PeerHandle, order_id: object):
    return api.http.post(f"{peer.url}/payments", json={"order_id": order_id})


def test_refuses_an_unknown_or_paid_order_before_starting_anything(api: Api, peer: PeerHandle):
    r = _pay(api, peer, 10**9)
    assert r.status_code == 404 and r.json()["error"]["code"] == "order_not_found"

    order_id = api.create_order(api.create_user(5_000), 1_000)
    assert _pay(api, peer, order_id).json()["status"] == "COMPLETED"
    r = _pay(api, peer, order_id)
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_not_payable"


def test_one_order_has_one_workflow_however_often_it_is_started(api: Api, peer: PeerHandle):
    user_id = api.create_user(5_000)
    order_id = api.create_order(user_id, 1_000)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: _pay(api, peer, order_id), range(4)))

    # A start that read the order after the first one paid it is refused, as ours refuses it;
    # every other one answers the same workflow's result.
    paid = [r.json() for r in answers if r.status_code == 200]
    assert paid and all(r.status_code in (200, 409) for r in answers)
    assert {(a["saga_id"], a["status"]) for a in paid} == {(f"payment-{order_id}", "COMPLETED")}
    assert len(api.approved_payments(order_id)) == 1
    assert api.balance(user_id) == 4_000


def test_tells_the_data_platform_the_outcome_once_with_ours_event(api: Api, peer: PeerHandle):
    paying = api.create_order(api.create_user(5_000), 1_000)
    poor = api.create_user(10)
    unpaid = api.create_order(poor, 1_000)
    assert _pay(api, peer, paying).json()["status"] == "COMPLETED"
    failed = _pay(api, peer, unpaid).json()
    assert failed["status"] == "COMPENSATED"

    saga_ids = {f"payment-{paying}", f"payment-{unpaid}"}
    events = wait_for(lambda: len(found := api.platform_events(saga_ids)) == 2 and found, 30)
    by_saga = {e["payload"]["saga_id"]: e for e in events}
    paid_event, failed_event = by_saga[f"payment-{paying}"], by_saga[f"payment-{unpaid}"]
    assert paid_event["type"] == "order.paid"
    assert paid_event["event_id"] == event_id(f"payment-{paying}")
    assert paid_event["payload"]["order_id"] == paying
    assert paid_event["payload"]["amount"] == 1_000
    assert paid_event["payload"]["items"] == [{"product_id": 1, "quantity": 1, "unit_price": 1_000}]
    assert failed_event["type"] == "order.payment_failed"
    assert failed_event["payload"]["user_id"] == poor
    assert failed_event["payload"]["reason"]["step"] == "deduct_balance"
    assert all(e["deliveries"] == 1 for e in events)
