"""Test-wide set-up: every test database is separate from the dev ones and migrated fresh.

Tests run against a real PostgreSQL server, never a stand-in: TEST_PG_URL if set, else the one
at 127.0.0.1:5432, else an embedded one (pgserver) started for the session in .data/. The
environment is set here, before any settings are read, so that in-process apps and the processes
the e2e tests start share the same test databases.
"""

import os

import pytest

from tools.stack import FAULT_INJECTION_ENV, database_env, postgres_url, reset_databases

TEST_PG_URL = os.environ.get("TEST_PG_URL") or postgres_url()
# Two runs side by side need their own databases: TEST_DB_PREFIX=saga_mine pytest ...
PREFIX = os.environ.get("TEST_DB_PREFIX", "saga_test")

os.environ["APP_ENV"] = "test"
os.environ.update(database_env(PREFIX, TEST_PG_URL))
os.environ.update(FAULT_INJECTION_ENV)


def database_url(prefix: str) -> str:
    return os.environ[f"{prefix}_DATABASE_URL"]


@pytest.fixture(scope="session")
def databases() -> None:
    """Drop and re-create every test database at the latest migration, once per session."""
    reset_databases(dict(os.environ))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Tests marked `anyio` (async tests and fixtures, on one loop per test) run on asyncio."""
    return "asyncio"
