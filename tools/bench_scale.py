"""The orchestrator's stored state at scale: seed a million finished sagas, show the plan of every
query the orchestrator sends, and time the admin list.

- `seed_finished_sagas(url, count)`: finished sagas as the orchestrator writes them (a saga row,
  its step attempts, its delivered outbox event), made server-side by `INSERT ... SELECT
  generate_series` in chunks, then VACUUM ANALYZE (the state of a database that has run for a
  month, not of one bulk-loaded a second ago).
- `explain_hot_queries(url) -> str`: the plans, as markdown, of the statements that the real
  store, relay, admin listing and purge send, captured from the driver as they run (against a
  scratch database), so the plans cannot drift from the code. A scan that reads sagas,
  saga_steps or outbox whole (a Seq Scan, or an index scanned end to end) is flagged.
- `admin_list_latency(url, token, n) -> list[float]`: seconds per request of the admin list, as
  JSON (`/admin/sagas`, first page, unfiltered and by status) and as the page (`/admin/ui`).

    python -m tools.bench_scale [--count 1000000] [--prefix saga_scale]

re-creates `<prefix>_orchestrator`, seeds it and prints the plans.
"""

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from common.db import drop_database, migrate, open_pool

CHUNK = 50_000  # sagas per INSERT statement: bounded memory and WAL per transaction
SEED_CONNECTIONS = min(os.cpu_count() or 1, 4)

# The JSON of a saga's calls, as the saga definitions build them (orchestrator/payment_saga.py,
# reservation_saga.py, money_steps.py) and as the services answer. Temporary functions, so that
# the step rows and the saga's results are built from one definition.
SEED_FUNCTIONS = """
CREATE FUNCTION pg_temp.seed_step_name(saga_type text, step int) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE step
        WHEN 0 THEN CASE saga_type WHEN 'payment' THEN 'start_order_payment' ELSE 'hold_seat' END
        WHEN 1 THEN 'deduct_balance'
        WHEN 2 THEN 'approve_payment'
        ELSE CASE saga_type WHEN 'payment' THEN 'complete_order_payment'
             ELSE 'confirm_reservation' END
    END
$$;

CREATE FUNCTION pg_temp.seed_order(n bigint, status text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', 9000000000000 + n, 'user_id', n % 50000 + 1, 'status', status,
        'amount', (n % 97 + 1) * 1000,
        'items', jsonb_build_array(jsonb_build_object(
            'product_id', n % 300 + 1, 'quantity', 1, 'unit_price', (n % 97 + 1) * 1000)))
$$;

CREATE FUNCTION pg_temp.seed_hold(n bigint, status text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'reservation_id', n, 'concert_id', n % 400 + 1, 'seat_id', n, 'user_id', n % 50000 + 1,
        'price', (n % 97 + 1) * 1000, 'status', status,
        'expires_at', '2026-01-01T00:02:00.000000+00:00')
$$;

CREATE FUNCTION pg_temp.seed_request(saga_type text, n bigint, saga uuid, step int, phase text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('method', 'POST') || CASE
        WHEN step = 0 AND saga_type = 'payment' AND phase = 'action' THEN jsonb_build_object(
            'service', 'order', 'path', '/orders/' || (9000000000000 + n) || '/payment-start',
            'body', NULL)
        WHEN step = 0 AND saga_type = 'payment' THEN jsonb_build_object(
            'service', 'order', 'path', '/orders/' || (9000000000000 + n) || '/payment-release',
            'body', jsonb_build_object('start_key', saga || ':start_order_payment:action'))
        WHEN step = 0 AND phase = 'action' THEN jsonb_build_object(
            'service', 'concert',
            'path', '/concerts/' || (n % 400 + 1) || '/seats/' || n || '/holds',
            'body', jsonb_build_object('user_id', n % 50000 + 1))
        WHEN step = 0 THEN jsonb_build_object(
            'service', 'concert', 'path', '/holds/release',
            'body', jsonb_build_object('hold_key', saga || ':hold_seat:action'))
        WHEN step = 1 AND phase = 'action' THEN jsonb_build_object(
            'service', 'user', 'path', '/users/' || (n % 50000 + 1) || '/deductions',
            'body', jsonb_build_object('amount', (n % 97 + 1) * 1000))
        WHEN step = 1 THEN jsonb_build_object(
            'service', 'user', 'path', '/users/' || (n % 50000 + 1) || '/charge-backs',
            'body', jsonb_build_object('amount', (n % 97 + 1) * 1000,
                                       'deduction_key', saga || ':deduct_balance:action'))
        WHEN step = 2 AND phase = 'action' THEN jsonb_build_object(
            'service', 'payment', 'path', '/payments',
            'body', jsonb_build_object('user_id', n % 50000 + 1, 'amount', (n % 97 + 1) * 1000)
                || CASE saga_type WHEN 'payment'
                   THEN jsonb_build_object('order_id', 9000000000000 + n)
                   ELSE jsonb_build_object('reservation_id', n) END)
        WHEN step = 2 THEN jsonb_build_object(
            'service', 'payment', 'path', '/payments/cancellations',
            'body', jsonb_build_object('approval_key', saga || ':approve_payment:action'))
        WHEN saga_type = 'payment' THEN jsonb_build_object(
            'service', 'order', 'path', '/orders/' || (9000000000000 + n) || '/payment-complete',
            'body', NULL)
        ELSE jsonb_build_object(
            'service', 'concert', 'path', '/reservations/' || n || '/confirm', 'body', NULL)
    END
$$;

CREATE FUNCTION pg_temp.seed_response(saga_type text, n bigint, step int, phase text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN step = 0 AND saga_type = 'payment' AND phase = 'action'
            THEN pg_temp.seed_order(n, 'PAYMENT_IN_PROGRESS')
        WHEN step = 0 AND saga_type = 'payment' THEN jsonb_build_object(
            'order', pg_temp.seed_order(n, 'PENDING'), 'released', true)
        WHEN step = 0 AND phase = 'action' THEN pg_temp.seed_hold(n, 'HELD')
        WHEN step = 0 THEN pg_temp.seed_hold(n, 'RELEASED')
        WHEN step = 1 THEN jsonb_build_object(
            'user_id', n % 50000 + 1, 'amount', (n % 97 + 1) * 1000, 'balance', 1000000 + n % 7919)
        WHEN step = 2 THEN jsonb_build_object(
            'id', n, 'user_id', n % 50000 + 1, 'amount', (n % 97 + 1) * 1000,
            'status', CASE phase WHEN 'action' THEN 'APPROVED' ELSE 'CANCELLED' END,
            'order_id', CASE saga_type WHEN 'payment' THEN 9000000000000 + n END,
            'reservation_id', CASE saga_type WHEN 'reservation' THEN n END)
        WHEN saga_type = 'payment' THEN pg_temp.seed_order(n, 'PAID')
        ELSE pg_temp.seed_hold(n, 'CONFIRMED')
    END
$$;
"""

# The attempts of each outcome, in the order they ran: a completed saga's four actions; a
# compensated one whose payment approval kept failing (5xx), so that its own compensation (by
# key) and the earlier steps' ran, in reverse.
SEED_ATTEMPTS = """
    (VALUES
        ('COMPLETED', 0, 0, 'action', 1, 'SUCCEEDED'),
        ('COMPLETED', 1, 1, 'action', 1, 'SUCCEEDED'),
        ('COMPLETED', 2, 2, 'action', 1, 'SUCCEEDED'),
        ('COMPLETED', 3, 3, 'action', 1, 'SUCCEEDED'),
        ('COMPENSATED', 0, 0, 'action', 1, 'SUCCEEDED'),
        ('COMPENSATED', 1, 1, 'action', 1, 'SUCCEEDED'),
        ('COMPENSATED', 2, 2, 'action', 1, 'FAILED'),
        ('COMPENSATED', 3, 2, 'action', 2, 'FAILED'),
        ('COMPENSATED', 4, 2, 'compensation', 1, 'SUCCEEDED'),
        ('COMPENSATED', 5, 1, 'compensation', 1, 'SUCCEEDED'),
        ('COMPENSATED', 6, 0, 'compensation', 1, 'SUCCEEDED')
    ) AS t(outcome, ord, step, phase, attempt, status)
"""

# One chunk of sagas n in [lo, hi]: 1 in 7 a reservation, 1 in 10 compensated, half started with
# an Idempotency-Key, created at random over the past 30 days. Lock keys and order ids are out of
# reach of live sagas (`order:seed-<tag>-<n>`, orders 9e12 + n).
SEED_CHUNK = f"""
WITH g AS MATERIALIZED (
    SELECT n, gen_random_uuid() AS id,
           CASE WHEN n % 7 = 0 THEN 'reservation' ELSE 'payment' END AS type,
           CASE WHEN n % 10 = 3 THEN 'COMPENSATED' ELSE 'COMPLETED' END AS status,
           now() - interval '1 hour' - random() * interval '30 days' AS created_at
    FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS n
), timed AS (
    SELECT g.*,
           created_at + CASE status WHEN 'COMPLETED' THEN interval '170 ms'
                                    ELSE interval '290 ms' END AS finished_at
    FROM g
), saga_rows AS (
    INSERT INTO sagas (id, type, definition_version, status, phase, step, payload, results,
                       error, attention, client_key, lock_key, request_id, lease_owner,
                       lease_expires_at, created_at, updated_at, finished_at, keys)
    SELECT id, type, 1, status,
           CASE status WHEN 'COMPLETED' THEN 'action' ELSE 'compensation' END,
           CASE status WHEN 'COMPLETED' THEN 4 ELSE -1 END,
           CASE type
               WHEN 'payment' THEN jsonb_build_object(
                   'order_id', 9000000000000 + n, 'order', pg_temp.seed_order(n, 'PENDING')
                   - 'id' - 'status')
               ELSE jsonb_build_object('concert_id', n % 400 + 1, 'seat_id', n,
                                       'user_id', n % 50000 + 1, 'price', (n % 97 + 1) * 1000)
           END,
           jsonb_build_object(
               pg_temp.seed_step_name(type, 0), pg_temp.seed_response(type, n, 0, 'action'),
               'deduct_balance', pg_temp.seed_response(type, n, 1, 'action'))
           || CASE status WHEN 'COMPLETED' THEN jsonb_build_object(
               'approve_payment', pg_temp.seed_response(type, n, 2, 'action'),
               pg_temp.seed_step_name(type, 3), pg_temp.seed_response(type, n, 3, 'action'))
              ELSE '{{}}'::jsonb END,
           CASE status WHEN 'COMPENSATED' THEN jsonb_build_object(
               'code', 'http_503', 'message', 'Service Unavailable', 'status_code', 503,
               'step', 'approve_payment') END,
           NULL,
           CASE WHEN n % 2 = 0 THEN 'seed-' || :tag || '-' || n END,
           CASE type WHEN 'payment' THEN 'order:seed-' || :tag || '-' || n
                ELSE 'seat:seed-' || :tag || '-' || n || ':user:' || (n % 50000 + 1) END,
           md5(:tag || n), NULL, NULL, created_at, finished_at, finished_at,
           CASE type
               WHEN 'payment' THEN jsonb_build_object(
                   'order_id', 9000000000000 + n, 'user_id', n % 50000 + 1)
               ELSE jsonb_build_object('concert_id', n % 400 + 1, 'seat_id', n,
                                       'user_id', n % 50000 + 1)
           END
    FROM timed
), step_rows AS (
    INSERT INTO saga_steps (saga_id, step, step_name, phase, attempt, status, idempotency_key,
                            owner, request, response, error, started_at, finished_at)
    SELECT g.id, t.step, pg_temp.seed_step_name(g.type, t.step), t.phase, t.attempt, t.status,
           g.id || ':' || pg_temp.seed_step_name(g.type, t.step) || ':' || t.phase,
           'seed:8000#' || :tag || '.' || left(md5(g.id::text), 12),
           pg_temp.seed_request(g.type, g.n, g.id, t.step, t.phase),
           CASE t.status WHEN 'SUCCEEDED'
               THEN pg_temp.seed_response(g.type, g.n, t.step, t.phase) END,
           CASE t.status WHEN 'FAILED' THEN jsonb_build_object(
               'code', 'http_503', 'message', 'Service Unavailable', 'status_code', 503) END,
           g.created_at + t.ord * interval '40 ms' + interval '5 ms',
           g.created_at + t.ord * interval '40 ms' + interval '30 ms'
    FROM g JOIN {SEED_ATTEMPTS} ON t.outcome = g.status
)
INSERT INTO outbox (event_id, saga_id, aggregate_id, type, payload, occurred_at, status,
                    attempts, next_attempt_at, delivered_at)
SELECT gen_random_uuid(), id,
       CASE type WHEN 'payment' THEN 'order:' || (9000000000000 + n) ELSE 'seat:' || n END,
       CASE WHEN type = 'payment' AND status = 'COMPLETED' THEN 'order.paid'
            WHEN type = 'payment' THEN 'order.payment_failed'
            WHEN status = 'COMPLETED' THEN 'reservation.confirmed'
            ELSE 'reservation.failed' END,
       jsonb_build_object('saga_id', id, 'user_id', n % 50000 + 1,
                          'amount', (n % 97 + 1) * 1000)
       || CASE type
              WHEN 'payment' THEN jsonb_build_object(
                  'order_id', 9000000000000 + n,
                  'items', pg_temp.seed_order(n, 'PAID') -> 'items')
              ELSE jsonb_build_object('concert_id', n % 400 + 1, 'seat_id', n,
                                      'reservation_id', n) END
       || CASE status WHEN 'COMPENSATED' THEN jsonb_build_object('reason', jsonb_build_object(
              'code', 'http_503', 'message', 'Service Unavailable', 'status_code', 503,
              'step', 'approve_payment')) ELSE '{{}}'::jsonb END,
       finished_at, 'DELIVERED', 1, finished_at, finished_at + interval '40 ms'
FROM timed
"""

SEEDED_TABLES = ("sagas", "saga_steps", "outbox")


def _sync_url(url: str | URL) -> URL:
    return make_url(url).set(drivername="postgresql+psycopg")


def _seed_chunks(engine: Engine, chunks: list[tuple[int, int]], tag: str) -> None:
    with engine.connect() as conn:
        conn.execute(text("SET jit = off"))  # compiling the chunk costs more than it saves
        conn.execute(text(SEED_FUNCTIONS))
        for lo, hi in chunks:
            started = time.perf_counter()
            conn.execute(text(SEED_CHUNK), {"lo": lo, "hi": hi, "tag": tag})
            conn.commit()
            elapsed = time.perf_counter() - started
            print(f"  seeded sagas {lo:,}..{hi:,} in {elapsed:.1f} s", file=sys.stderr)


def seed_finished_sagas(orchestrator_db_url: str, count: int = 1_000_000) -> None:
    """Insert `count` finished sagas with their step attempts and delivered outbox events, then
    VACUUM ANALYZE the three tables. Safe beside a running orchestrator: every key is new."""
    tag = secrets.token_hex(3)  # a second seeding of the same database gets other keys
    chunks = [(lo, min(lo + CHUNK - 1, count)) for lo in range(1, count + 1, CHUNK)]
    engine = create_engine(_sync_url(orchestrator_db_url), poolclass=NullPool)
    try:
        # One connection per core: the inserts are CPU-bound on the server.
        with ThreadPoolExecutor(SEED_CONNECTIONS) as pool:
            shares = [chunks[i::SEED_CONNECTIONS] for i in range(SEED_CONNECTIONS)]
            list(pool.map(lambda share: _seed_chunks(engine, share, tag), shares))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM (ANALYZE) {', '.join(SEEDED_TABLES)}"))
    finally:
        engine.dispose()


# -- plans ---------------------------------------------------------------------------------------


class _Capture:
    """Every statement the driver is sent, with its parameters, under the label of the call
    that sent it (the calls are made one at a time); calls that failed, with their error."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.statements: list[tuple[str, str, Any]] = []
        self.failed: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statement(statement, parameters)

    def statement(self, statement: str, parameters: Any) -> None:
        """A statement about to be sent: SQLAlchemy's event, or the hot path's hook."""
        if self.current and statement.lstrip().split(None, 1)[0].upper() in STATEMENTS:
            self.statements.append((self.current, statement, parameters))

    @contextlib.contextmanager
    def label(self, name: str) -> Iterator[None]:
        """Capture under `name`; a call that fails (the code changed under it) is reported,
        not fatal."""
        self.current = name
        try:
            yield
        except Exception as exc:
            self.failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
        finally:
            self.current = None


STATEMENTS = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}


async def _run_the_queries(
    scratch: URL, capture: _Capture, cursor: tuple[datetime, uuid.UUID] | None
) -> None:
    """Make the calls the orchestrator makes, through the real store and relay, against a
    scratch database: one saga through its steps, a lease that expires and is claimed, its
    event relayed, and the admin page's reads (`cursor`: a page boundary of the seeded
    database, so that the next-page query is explained where it matters)."""
    from orchestrator.admin_queries import AdminQueries
    from orchestrator.definitions import SAGAS
    from sagaengine.decisions import Position
    from sagaengine.definition import OutcomeEvent, Phase, RemoteCall, SagaStatus
    from sagaengine.outbox import OutboxRelay, RelayPolicy
    from sagaengine.postgres import PostgresSagaStore
    from sagaengine.store import AttemptStatus, OutboxStatus, Owner

    engine = create_async_engine(scratch, poolclass=NullPool)
    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    # The hot path is plain SQL through its own pool: its statements are seen by the store.
    pool = await open_pool(scratch, 2)
    store = PostgresSagaStore(pool, lease_seconds=30)
    store.sql.statement_hook = capture.statement
    admin = AdminQueries(sessions)  # the admin reads, on SQLAlchemy: captured by the listener
    owner = Owner.new("explain:0")
    key, lock = f"explain-{uuid.uuid4()}", f"order:explain-{uuid.uuid4()}"
    token, state = owner.lease_token(), None
    call = RemoteCall("order", "POST", "/orders/1/payment-start")
    try:
        with capture.label("start: insert the saga"):
            state = await store.create(
                SAGAS.current["payment"], {"order_id": 1}, key, lock, token, "r"
            )
        assert state is not None, "the probe saga was not created"
        with capture.label("start: find by client key"):
            await store.find_by_client_key("payment", key)
        with capture.label("start: find the live saga by lock key"):
            await store.find_live_by_lock_key(lock)
        attempt = 0
        with capture.label("step: write-ahead attempt"):
            attempt = await store.begin_attempt(
                state.id, token, 0, "start_order_payment", Phase.ACTION, "k", call
            )
        with capture.label("step: finish attempt"):
            await store.finish_attempt(
                state.id, token, attempt, AttemptStatus.SUCCEEDED, response={}
            )
        with capture.label("step: had an unknown outcome"):
            await store.had_unknown_outcome(state.id, 0, Phase.ACTION)
        with capture.label("saga: move to the next step"):
            await store.move(
                state, token, Position(SagaStatus.RUNNING, 1, Phase.ACTION), result=("s", {})
            )
        with capture.label("saga: get by id (status, ?wait=)"):
            await store.get(state.id)
        with capture.label("saga: its step attempts"):
            await admin.attempts(state.id)
        with capture.label("step: write-ahead attempt (left unfinished)"):
            await store.begin_attempt(state.id, token, 1, "deduct_balance", Phase.ACTION, "k", call)
        async with engine.connect() as conn:  # the run died: its lease expires (not captured)
            await conn.execute(text("UPDATE sagas SET lease_expires_at = now() - interval '1 s'"))
            await conn.commit()
        claimed: list[tuple[uuid.UUID, str]] = []
        with capture.label("recovery: claim expired leases"):
            claimed = await store.claim_expired(owner, 100)
        with capture.label("recovery: claim at start (own orphans too)"):
            await store.claim_expired(owner, 100, own_orphans=True)
        token = claimed[0][1] if claimed else token
        with capture.label("saga: move to final, with its outbox event"):
            done = Position(SagaStatus.COMPLETED, 4, Phase.ACTION)
            outcome = OutcomeEvent(lock, "order.paid", {"order_id": 1})
            await store.move(replace(state, step=1), token, done, event=outcome)
        # Statistics for the scratch tables (a few hundred finished sagas, so that they have a
        # most common status), so that the page's counts take the path they take on a large
        # table (exact_below=0 below) rather than counting a table never analyzed.
        await asyncio.to_thread(
            seed_finished_sagas, scratch.render_as_string(hide_password=False), 500
        )
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE sagas, outbox"))
        ok = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
        async with httpx.AsyncClient(transport=ok, base_url="http://platform") as http:
            relay = OutboxRelay(pool, http, owner="explain", policy=RelayPolicy())
            relay.sql.statement_hook = capture.statement
            with capture.label("relay: claim"):
                claim_token, events = await relay.claim(50)
                with capture.label("relay: mark delivered"):
                    await relay.deliver(claim_token, events)
            with capture.label("relay: the backlog metric (every second)"):
                await relay.pending()
            # exact_below=0: the statements the page sends once the table is large, which
            # is what the seeded database is (the scratch one is not).
            with capture.label("admin page: outbox counts at a glance"):
                await admin.outbox_backlog(at_a_glance=True, exact_below=0)
            with capture.label("/admin/outbox: exact outbox counts (an API call, not a page)"):
                await admin.outbox_backlog()
        with capture.label("admin: outbox rows"):
            await admin.outbox_messages(None, 100)
            await admin.outbox_messages(OutboxStatus.PENDING, 100)
        with capture.label("shutdown: release leases"):
            await store.release_leases(owner)
        with capture.label("admin: retry"):
            resume = Position(SagaStatus.RUNNING, 1, Phase.ACTION)
            await store.claim_for_retry(state.id, owner, resume)
        for status in (None, SagaStatus.COMPLETED, SagaStatus.NEEDS_ATTENTION):
            with capture.label(f"admin list: first page, status={status}"):
                await admin.page(status=status, saga_type=None, limit=51, after=None)
        with capture.label("admin list: first page, type=reservation"):
            await admin.page(status=None, saga_type="reservation", limit=51, after=None)
        with capture.label("admin list: since a day ago"):
            since = datetime.now(UTC) - timedelta(days=1)
            await admin.page(status=None, saga_type=None, limit=51, after=None, since=since)
        with capture.label("admin list: next page (cursor)"):
            await admin.page(status=None, saga_type=None, limit=51, after=cursor)
        with capture.label("admin page: counts by status at a glance"):
            await admin.counts_at_a_glance(exact_below=0)
        with capture.label("/admin/stats: exact counts by status (an API call, not a page)"):
            await admin.count_by_status()
    finally:
        await pool.close()
        await engine.dispose()


def _run_the_purge(scratch: URL, capture: _Capture) -> None:
    """The purge as it runs daily with a month's age: a day of the seeded month is past it."""
    from sagaengine import purge

    engine = create_engine(scratch, poolclass=NullPool)
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as conn:
            cutoff = purge.cutoff_of(conn, timedelta(days=29))
            with capture.label("purge: dry-run count"):
                purge.count(conn, cutoff)
            with capture.label("purge: one batch"):
                purge.purge_batch(conn, cutoff, 5000)
            with capture.label("purge: one batch, archived"):
                purge.purge_batch(conn, cutoff, 5000, archive=True)
            conn.rollback()
    finally:
        engine.dispose()


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip(" ->"))


def _full_scans(plan: list[str]) -> list[str]:
    """The scans of the saga tables that read them whole: every Seq Scan, and index scans of
    many rows with no Index Cond that no Limit above stops early (a count over an index)."""
    found = []
    for i, line in enumerate(plan):
        scan = re.search(
            r"(Seq Scan|Index Scan|Index Only Scan)( Backward)? (using \w+ )?on (\w+)", line
        )
        if not scan or scan[4] not in SEEDED_TABLES:
            continue
        if scan[1] == "Seq Scan":
            found.append(f"Seq Scan on {scan[4]}")
            continue
        depth = _depth(line)
        details = []
        for below in plan[i + 1 :]:
            if "->" in below or _depth(below) <= depth:
                break
            details.append(below.strip())
        bounded = any("Limit" in above and _depth(above) < depth for above in plan[:i])
        rows = int(re.search(r"rows=(\d+)", line)[1])
        # A partial index of live sagas or pending events is small however big the table is.
        if not any(d.startswith("Index Cond") for d in details) and not bounded and rows > 1000:
            found.append(f"full {scan[1].lower()} of {scan[4]} ({scan[3].split()[1]})")
    return found


def explain_hot_queries(orchestrator_db_url: str) -> str:
    """Markdown: each statement the orchestrator sends on the hot path, in recovery, in the
    relay, for the admin list and in the purge, with its plan in the given database, and a
    warning on every scan that reads sagas, saga_steps or outbox whole.

    The statements are those the real code sends, captured from the driver while it runs
    against a scratch copy of the schema (`<database>_explain`, dropped after), then EXPLAINed
    (not run) with their parameters here: nothing is written to the given database."""
    url = _sync_url(orchestrator_db_url)
    scratch = url.set(database=f"{url.database}_explain")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            boundary = conn.execute(
                text(
                    "SELECT created_at, id FROM sagas ORDER BY created_at DESC, id DESC"
                    " OFFSET 1000 LIMIT 1"
                )
            ).first()
            rows = dict(
                conn.execute(
                    text("SELECT relname, reltuples::bigint FROM pg_class WHERE relname = ANY(:n)"),
                    {"n": list(SEEDED_TABLES)},
                ).all()
            )
        cursor = (boundary[0], boundary[1]) if boundary else None
        drop_database(scratch)
        migrate(scratch, "orchestrator")
        capture = _Capture()
        try:
            asyncio.run(_run_the_queries(scratch, capture, cursor))
            _run_the_purge(scratch, capture)
        finally:
            drop_database(scratch)
        sections, flagged = [], []
        with engine.connect() as conn:
            explain = conn.connection.dbapi_connection.cursor()
            for number, (label, statement, parameters) in enumerate(capture.statements, 1):
                explain.execute("EXPLAIN " + statement, parameters)
                plan = [row[0] for row in explain.fetchall()]
                scans = _full_scans(plan)
                if scans:
                    flagged.append(f"- {number}. {label}: {', '.join(scans)}")
                sql = " ".join(statement.split())
                sections.append(
                    f"### {number}. {label}{' (FULL SCAN)' if scans else ''}\n\n"
                    f"```sql\n{sql}\n```\n\n```\n" + "\n".join(plan) + "\n```\n"
                )
            conn.rollback()
    finally:
        engine.dispose()
    summary = [
        "## Query plans",
        "",
        "In the database as seeded (planner estimates): "
        + ", ".join(f"{t} {max(rows.get(t, 0), 0):,} rows" for t in SEEDED_TABLES)
        + f". {len(capture.statements)} statements; full scans of those tables: "
        + (f"{len(flagged)}:" if flagged else "none."),
        "",
        *flagged,
        *(
            ["", "Calls that failed (not explained):", *(f"- {f}" for f in capture.failed)]
            if capture.failed
            else []
        ),
        "",
    ]
    return "\n".join(summary) + "\n" + "\n".join(sections)


# -- admin latency -------------------------------------------------------------------------------

ADMIN_PATHS = (
    "/admin/sagas",
    "/admin/sagas?status=COMPLETED",
    "/admin/ui",
    # Found by business key (seeded: about 20 sagas per user) and by request id.
    "/admin/sagas?user_id=7",
    "/admin/sagas?order_id=9000000000007",
    "/admin/sagas?request_id=0123456789abcdef0123456789abcdef",
)


def admin_latencies(orchestrator_url: str, admin_token: str, n: int = 50) -> dict[str, list[float]]:
    """Seconds per GET of each admin list path, `n` each, after one warm-up request each."""
    timings: dict[str, list[float]] = {path: [] for path in ADMIN_PATHS}
    with httpx.Client(
        base_url=orchestrator_url,
        headers={"Authorization": f"Bearer {admin_token}"},
        cookies={"admin_token": admin_token},
        timeout=30,
    ) as http:
        for round_ in range(n + 1):
            for path in ADMIN_PATHS:
                started = time.perf_counter()
                response = http.get(path)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, f"{path}: {response.status_code}"
                if round_:
                    timings[path].append(elapsed)
    return timings


def admin_list_latency(orchestrator_url: str, admin_token: str, n: int = 50) -> list[float]:
    """Seconds per request of the admin list (JSON first page, by status, and the page)."""
    return [
        s for seconds in admin_latencies(orchestrator_url, admin_token, n).values() for s in seconds
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_scale", description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--prefix", default="saga_scale")
    args = parser.parse_args(argv)
    from tools.stack import postgres_url

    url = make_url(postgres_url()).set(
        drivername="postgresql+psycopg", database=f"{args.prefix}_orchestrator"
    )
    drop_database(url)
    migrate(url, "orchestrator")
    started = time.perf_counter()
    seed_finished_sagas(url.render_as_string(hide_password=False), args.count)
    print(f"seeded {args.count:,} sagas in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(explain_hot_queries(url.render_as_string(hide_password=False)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
