"""`python -m orchestrator purge --older-than 30d [--batch 5000] [--dry-run] [--archive FILE]`:
delete finished sagas, with their step attempts and outbox events, once they are old.

What goes: a saga that is COMPLETED or COMPENSATED, finished longer ago than the given age, and
whose outbox events were all DELIVERED. What stays: NEEDS_ATTENTION (an operator still has to
look), RUNNING and COMPENSATING ones, recent ones, and any saga with an event the data platform
has not received yet (it is purged by a later run, once the relay delivered it).

Why delete, and archive only on request: a purged saga's effects are recorded where they belong,
in the domain services' databases (the order, the payment, the balance ledger), and its outcome
reached the data platform (that is what DELIVERED means). What is lost is how it got there: the
step attempts, retries and compensations, useful to an operator for weeks, not years. Where a
retention policy wants that too, `--archive FILE` (`.jsonl`, or `.jsonl.gz`) appends one JSON
line per saga (`{"saga": {...}, "steps": [...], "outbox": [...]}`, every column) and syncs the
file before the deletion commits: a saga is never deleted without its line, and a batch whose
commit failed is archived again by the next run (readers deduplicate by saga id). A file, not an
archive table: the point is to shrink the database, and a file goes to cold storage as it is.

Safe beside running orchestrators and relays: they never write a finished saga again, nor its
events once delivered; the batch takes its sagas with `FOR UPDATE SKIP LOCKED` and each batch is
its own short transaction (`--batch` sagas, 5,000 by default). Purging also ends a start
request's idempotency window: a retried `Idempotency-Key` older than the age is not recognised
any more (the order's own status still refuses paying it twice), so keep the age well beyond
any client's retry horizon. The space is reused after autovacuum; nothing needs VACUUM FULL.
"""

import argparse
import gzip
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Exists,
    Subquery,
    create_engine,
    delete,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from sagaengine.definition import FINAL_STATUSES
from sagaengine.schema import Base, OutboxMessage, SagaRecord, StepAttempt
from sagaengine.store import OutboxStatus

log = logging.getLogger(__name__)

FINISHED = sorted(FINAL_STATUSES)  # COMPLETED, COMPENSATED: the same as ix_sagas_finished
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(value: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `3600s`."""
    match = re.fullmatch(r"(\d+)([smhdw])", value.strip())
    if not match:
        raise ValueError(f"{value!r} is not an age like 30d, 12h, 90m, 2w")
    return timedelta(seconds=int(match[1]) * UNITS[match[2]])


@dataclass
class PurgeReport:
    cutoff: datetime
    sagas: int = 0
    steps: int = 0
    events: int = 0
    batches: int = 0
    kept_undelivered: int = 0  # finished before the cutoff, but an event is not delivered yet


def _undelivered_event() -> Exists:
    return (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.saga_id == SagaRecord.id, OutboxMessage.status != OutboxStatus.DELIVERED
        )
        .exists()
    )


def _finished_before(cutoff: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return SagaRecord.status.in_(FINISHED), SagaRecord.finished_at < cutoff


def _row(model: type[Base]) -> ColumnElement[Any]:
    """The whole row as JSON, every column (including ones added later)."""
    return func.to_jsonb(literal_column(model.__tablename__))


def cutoff_of(conn: Connection, older_than: timedelta) -> datetime:
    """Fixed once per run, by the database's clock: the run ends even as sagas keep finishing."""
    cutoff: datetime = conn.execute(select(func.now() - older_than)).scalar_one()
    return cutoff


def count(conn: Connection, cutoff: datetime) -> tuple[int, int]:
    """(purgeable, kept because an event is undelivered) among sagas finished before `cutoff`."""
    undelivered = _undelivered_event()
    purgeable, kept = conn.execute(
        select(func.count().filter(~undelivered), func.count().filter(undelivered)).where(
            *_finished_before(cutoff)
        )
    ).one()
    return purgeable, kept


@dataclass
class Batch:
    sagas: int
    steps: int
    events: int
    lines: list[str]  # the archive's JSON lines, when asked for


def purge_batch(conn: Connection, cutoff: datetime, batch: int, archive: bool = False) -> Batch:
    """Delete up to `batch` purgeable sagas with their steps and events, in one statement (the
    caller commits). With `archive`, return the deleted rows as one JSON line per saga."""
    doomed = (
        select(SagaRecord.id)
        .where(*_finished_before(cutoff), ~_undelivered_event())
        .order_by(SagaRecord.finished_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("doomed")
    )
    steps = (
        delete(StepAttempt)
        .where(StepAttempt.saga_id.in_(select(doomed.c.id)))
        .returning(StepAttempt.saga_id, StepAttempt.id, _row(StepAttempt).label("data"))
        .cte("purged_steps")
    )
    events = (
        delete(OutboxMessage)
        .where(OutboxMessage.saga_id.in_(select(doomed.c.id)))
        .returning(OutboxMessage.saga_id, OutboxMessage.id, _row(OutboxMessage).label("data"))
        .cte("purged_events")
    )
    # The steps and events go in the same statement: the foreign key is checked at its end.
    sagas = (
        delete(SagaRecord)
        .where(SagaRecord.id.in_(select(doomed.c.id)))
        .returning(SagaRecord.id, _row(SagaRecord).label("data"))
        .cte("purged_sagas")
    )
    if not archive:
        counts = conn.execute(
            select(
                *(
                    select(func.count()).select_from(t).scalar_subquery()
                    for t in (sagas, steps, events)
                )
            )
        ).one()
        return Batch(counts[0], counts[1], counts[2], lines=[])

    def by_saga(deleted: CTE) -> Subquery:
        rows = func.jsonb_agg(aggregate_order_by(deleted.c.data, deleted.c.id))
        return select(deleted.c.saga_id, rows.label("rows")).group_by(deleted.c.saga_id).subquery()

    saga_steps, saga_events = by_saga(steps), by_saga(events)
    rows = conn.execute(
        select(
            sagas.c.data,
            func.coalesce(saga_steps.c.rows, func.jsonb_build_array()),
            func.coalesce(saga_events.c.rows, func.jsonb_build_array()),
        )
        .select_from(sagas)
        .outerjoin(saga_steps, saga_steps.c.saga_id == sagas.c.id)
        .outerjoin(saga_events, saga_events.c.saga_id == sagas.c.id)
    ).all()
    lines = [
        json.dumps({"saga": saga, "steps": s, "outbox": e}, separators=(",", ":")) + "\n"
        for saga, s, e in rows
    ]
    return Batch(len(rows), sum(len(s) for _, s, _ in rows), sum(len(e) for _, _, e in rows), lines)


class Archive:
    """An append-only JSONL file (gzip if it ends in .gz: one gzip member per batch, which
    gzip, zcat and Python read as one stream)."""

    def __init__(self, path: Path):
        self.path = path
        self.file = path.open("ab")

    def write(self, lines: list[str]) -> None:
        """Written and synced to disk: only then may the batch's deletion commit."""
        data = "".join(lines).encode()
        self.file.write(gzip.compress(data) if self.path.suffix == ".gz" else data)
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def purge(
    url: URL | str,
    older_than: timedelta,
    *,
    batch: int = 5000,
    dry_run: bool = False,
    archive_path: Path | None = None,
) -> PurgeReport:
    """Purge in batches until none is left; each batch is one transaction."""
    # Never prepared: one statement per batch gains nothing by it, and a purge may run through
    # PgBouncer in transaction mode, which cannot keep prepared statements (before 1.21).
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"prepare_threshold": None, "connect_timeout": 5}
    )
    archive = Archive(archive_path) if archive_path and not dry_run else None
    try:
        with engine.connect() as conn:
            report = PurgeReport(cutoff=cutoff_of(conn, older_than))
            conn.rollback()
            if dry_run:
                report.sagas, report.kept_undelivered = count(conn, report.cutoff)
                return report
            while True:
                with conn.begin():
                    done = purge_batch(conn, report.cutoff, batch, archive is not None)
                    if archive is not None and done.lines:
                        archive.write(done.lines)
                report.batches += 1
                report.sagas += done.sagas
                report.steps += done.steps
                report.events += done.events
                log.info("purge: batch %d: %d sagas", report.batches, done.sagas)
                if done.sagas < batch:  # none left (or the rest is locked: the next run's)
                    break
            report.kept_undelivered = count(conn, report.cutoff)[1]
            conn.rollback()
            return report
    finally:
        if archive is not None:
            archive.close()
        engine.dispose()


def _age(value: str) -> timedelta:
    try:
        return parse_age(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(url: URL, argv: list[str], prog: str = "purge") -> None:
    """A `purge` command over the saga database at `url` (`python -m orchestrator purge`)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Delete finished sagas older than an age, with their steps and delivered "
        "outbox events, in batches (see sagaengine/purge.py). It never migrates the database.",
    )
    parser.add_argument(
        "--older-than", type=_age, required=True, help="time since the finish: 30d, 12h, 2w"
    )
    parser.add_argument(
        "--batch", type=int, default=5000, help="sagas per transaction (default: 5000)"
    )
    parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    parser.add_argument(
        "--archive", type=Path, help="append each purged saga to this JSONL file (.gz: gzip)"
    )
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    try:
        report = purge(
            url,
            args.older_than,
            batch=args.batch,
            dry_run=args.dry_run,
            archive_path=args.archive,
        )
    except OperationalError as error:  # the server cannot be reached: say so, no traceback
        parser.exit(1, f"{prog}: the database {url.database} cannot be reached: {error.orig}\n")
    except ProgrammingError as error:  # no saga tables: a purge does not create them
        parser.exit(
            1,
            f"{prog}: the database {url.database} is not migrated ({error.orig}); "
            "run `python -m orchestrator migrate` first\n",
        )
    cutoff = report.cutoff.isoformat(timespec="seconds")
    if args.dry_run:
        print(f"dry run: {report.sagas} sagas finished before {cutoff} would be purged")
    else:
        where = f", archived to {args.archive}" if args.archive else ""
        print(
            f"purged {report.sagas} sagas finished before {cutoff} ({report.steps} step "
            f"attempts, {report.events} outbox events) in {report.batches} batches{where}"
        )
    if report.kept_undelivered:
        print(f"kept {report.kept_undelivered} whose outbox event is not delivered yet")
