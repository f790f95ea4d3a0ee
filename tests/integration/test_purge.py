"""The purge of finished sagas (`python -m orchestrator purge`), against the orchestrator's real
PostgreSQL test database.

Each test writes its own sagas straight into the tables, with finish times in the past, and
deletes what it wrote at the end: the purge works on the whole table, so no test may leave an
old finished saga behind for the next one to count.
"""

import gzip
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, delete, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from common.db import drop_database
from sagaengine import purge as saga_purge
from sagaengine.schema import OutboxMessage, SagaRecord, StepAttempt
from tests.conftest import database_url
from tools.stack import ROOT

pytestmark = pytest.mark.usefixtures("databases")

MONTH = timedelta(days=30)


@pytest.fixture(scope="module")
def engine(databases: None) -> Iterator[Engine]:
    url = make_url(database_url("ORCHESTRATOR")).set(drivername="postgresql+psycopg")
    engine = create_engine(url, poolclass=NullPool)
    yield engine
    engine.dispose()


class Sagas:
    """Sagas written as the orchestrator leaves them, and removed after the test."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.ids: list[uuid.UUID] = []

    def add(
        self,
        status: str = "COMPLETED",
        *,
        finished_days_ago: float | None = 40,
        events: tuple[str, ...] = ("DELIVERED",),
        steps: int = 4,
    ) -> uuid.UUID:
        saga_id = uuid.uuid4()
        now = datetime.now(UTC)
        finished = now - timedelta(days=finished_days_ago) if finished_days_ago else None
        started = (finished or now) - timedelta(seconds=1)
        with self.engine.begin() as conn:
            conn.execute(
                insert(SagaRecord).values(
                    id=saga_id,
                    type="payment",
                    definition_version=1,
                    status=status,
                    phase="action",
                    step=steps,
                    payload={"order_id": 1},
                    results={},
                    lock_key=f"order:purge-test-{saga_id}",
                    created_at=started,
                    updated_at=finished or now,
                    finished_at=finished,
                )
            )
            for step in range(steps):
                conn.execute(
                    insert(StepAttempt).values(
                        saga_id=saga_id,
                        step=step,
                        step_name=f"step{step}",
                        phase="action",
                        attempt=1,
                        status="SUCCEEDED",
                        idempotency_key=f"{saga_id}:step{step}:action",
                        owner="test",
                        request={"path": "/"},
                        response={},
                        started_at=started,
                        finished_at=started,
                    )
                )
            for status_of_event in events:
                conn.execute(
                    insert(OutboxMessage).values(
                        event_id=uuid.uuid4(),
                        saga_id=saga_id,
                        aggregate_id=f"order:purge-test-{saga_id}",
                        type="order.paid",
                        payload={"saga_id": str(saga_id)},
                        status=status_of_event,
                        # Not due for years: a live relay on this database (the end-to-end
                        # tests' orchestrator) must not deliver a pending one under the test.
                        next_attempt_at=datetime.now(UTC) + timedelta(days=3650),
                    )
                )
        self.ids.append(saga_id)
        return saga_id

    def rows(self, saga_id: uuid.UUID) -> tuple[int, int, int]:
        """(saga, step attempts, outbox events) still stored for this saga."""
        with self.engine.connect() as conn:
            return tuple(
                conn.scalar(select(func.count()).select_from(model).where(column == saga_id))
                for model, column in (
                    (SagaRecord, SagaRecord.id),
                    (StepAttempt, StepAttempt.saga_id),
                    (OutboxMessage, OutboxMessage.saga_id),
                )
            )

    def remove(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(StepAttempt).where(StepAttempt.saga_id.in_(self.ids)))
            conn.execute(delete(OutboxMessage).where(OutboxMessage.saga_id.in_(self.ids)))
            conn.execute(delete(SagaRecord).where(SagaRecord.id.in_(self.ids)))


@pytest.fixture
def sagas(engine: Engine) -> Iterator[Sagas]:
    sagas = Sagas(engine)
    yield sagas
    sagas.remove()


def purge(engine: Engine, **options) -> saga_purge.PurgeReport:
    return saga_purge.purge(engine.url, options.pop("older_than", MONTH), **options)


GONE = (0, 0, 0)


def test_purges_old_finished_sagas_with_their_steps_and_delivered_events(engine, sagas):
    completed = sagas.add("COMPLETED", steps=4)
    compensated = sagas.add("COMPENSATED", steps=7, events=("DELIVERED", "DELIVERED"))

    report = purge(engine)

    assert sagas.rows(completed) == GONE
    assert sagas.rows(compensated) == GONE
    assert (report.sagas, report.steps, report.events) == (2, 11, 3)


def test_keeps_what_is_not_finished_recent_or_undelivered(engine, sagas):
    kept = {
        "needs attention": sagas.add("NEEDS_ATTENTION", finished_days_ago=None),
        # Unfinished sagas have no finish time; even a stale one with an old one is not touched.
        "running": sagas.add("RUNNING", finished_days_ago=None, events=()),
        "compensating": sagas.add("COMPENSATING", finished_days_ago=None, events=()),
        "running, stale": sagas.add("RUNNING", finished_days_ago=40, events=()),
        "recent": sagas.add("COMPLETED", finished_days_ago=29),
        "undelivered": sagas.add("COMPLETED", events=("PENDING",)),
        "one undelivered": sagas.add("COMPENSATED", events=("DELIVERED", "PENDING")),
    }
    before = {name: sagas.rows(saga_id) for name, saga_id in kept.items()}
    purged = sagas.add("COMPLETED")

    report = purge(engine)

    assert {name: sagas.rows(saga_id) for name, saga_id in kept.items()} == before
    assert sagas.rows(purged) == GONE
    assert (report.sagas, report.kept_undelivered) == (1, 2)


def test_dry_run_counts_and_changes_nothing(engine, sagas):
    purgeable = [sagas.add("COMPLETED"), sagas.add("COMPENSATED")]
    undelivered = sagas.add("COMPLETED", events=("PENDING",))
    before = [sagas.rows(saga_id) for saga_id in [*purgeable, undelivered]]

    report = purge(engine, dry_run=True)

    assert (report.sagas, report.kept_undelivered) == (2, 1)
    assert [sagas.rows(saga_id) for saga_id in [*purgeable, undelivered]] == before


def test_purges_in_batches_of_bounded_size(engine, sagas):
    old = [sagas.add("COMPLETED", finished_days_ago=31 + i) for i in range(23)]

    report = purge(engine, batch=5)

    assert (report.sagas, report.batches) == (23, 5)
    assert all(sagas.rows(saga_id) == GONE for saga_id in old)


def test_skips_a_saga_another_transaction_holds_and_never_waits_for_it(engine, sagas):
    held, free = sagas.add("COMPLETED"), sagas.add("COMPLETED")
    with engine.connect() as other:
        other.execute(select(SagaRecord.id).where(SagaRecord.id == held).with_for_update())

        report = purge(engine)

        other.rollback()
    assert sagas.rows(held) == (1, 4, 1)
    assert sagas.rows(free) == GONE
    assert report.sagas == 1


def test_archive_holds_every_column_of_what_was_purged(engine, sagas, tmp_path):
    purged = {sagas.add("COMPENSATED", steps=3), sagas.add("COMPLETED", steps=4)}
    archive = tmp_path / "sagas.jsonl.gz"

    purge(engine, archive_path=archive, batch=1)

    with gzip.open(archive, "rt") as lines:  # one gzip member per batch, read as one stream
        archived = [json.loads(line) for line in lines]
    assert {uuid.UUID(a["saga"]["id"]) for a in archived} == purged
    for line in archived:
        assert set(line["saga"]) == set(SagaRecord.__table__.columns.keys())
        assert len(line["steps"]) == line["saga"]["step"]
        assert [s["step"] for s in line["steps"]] == list(range(line["saga"]["step"]))
        assert [e["status"] for e in line["outbox"]] == ["DELIVERED"]


@pytest.mark.parametrize(
    ("text", "age"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(days=14))],
)
def test_ages_read_with_their_unit(text, age):
    assert saga_purge.parse_age(text) == age


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1y", "1.5d"])
def test_ages_without_a_known_unit_are_refused(text):
    with pytest.raises(ValueError):
        saga_purge.parse_age(text)


def test_command_line_dry_run(engine, sagas):
    sagas.add("COMPLETED")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "purge", "--older-than", "30d", "--dry-run"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dry run: 1 sagas finished before")
    refused = subprocess.run(
        [sys.executable, "-m", "orchestrator", "purge", "--older-than", "soon"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "is not an age" in refused.stderr


def _orchestrator(*args: str, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        env={**os.environ, "ORCHESTRATOR_DATABASE_URL": database},
        capture_output=True,
        text=True,
        timeout=60,
    )


DEAD = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1


def _libpq(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.parametrize("command", ["purge", "relay"])
def test_help_never_touches_the_database(command):
    done = _orchestrator(command, "--help", database=DEAD)
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m orchestrator {command}" in done.stdout
    assert "never migrates" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_purge_with_the_database_down_says_so_in_one_line():
    done = _orchestrator("purge", "--older-than", "30d", database=DEAD)
    assert done.returncode == 1
    assert "the database nowhere cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_purge_does_not_migrate_a_database_as_a_side_effect():
    url = make_url(database_url("ORCHESTRATOR")).set(drivername="postgresql+psycopg")
    empty = url.set(database=f"{url.database}_unmigrated")
    drop_database(empty)
    with psycopg.connect(_libpq(url.set(database="postgres")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{empty.database}"')
    try:
        done = _orchestrator(
            "purge",
            "--older-than",
            "30d",
            database=empty.set(drivername="postgresql").render_as_string(hide_password=False),
        )
        assert done.returncode == 1
        assert "is not migrated" in done.stderr
        with psycopg.connect(_libpq(empty)) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
    finally:
        drop_database(empty)
