"""What one payment saga costs each database: transactions, rows written and WAL, per saga.

The numbers docs/scaling.md's model of a single orchestrator database stands on:
`python -m tools.db_load [--sagas N] [--concurrency C]`. It starts the stack on databases of
its own (BENCH_DB_PREFIX, as the benchmark), pays N orders, waits for the outbox to be
delivered, and reads PostgreSQL's own counters (pg_stat_database, the WAL position) before and
after. WAL is the server's, so nothing else should run on it meanwhile.
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

from tools.bench import _payer, _seed
from tools.stack import (
    DATABASES,
    bench_db_prefix,
    database_env,
    postgres_url,
    reset_databases,
    start_stack,
)

COUNTERS = "xact_commit, tup_inserted, tup_updated, tup_deleted"


def _url(env: dict[str, str], prefix: str) -> str:
    return make_url(env[f"{prefix}_DATABASE_URL"]).render_as_string(hide_password=False)


def _counters(env: dict[str, str]) -> tuple[dict[str, tuple[int, ...]], int]:
    """Every database's counters, and the server's WAL position (bytes)."""
    with psycopg.connect(_url(env, "ORCHESTRATOR"), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        rows = {}
        for prefix, _, _ in DATABASES:
            name = make_url(env[f"{prefix}_DATABASE_URL"]).database
            row = conn.execute(
                f"SELECT {COUNTERS} FROM pg_stat_database WHERE datname = %s", (name,)
            ).fetchone()
            rows[prefix] = tuple(int(v) for v in row) if row else (0, 0, 0, 0)
    assert wal is not None
    return rows, int(wal[0])


def _undelivered(env: dict[str, str]) -> int:
    with psycopg.connect(_url(env, "ORCHESTRATOR"), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE status = 'PENDING'").fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.db_load", description=__doc__)
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    env = database_env(bench_db_prefix(), postgres_url())
    reset_databases(env)
    stack = start_stack(Path(tempfile.mkdtemp(prefix="db-load-")), env, orchestrator_defaults=True)
    try:

        async def pay_all() -> tuple[int, float, dict, int]:
            async with httpx.AsyncClient(timeout=90) as http:
                orders = await _seed(http, stack, args.sagas)  # not counted: the client's
                pay = _payer(http, stack.url("orchestrator"))
                limit = asyncio.Semaphore(args.concurrency)

                async def one(order_id: int) -> str | None:
                    async with limit:
                        return await pay(order_id)

                counted = _counters(env)
                began = time.monotonic()
                failures = await asyncio.gather(*(one(o) for o in orders))
            return sum(f is not None for f in failures), time.monotonic() - began, *counted

        failed, seconds, before, wal_before = asyncio.run(pay_all())
        deadline = time.monotonic() + 60
        while _undelivered(env) and time.monotonic() < deadline:
            time.sleep(0.2)  # the relay delivers after commit; its writes count too
        after, wal_after = _counters(env)
    finally:
        stack.stop()
    n = args.sagas
    print(f"{n} payment sagas ({failed} not completed) in {seconds:.1f} s, c={args.concurrency}")
    print("| database | transactions | rows inserted | rows updated | rows deleted |")
    print("|---|---:|---:|---:|---:|")
    for prefix, _, _ in DATABASES:
        delta = [b - a for a, b in zip(before[prefix], after[prefix], strict=True)]
        print(f"| {prefix.lower()} | " + " | ".join(f"{d / n:.1f}" for d in delta) + " |")
    print(f"WAL, whole server: {(wal_after - wal_before) / n / 1024:.1f} KiB per saga")
    return 0


if __name__ == "__main__":
    sys.exit(main())
