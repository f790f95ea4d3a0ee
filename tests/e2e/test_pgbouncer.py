"""The stack behind PgBouncer in transaction mode (TEST_THROUGH_PGBOUNCER=1, as `make test` runs
the payment saga tests): a check that the traffic really went through it."""

import pytest

from tests.e2e.client import Api
from tools.pgbouncer import PgBouncer
from tools.stack import Stack

ORCHESTRATOR_DATABASE_SUFFIX = "_orchestrator"


def test_every_process_talks_to_its_database_through_pgbouncer_in_transaction_mode(
    api: Api, stack: Stack, bouncer: PgBouncer | None
):
    if bouncer is None:
        pytest.skip("run with TEST_THROUGH_PGBOUNCER=1 (make test does, for the payment saga)")
    user = api.create_user(1_000)
    order = api.create_order(user, 100)
    saga = api.pay(order)
    assert saga["status"] == "COMPLETED"

    assert bouncer.pool_mode() == "transaction"
    served = bouncer.stats()
    for suffix in ("_orders", "_users", "_payments", ORCHESTRATOR_DATABASE_SUFFIX):
        [database] = [name for name in served if name.endswith(suffix)]
        assert served[database] > 0, (database, served)
