"""Smoke check of the peers, run by hand (not in CI): each pays orders through the same services as
our orchestrator and leaves them as ours would.

For each peer (DBOS, Temporal), on a fresh stack: 20 orders paid at concurrency 8 end PAID, each
with one approved payment, and the user's balance drops by exactly their sum; an order whose user
cannot pay ends COMPENSATED, back to PENDING, the balance untouched. Then, with faults injected
into the services: transient faults of a step are retried under its key; a refused payment
approval is compensated (the balance charged back, the order released); a pivot whose answers are
all lost is settled, and completes. With --throughput N, also N
payments at concurrency 32 through the peer and through our orchestrator, in sagas/s (rough: one
pass each, on a shared machine).

    python -m tools.peers.smoke [--peers dbos,temporal] [--throughput 200]
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tools.peers import PEERS, start_peer
from tools.stack import (
    FAULT_INJECTION_ENV,
    Stack,
    bench_db_prefix,
    database_env,
    postgres_url,
    reset_databases,
    start_stack,
)

ITEM = {"product_id": 1, "quantity": 1, "unit_price": 1_000}
AUTH = {"Authorization": "Bearer dev-service-token"}
# (service, fault rule, the saga's final status, the order's, whether the balance was taken)
FAULTS = [
    ("user", {"point": "deduct", "mode": "error", "times": 2}, "COMPLETED", "PAID", True),
    ("payment", {"point": "approve_payment", "mode": "refuse"}, "COMPENSATED", "PENDING", False),
    # Every attempt of the pivot loses its answer (the orchestrator's 5 attempts): settled.
    (
        "order",
        {"point": "complete_payment", "mode": "lose_response", "times": 5},
        "COMPLETED",
        "PAID",
        True,
    ),
]


async def _user(http: httpx.AsyncClient, stack: Stack, balance: int) -> int:
    r = await http.post(f"{stack.url('user')}/users", json={"name": "smoke", "balance": balance})
    r.raise_for_status()
    return r.json()["id"]


async def _orders(http: httpx.AsyncClient, stack: Stack, user: int, count: int) -> list[dict]:
    orders = []
    for _ in range(count):
        r = await http.post(f"{stack.url('order')}/orders", json={"user_id": user, "items": [ITEM]})
        r.raise_for_status()
        orders.append(r.json())
    return orders


async def _balance(http: httpx.AsyncClient, stack: Stack, user: int) -> int:
    return (await http.get(f"{stack.url('user')}/users/{user}")).json()["balance"]


async def _pay_all(http: httpx.AsyncClient, url: str, orders: list[int], concurrency: int):
    """Pay every order through `url` (POST /payments, answered once final); the answers, and
    the seconds it took."""
    limit = asyncio.Semaphore(concurrency)

    async def pay(order_id: int) -> dict:
        async with limit:
            r = await http.post(url, json={"order_id": order_id})
            assert r.status_code == 200, f"order {order_id}: {r.status_code} {r.text}"
            return r.json()

    began = time.perf_counter()
    answers = await asyncio.gather(*(pay(o) for o in orders))
    return answers, time.perf_counter() - began


async def check_peer(http: httpx.AsyncClient, stack: Stack, url: str) -> list[str]:
    """What went wrong, if anything."""
    problems = []
    start_balance = 10**9
    user = await _user(http, stack, start_balance)
    orders = await _orders(http, stack, user, 20)
    answers, _ = await _pay_all(http, f"{url}/payments", [o["id"] for o in orders], 8)
    problems += [f"saga ended {a['status']}: {a}" for a in answers if a["status"] != "COMPLETED"]
    for order in orders:
        got = (await http.get(f"{stack.url('order')}/orders/{order['id']}")).json()
        if got["status"] != "PAID":
            problems.append(f"order {order['id']} is {got['status']}, not PAID")
        payments = (
            await http.get(f"{stack.url('payment')}/payments", params={"order_id": order["id"]})
        ).json()
        if [p["status"] for p in payments] != ["APPROVED"]:
            problems.append(f"order {order['id']} has payments {payments}")
    spent = start_balance - await _balance(http, stack, user)
    if spent != sum(o["amount"] for o in orders):
        problems.append(f"balance dropped by {spent}, not {sum(o['amount'] for o in orders)}")

    poor = await _user(http, stack, 10)
    [order] = await _orders(http, stack, poor, 1)
    [answer], _ = await _pay_all(http, f"{url}/payments", [order["id"]], 1)
    if answer["status"] != "COMPENSATED" or (answer["error"] or {}).get("step") != "deduct_balance":
        problems.append(f"a user without balance: the saga ended {answer}")
    got = (await http.get(f"{stack.url('order')}/orders/{order['id']}")).json()
    if got["status"] != "PENDING":
        problems.append(f"the unpaid order is {got['status']}, not back to PENDING")
    if await _balance(http, stack, poor) != 10:
        problems.append("the poor user's balance changed")
    for service, rule, status, order_status, taken in FAULTS:
        problems += await check_fault(http, stack, url, service, rule, status, order_status, taken)
    return problems


async def check_fault(
    http: httpx.AsyncClient,
    stack: Stack,
    url: str,
    service: str,
    rule: dict,
    status: str,
    order_status: str,
    taken: bool,
) -> list[str]:
    user = await _user(http, stack, 10**6)
    [order] = await _orders(http, stack, user, 1)
    faults = f"{stack.url(service)}/_faults"
    (await http.post(faults, json=rule, headers=AUTH)).raise_for_status()
    try:
        [answer], _ = await _pay_all(http, f"{url}/payments", [order["id"]], 1)
    finally:
        (await http.delete(faults, headers=AUTH)).raise_for_status()
    problems = []
    if answer["status"] != status:
        problems.append(f"{rule}: the saga ended {answer}, not {status}")
    got = (await http.get(f"{stack.url('order')}/orders/{order['id']}")).json()
    if got["status"] != order_status:
        problems.append(f"{rule}: the order is {got['status']}, not {order_status}")
    spent = 10**6 - await _balance(http, stack, user)
    if spent != (order["amount"] if taken else 0):
        problems.append(f"{rule}: the balance dropped by {spent}")
    return problems


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """utime + stime of each process, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        seconds[name] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


async def throughput(
    http: httpx.AsyncClient, stack: Stack, url: str, count: int, pids: dict[str, int]
) -> str:
    """Sagas/s at concurrency 32, and the CPU ms per saga of each process."""
    user = await _user(http, stack, 10**15)
    orders = [o["id"] for o in await _orders(http, stack, user, count)]
    before = _cpu_seconds(pids)
    answers, seconds = await _pay_all(http, url, orders, 32)
    after = _cpu_seconds(pids)
    assert all(a["status"] == "COMPLETED" for a in answers), answers
    cpu = ", ".join(f"{n} {(after[n] - before[n]) * 1000 / count:.0f}" for n in pids)
    return f"{count / seconds:.1f} sagas/s at concurrency 32; CPU ms per saga: {cpu}"


async def run(stack: Stack, log_dir: Path, pg_url: str, peers: list[str], count: int) -> bool:
    ok = True
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        stack_pids = {name: p.popen.pid for name, p in stack.processes.items()}
        if count:
            ours = f"{stack.url('orchestrator')}/payments?wait=60"
            await throughput(http, stack, ours, 20, stack_pids)  # warm-up
            print(f"orchestrator: {await throughput(http, stack, ours, count, stack_pids)}")
        for name in peers:
            database = f"{bench_db_prefix()}_peers_dbos"
            peer = await asyncio.to_thread(
                start_peer, name, stack, log_dir, pg_url, database=database
            )
            try:
                problems = await check_peer(http, stack, peer.url)
                print(f"{name}: {'OK' if not problems else 'FAILED'} (pids {peer.pids})")
                for problem in problems:
                    print(f"  {problem}")
                ok = ok and not problems
                if count:
                    pids = {**stack_pids, **peer.pids}
                    measured = await throughput(http, stack, f"{peer.url}/payments", count, pids)
                    print(f"{name}: {measured}", flush=True)
            finally:
                await asyncio.to_thread(peer.stop)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.peers.smoke", description=__doc__)
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--throughput", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)

    pg_url = postgres_url()
    env = database_env(f"{bench_db_prefix()}_peers", pg_url)
    reset_databases(env)
    log_dir = Path(tempfile.mkdtemp(prefix="peers-smoke-"))
    print(f"smoke: starting the services (logs in {log_dir})", file=sys.stderr)
    stack = start_stack(log_dir, {**env, **FAULT_INJECTION_ENV}, {}, orchestrator_defaults=True)
    try:
        ok = asyncio.run(run(stack, log_dir, pg_url, args.peers.split(","), args.throughput))
    finally:
        stack.stop()
    print("smoke: OK" if ok else "smoke: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
