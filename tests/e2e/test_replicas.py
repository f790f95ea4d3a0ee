"""Two orchestrator processes on one database share the work and never run one saga twice."""

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx

from tests.e2e.client import ADMIN_AUTH, Api, assert_invariants
from tests.e2e.inprocess import private_orchestrator_database
from tools.stack import Process, Stack, orchestrator_process


def _overlapping_owners(steps: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of attempts of one saga by two different runs whose time spans overlap."""
    spans = [
        (s["owner"], datetime.fromisoformat(s["started_at"]), s["finished_at"], s) for s in steps
    ]
    clashes = []
    for (owner_a, start_a, end_a, a), (owner_b, start_b, _, b) in itertools.combinations(spans, 2):
        if owner_a == owner_b:
            continue
        end_a = datetime.fromisoformat(end_a) if end_a else None
        if end_a is None or (start_a <= start_b < end_a):
            clashes.append((a, b))
    return clashes


# The replicas' compensations get the production budget (8 attempts, a minute): the test's
# default of 3 attempts of 1 s gives up within a surge of 200 starts on two cores, when every
# call of the domain services briefly takes about a second.
REPLICA_ENV = {
    "ORCHESTRATOR_COMPENSATION_ATTEMPTS": "8",
    "ORCHESTRATOR_COMPENSATION_MAX_SECONDS": "60",
}


def test_two_orchestrators_share_200_sagas_and_take_over_when_one_dies(
    api: Api, stack: Stack, tmp_path
):
    # Two replicas of their own, on a database of their own: the suite's orchestrator stays
    # out of it (its recovery would be a third replica).
    database = private_orchestrator_database("replicas")
    env = {**REPLICA_ENV, "ORCHESTRATOR_DATABASE_URL": database}
    first = orchestrator_process(stack, tmp_path, "orchestrator-a", env)
    second = orchestrator_process(stack, tmp_path, "orchestrator-b", env)
    try:
        for replica in (first, second):
            replica.start()
        for replica in (first, second):
            replica.wait_healthy()
        _share_and_take_over(api, first, second, database)
    finally:
        first.stop()
        second.stop()


def _share_and_take_over(api: Api, first: Process, second: Process, database: str) -> None:
    users = [api.create_user(700) for _ in range(20)]
    orders = [(user, api.create_order(user, 100)) for user in users for _ in range(10)]
    api.fault("payment", "approve_payment", "error", times=40)  # some retries, to overlap more

    def start(i: int) -> str:
        """Half the starts go to each replica; once the second is dead, to the first. A client
        with a key retries what may be transient (a dead replica, a 503), as any should."""
        _, order_id = orders[i]
        urls = (second.url, first.url) if i % 2 else (first.url,)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for url in urls:
                try:
                    r = httpx.post(
                        f"{url}/payments",
                        json={"order_id": order_id},
                        headers={"Idempotency-Key": f"replica-{order_id}"},
                        timeout=30,
                    )
                except httpx.TransportError:
                    continue  # the second replica was killed: the same key, to the other one
                if r.status_code == 202:
                    return r.json()["saga_id"]
                assert r.status_code >= 500, r.text
            time.sleep(0.1)
        raise AssertionError(f"no orchestrator took order {order_id}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        started = [pool.submit(start, i) for i in range(200)]
        started[100].result()
        second.kill()  # mid-run: its sagas' leases expire and the first replica takes them
        saga_ids = [f.result() for f in started]

    finals = [
        httpx.post(
            f"{first.url}/payments",
            json={"order_id": order_id},
            headers={"Idempotency-Key": f"replica-{order_id}"},
            params={"wait": 60},
            timeout=90,
        ).json()
        for _, order_id in orders
    ]
    assert {f["status"] for f in finals} <= {"COMPLETED", "COMPENSATED"}
    assert len(set(saga_ids)) == 200
    report = assert_invariants(saga_ids, users, database)
    # A balance of 700 pays at most 7 of a user's 10 orders of 100. (Exactly 7 is not certain:
    # a saga that runs out of retries on the injected 503s compensates, and another order of
    # that user may have been refused for the balance it held meanwhile.)
    assert 0 < report.by_status["COMPLETED"] <= 140
    owners = set()
    for saga_id in saga_ids:
        detail = httpx.get(f"{first.url}/admin/sagas/{saga_id}", headers=ADMIN_AUTH).json()
        assert _overlapping_owners(detail["steps"]) == []
        owners |= {s["owner"].split("#")[0] for s in detail["steps"]}
    assert len(owners) == 2  # both replicas ran steps
