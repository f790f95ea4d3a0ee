"""The database itself crashes while sagas are in flight, and comes back.

Every process runs on a PostgreSQL server of this test's own (tools/pgcluster.py), stopped the
way a crash stops it (`pg_ctl stop -m immediate`: crash recovery at the next start). While it is
away, starts and reads get 503 with Retry-After, and every process says it is not ready; once it
is back, every process is ready again at once, no process has exited, every saga ends final and
the invariants hold."""

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tools.invariants import Databases, check
from tools.pgcluster import Cluster
from tools.stack import FAULT_INJECTION_ENV, Stack, database_env, reset_databases, start_stack

pytestmark = pytest.mark.e2e

SERVICE_AUTH = {"Authorization": "Bearer dev-service-token"}
ADMIN_AUTH = {"Authorization": "Bearer dev-admin-token"}
FINAL = {"COMPLETED", "COMPENSATED"}
PROCESSES = ("orchestrator", "order", "user", "payment", "concert", "data_platform")


@pytest.fixture
def crashable(tmp_path) -> tuple[Cluster, Stack, dict[str, str]]:
    cluster = Cluster().init()
    cluster.start()
    env = {**database_env("saga_crash", cluster.url), "APP_ENV": "test", **FAULT_INJECTION_ENV}
    stack = None
    try:
        reset_databases(env)
        stack = start_stack(tmp_path, extra_env=env)
        yield cluster, stack, env
    finally:
        if stack is not None:
            stack.stop()
        cluster.destroy()


def _outages_logged(log: Path) -> set[int]:
    """How many times each component of a process said its database was unavailable."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    said = Counter(
        (line["logger"], line["msg"].partition(" is unavailable")[0])
        for line in lines
        if " is unavailable" in line["msg"]
    )
    return set(said.values())


def _ready(http: httpx.Client, stack: Stack, name: str) -> int:
    try:
        return http.get(f"{stack.url(name)}/health/ready", timeout=2).status_code
    except httpx.TransportError:
        return -1


def test_sagas_survive_a_database_crash_and_starts_meanwhile_get_503(crashable):
    cluster, stack, env = crashable
    http = httpx.Client(timeout=30)
    orchestrator = stack.url("orchestrator")
    users = [
        http.post(f"{stack.url('user')}/users", json={"name": "u", "balance": 5_000}).json()["id"]
        for _ in range(8)
    ]
    orders = []
    for user in users:
        for amount in (1_000, 1_500, 2_000, 900):  # 5,400 each: the last one is short
            item = {"product_id": 1, "quantity": 1, "unit_price": amount}
            body = {"user_id": user, "items": [item]}
            orders.append(http.post(f"{stack.url('order')}/orders", json=body).json()["id"])
    late_orders, orders = orders[-4:], orders[:-4]
    # Slow steps, so that many sagas are mid-way when the database goes.
    for service, point in (("user", "deduct"), ("payment", "approve_payment")):
        rule = {"point": point, "mode": "delay", "times": None, "delay_ms": 150}
        http.post(f"{stack.url(service)}/_faults", json=rule, headers=SERVICE_AUTH)

    def start(order_id: int) -> str:
        r = httpx.post(
            f"{orchestrator}/payments",
            json={"order_id": order_id},
            headers={"Idempotency-Key": f"crash-{order_id}"},
            timeout=30,
        )
        assert r.status_code == 202, r.text
        return r.json()["saga_id"]

    with ThreadPoolExecutor(8) as pool:
        saga_ids = list(pool.map(start, orders))

    def unfinished() -> int:
        r = http.get(f"{orchestrator}/admin/stats", headers=ADMIN_AUTH)
        counts = r.json()["sagas_by_status"]
        return sum(n for status, n in counts.items() if status not in FINAL)

    assert unfinished() > 0, "every saga ended before the crash: nothing was in flight"
    cluster.crash()

    # While it is down: starts and reads answer 503 with Retry-After, nobody is ready.
    refused = []
    for order_id, key in zip(late_orders, (None, *late_orders[1:]), strict=True):
        r = http.post(
            f"{orchestrator}/payments",
            json={"order_id": order_id},
            headers={"Idempotency-Key": f"crash-{key}"} if key else {},
        )
        refused.append((r.status_code, r.headers.get("Retry-After"), r.json()["error"]["code"]))
    read = http.get(f"{orchestrator}/payments/{saga_ids[0]}")
    not_ready = {name: _ready(http, stack, name) for name in PROCESSES}
    time.sleep(3)  # the database stays down a few seconds: the outage is what is tested
    cluster.start()
    back = time.monotonic()
    ready_after = {}
    while len(ready_after) < len(PROCESSES) and time.monotonic() - back < 10:
        for name in PROCESSES:
            if name not in ready_after and _ready(http, stack, name) == 200:
                ready_after[name] = time.monotonic() - back
        time.sleep(0.05)  # polling processes over HTTP: nothing to wait on

    assert all(status == 503 and retry for status, retry, _ in refused), refused
    assert read.status_code == 503 and read.headers.get("Retry-After"), read.text
    assert set(not_ready.values()) == {503}, not_ready
    assert set(ready_after) == set(PROCESSES), ready_after
    assert max(ready_after.values()) < 2.0, ready_after

    # The starts refused during the outage are accepted now, with their keys.
    with ThreadPoolExecutor(4) as pool:
        saga_ids += list(pool.map(start, late_orders))
    # None waits out its lease (10 s here): each run rewrites what it could not write.
    lease = float(stack.processes["orchestrator"].env["ORCHESTRATOR_LEASE_SECONDS"])
    while unfinished() and time.monotonic() - back < 60:
        time.sleep(0.2)  # the sagas of other processes: polled through the admin API
    assert unfinished() == 0
    assert time.monotonic() - back < lease
    for name, process in stack.processes.items():
        assert process.popen.poll() is None, f"{name} exited"
        assert _outages_logged(process.log_path) <= {1}, f"{name}: one line per outage"
    report = check(
        Databases(
            orders=env["ORDERS_DATABASE_URL"],
            users=env["USERS_DATABASE_URL"],
            payments=env["PAYMENTS_DATABASE_URL"],
            orchestrator=env["ORCHESTRATOR_DATABASE_URL"],
            concerts=env["CONCERTS_DATABASE_URL"],
        ),
        saga_ids,
        users,
    )
    assert report.violations == []
    assert sum(report.by_status.values()) == len(orders) + len(late_orders)
