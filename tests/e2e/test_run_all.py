"""`make run-all` as a user runs it: the README's walk-through, then Ctrl-C stops every process.

The ports are moved by RUN_ALL_PORT_OFFSET so that the test runs beside a `make run-all` that a
developer keeps open in another terminal."""

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from tests.e2e.client import wait_for
from tools.stack import ROOT

DEFAULT_PORTS = {
    "orchestrator": 8000,
    "order": 8001,
    "user": 8002,
    "payment": 8003,
    "data_platform": 8009,
}


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_offset() -> int:
    for offset in range(1000, 20000, 1000):
        if not any(_port_taken(p + offset) for p in DEFAULT_PORTS.values()):
            return offset
    raise AssertionError("no free set of ports for run-all")


def _walk_through(ports: dict[str, int]) -> None:
    """The README's curl walk-through, step by step."""
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with httpx.Client(timeout=30) as http:
        user = http.post(f"{url['user']}/users", json={"name": "kim", "balance": 10_000}).json()
        item = {"product_id": 1, "quantity": 1, "unit_price": 7_000}
        order = http.post(
            f"{url['order']}/orders", json={"user_id": user["id"], "items": [item]}
        ).json()
        paid = http.post(
            f"{url['orchestrator']}/payments?wait=30",
            json={"order_id": order["id"]},
            headers={"Idempotency-Key": f"walk-through-{order['id']}"},
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "COMPLETED"
        assert http.get(f"{url['order']}/orders/{order['id']}").json()["status"] == "PAID"
        assert http.get(f"{url['user']}/users/{user['id']}").json()["balance"] == 3_000
        payments = http.get(f"{url['payment']}/payments", params={"order_id": order["id"]}).json()
        assert [p["status"] for p in payments] == ["APPROVED"]


def _all_healthy(ports: dict[str, int]) -> bool:
    try:
        return all(
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            for port in ports.values()
        )
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("database", ["configured", "embedded"])
def test_run_all_serves_the_walk_through_and_stops_on_ctrl_c(databases, database, tmp_path):
    offset = _free_offset()
    ports = {name: port + offset for name, port in DEFAULT_PORTS.items()}
    env = {**os.environ, "RUN_ALL_PORT_OFFSET": str(offset)}
    if database == "embedded":
        # As on a machine without a PostgreSQL server: no URL configured, an embedded one.
        env = {k: v for k, v in env.items() if not k.endswith("_DATABASE_URL")}
        env.update(RUN_ALL_EMBEDDED_PG="1", RUN_ALL_DATA_DIR=str(tmp_path))
    log = (tmp_path / "run-all.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "common.run_all"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _all_healthy(ports) or proc.poll() is not None, 90, "run-all to start")
        assert proc.poll() is None, (tmp_path / "run-all.log").read_text()[-3000:]

        _walk_through(ports)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = (tmp_path / "run-all.log").read_text()
    assert "embedded PostgreSQL" in output if database == "embedded" else "configured" in output
    assert not any(_port_taken(port) for port in ports.values())
