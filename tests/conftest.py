"""Test-wide set-up: every test database is separate from the dev ones and migrated fresh.

Tests run against a real PostgreSQL server, never a stand-in: TEST_PG_URL if set, else the one
at 127.0.0.1:5432, else an embedded one (pgserver) started for the session in .data/. The
environment is set here, before any settings are read, so that in-process apps and the processes
the e2e tests start share the same test databases.
"""

import os
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from common.embedded_pg import local_server_answers, start_embedded
from common.settings import DEFAULT_PG_URL

if "TEST_PG_URL" in os.environ:
    TEST_PG_URL = os.environ["TEST_PG_URL"]
elif local_server_answers():
    TEST_PG_URL = DEFAULT_PG_URL
else:
    TEST_PG_URL = start_embedded(Path(__file__).resolve().parents[1] / ".data" / "test-pgserver")

# Two runs side by side need their own databases: TEST_DB_PREFIX=saga_mine pytest ...
PREFIX = os.environ.get("TEST_DB_PREFIX", "saga_test")
# (env prefix, migration history, test database)
DATABASES = [
    ("ORDERS", "order_service", f"{PREFIX}_orders"),
    ("USERS", "user_service", f"{PREFIX}_users"),
    ("PAYMENTS", "payment_service", f"{PREFIX}_payments"),
    ("ORCHESTRATOR", "orchestrator", f"{PREFIX}_orchestrator"),
]

os.environ["APP_ENV"] = "test"
for prefix, _, database in DATABASES:
    os.environ[f"{prefix}_DATABASE_URL"] = str(make_url(TEST_PG_URL).set(database=database))
    os.environ[f"{prefix}_FAULT_INJECTION"] = "true"


def database_url(prefix: str) -> str:
    return os.environ[f"{prefix}_DATABASE_URL"]


@pytest.fixture(scope="session")
def databases() -> None:
    """Drop and re-create every test database at the latest migration, once per session."""
    from common.db import drop_database, migrate

    for prefix, history, _ in DATABASES:
        url = make_url(database_url(prefix)).set(drivername="postgresql+psycopg")
        drop_database(url)
        migrate(url, history)
