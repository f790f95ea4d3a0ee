import os
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_PG_URL
from tests.e2e.client import Api
from tools import pgbouncer
from tools.stack import DATABASES, Stack, start_stack

pytestmark = pytest.mark.e2e

# TEST_THROUGH_PGBOUNCER=1: every process of the stack reaches its database through a PgBouncer
# in transaction mode (`make test` runs the payment saga tests so); the tests' own reads do not.
THROUGH_PGBOUNCER = os.environ.get("TEST_THROUGH_PGBOUNCER") == "1"


@pytest.fixture(scope="session")
def bouncer() -> Iterator[pgbouncer.PgBouncer | None]:
    if not THROUGH_PGBOUNCER:
        yield None
        return
    running = pgbouncer.start(TEST_PG_URL)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def stack(databases, bouncer, tmp_path_factory) -> Iterator[Stack]:
    env = {}
    if bouncer is not None:
        env = {
            f"{prefix}_DATABASE_URL": bouncer.url(os.environ[f"{prefix}_DATABASE_URL"])
            for prefix, _, _ in DATABASES
        }
        env["DB_PREPARED_STATEMENTS"] = "false"  # PgBouncer 1.18 cannot keep them
    stack = start_stack(tmp_path_factory.mktemp("logs"), extra_env=env)
    yield stack
    stack.stop()


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    api = Api(stack)
    api.clear_faults()
    api.platform_control()
    yield api
    api.clear_faults()
    api.platform_control()
    api.close()
