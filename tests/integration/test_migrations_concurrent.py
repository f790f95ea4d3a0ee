"""Processes that start together migrate one database one at a time: the replicas of a rolling
deploy, and the migrations Job beside them. Directly, and through PgBouncer in transaction mode,
where a session's lock would not hold. The orchestrator's history is the hard case: two of its
migrations commit midway (CREATE INDEX CONCURRENTLY, in an `autocommit_block()`)."""

import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url

from common.db import drop_database, head_revision
from tests.conftest import PREFIX, TEST_PG_URL
from tools import pgbouncer
from tools.stack import ROOT

MIGRATORS = 4


@pytest.fixture(params=["direct", "pgbouncer"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "direct":
        yield TEST_PG_URL
        return
    if pgbouncer.binary() is None:
        pytest.skip("pgbouncer is not installed (make pgbouncer)")
    bouncer = pgbouncer.start(TEST_PG_URL)
    yield bouncer.url(TEST_PG_URL)
    bouncer.stop()


def _database(server_url: str, name: str) -> URL:
    return make_url(server_url).set(drivername="postgresql+psycopg", database=f"{PREFIX}_{name}")


@pytest.mark.parametrize(
    ("history", "prefix"), [("orchestrator", "ORCHESTRATOR"), ("user_service", "USERS")]
)
def test_migrators_started_together_each_end_at_head(server_url: str, history: str, prefix: str):
    url = _database(server_url, f"migrate_race_{history}").set(drivername="postgresql")
    drop_database(_database(TEST_PG_URL, f"migrate_race_{history}"))
    env = {**os.environ, f"{prefix}_DATABASE_URL": url.render_as_string(hide_password=False)}
    try:
        migrators = [
            subprocess.Popen(
                [sys.executable, "-m", history, "migrate"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(MIGRATORS)
        ]
        for migrator in migrators:
            _, errors = migrator.communicate(timeout=120)
            assert migrator.returncode == 0, errors[-3000:]

        direct = _database(TEST_PG_URL, f"migrate_race_{history}").set(drivername="postgresql")
        with psycopg.connect(direct.render_as_string(hide_password=False)) as conn:
            versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert versions == [(head_revision(history),)]
    finally:
        drop_database(_database(TEST_PG_URL, f"migrate_race_{history}"))
