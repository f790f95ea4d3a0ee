"""The relay killed with SIGKILL while deliveries are in flight: restarted, it loses nothing, and
the data platform absorbs the events it delivers twice."""

import os

import httpx
import pytest

from tests.conftest import TEST_PG_URL
from tests.e2e.client import Api, wait_for
from tools.stack import (
    FAULT_INJECTION_ENV,
    Process,
    Stack,
    database_env,
    free_port,
    reset_databases,
    start_stack,
)


@pytest.fixture(scope="module")
def relay_stack(tmp_path_factory):
    """A stack whose orchestrator does not relay: a separate relay process does."""
    env = {
        **database_env(f"{os.environ.get('TEST_DB_PREFIX', 'saga_test')}_relay", TEST_PG_URL),
        **FAULT_INJECTION_ENV,
    }
    reset_databases(env)
    log_dir = tmp_path_factory.mktemp("relay-logs")
    stack = start_stack(log_dir, env, {"ORCHESTRATOR_RELAY_ENABLED": "false"})
    orchestrator = stack.processes["orchestrator"]
    metrics_port = free_port()
    relay = Process(
        "orchestrator",
        free_port(),
        orchestrator.env,
        log_dir / "relay.log",
        command=("relay", "--metrics-port", str(metrics_port)),
    )
    stack.processes["relay"] = relay
    relay.start()
    yield stack
    stack.stop()


def test_a_relay_killed_mid_delivery_loses_nothing(relay_stack: Stack):
    api = Api(relay_stack)
    relay = relay_stack.processes["relay"]
    user_id = api.create_user(100_000)
    api.platform_control(latency_ms=1_000)  # deliveries stay in flight for a second

    saga_ids = {api.pay(api.create_order(user_id, 100))["saga_id"] for _ in range(30)}
    wait_for(lambda: api.platform_in_flight() > 0, 30, "deliveries in flight")
    relay.kill()
    relay.restart()
    api.platform_control(latency_ms=0)

    # The restarted relay takes over the dead one's claims once they expire, and delivers.
    wait_for(
        lambda: {r["status"] for r in api.outbox_rows(saga_ids)} == {"DELIVERED"},
        60,
        "the outbox to record every delivery",
    )
    events = api.platform_events(saga_ids)
    assert len({e["event_id"] for e in events}) == len(events) == 30
    assert {e["payload"]["saga_id"] for e in events} == saga_ids
    # The deliveries in flight when the relay died were stored, then delivered again by the
    # restarted relay: absorbed by the platform, stored once.
    assert sum(e["deliveries"] for e in events) > 30
    api.close()


def test_a_relay_stopped_mid_delivery_ends_its_pass_and_leaves_no_claim(relay_stack: Stack):
    """SIGTERM, as a rolling deploy sends: the delivery in flight is answered and marked before
    the relay exits, so its events go out once and nobody waits out a claim."""
    api = Api(relay_stack)
    relay = relay_stack.processes["relay"]
    user_id = api.create_user(100_000)
    api.platform_control(latency_ms=1_000)

    saga_ids = {api.pay(api.create_order(user_id, 100))["saga_id"] for _ in range(10)}
    wait_for(lambda: api.platform_in_flight() > 0, 30, "deliveries in flight")
    assert relay.popen is not None
    relay.popen.terminate()
    relay.popen.wait(timeout=15)
    api.platform_control(latency_ms=0)

    rows = api.outbox_rows(saga_ids)
    delivered = {r["event_id"] for r in rows if r["status"] == "DELIVERED"}
    assert delivered, "the pass in flight was not marked before the relay exited"
    relay.restart()
    wait_for(
        lambda: {r["status"] for r in api.outbox_rows(saga_ids)} == {"DELIVERED"},
        10,  # well within the 30 s a claim left behind would hold
        "the rest to be delivered by the restarted relay",
    )
    events = api.platform_events(saga_ids)
    assert len(events) == 10
    assert all(e["deliveries"] == 1 for e in events)  # none sent twice
    api.close()


def test_a_relay_on_its_own_exports_its_delivery_lag_for_prometheus(relay_stack: Stack):
    """With the orchestrators' own relays off, the relay is the only one that can say how late
    deliveries are (the alert on delivery lag reads it)."""
    api = Api(relay_stack)
    saga_id = api.pay(api.create_order(api.create_user(1_000), 100))["saga_id"]
    wait_for(
        lambda: {r["status"] for r in api.outbox_rows({saga_id})} == {"DELIVERED"},
        30,
        "the delivery",
    )
    metrics_port = relay_stack.processes["relay"].command[-1]  # its --metrics-port
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    lag = [
        line
        for line in metrics.splitlines()
        if line.startswith("outbox_delivery_lag_seconds_count")
    ]
    assert lag and float(lag[0].split()[-1]) > 0, metrics[:2000]
    api.close()
