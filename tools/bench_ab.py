"""`python -m tools.bench_ab --versions <ref>,<ref>,...`: several versions of the orchestrator
against each other, on the same services, in one run.

What a change to the engine gained, measured the way this machine allows: every version's
orchestrator runs side by side with the others (each on a database of its own, so none recovers
another's sagas), against one set of domain services built from this checkout, and they take
turns in rounds that alternate direction (A B C, then C B A, ...), each a batch of payments at
the same concurrency, each orchestrator warmed up right before its turn. Reported per version:
the median and range of throughput, the median p50, and the median CPU milliseconds per saga of
its orchestrator and of the whole machine (every process and PostgreSQL), the least noisy
numbers on a shared machine. A version is a git ref, exported with `git archive` into a
temporary directory and run from there; `.` is this checkout as it is, changes included.

    python -m tools.bench_ab --versions 89dd05e,HEAD~2,. [--sagas 200] [--concurrency 32]
                             [--rounds 4] [--output docs/bench-steps.md]
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from common.db import drop_database
from tools.bench import Sample, _client, _drive, _payer, _pids, _seed, machine
from tools.stack import (
    ROOT,
    Process,
    Stack,
    bench_db_prefix,
    database_env,
    orchestrator_process,
    postgres_url,
    reset_databases,
    start_stack,
)


def export(ref: str, into: Path) -> Path:
    """The tree of `ref`, as files (no .git), under `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def describe(ref: str) -> str:
    """`<short hash> <subject>` of a ref, or "this checkout"."""
    if ref == ".":
        return "this checkout"
    shown = subprocess.run(
        ["git", "log", "-1", "--format=%h %s", ref], cwd=ROOT, capture_output=True, text=True
    )
    return shown.stdout.strip() or ref


def start_version(
    stack: Stack, ref: str, n: int, log_dir: Path, env: dict[str, str] | None = None
) -> Process:
    """An orchestrator of version `ref` on the stack's services, on a fresh database (with
    `env` besides its defaults)."""
    prefix = f"{bench_db_prefix()}_ab"
    url = make_url(postgres_url()).set(database=f"{prefix}_orchestrator_{n}")
    drop_database(url.set(drivername="postgresql+psycopg"))  # it migrates its own at start
    env = {**(env or {}), "ORCHESTRATOR_DATABASE_URL": url.render_as_string(hide_password=False)}
    process = orchestrator_process(stack, log_dir, f"orchestrator-{n}", env, defaults=True)
    if ref != ".":
        process.cwd = export(ref, Path(tempfile.mkdtemp(prefix=f"bench-ab-{n}-")))
    process.start()
    process.wait_healthy(60)
    return process


async def rounds(targets: dict[str, str], pids, sagas: int, concurrency: int, count: int, stack):
    """{name: [Sample per round]}, the names taking turns, the direction alternating."""
    names = list(targets)
    results: dict[str, list[Sample]] = {name: [] for name in names}
    async with _client() as http:
        for n in range(count):
            for name in names if n % 2 == 0 else reversed(names):
                pay = _payer(http, targets[name])
                await _drive(pay, await _seed(http, stack, 20), concurrency, f"{name} warm", pids)
                orders = await _seed(http, stack, sagas)
                label = f"{name} {n + 1}/{count}"
                results[name].append(await _drive(pay, orders, concurrency, label, pids))
    return results


def table(results: dict[str, list[Sample]], labels: dict[str, str]) -> str:
    rows = [
        "| version | sagas/s (median) | range | p50 ms | orchestrator CPU ms per saga "
        "| all processes CPU ms per saga | failed |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, samples in results.items():
        rates = [s.throughput for s in samples]
        own = statistics.median(s.cpu[name] for s in samples) * 1000
        everything = statistics.median(sum(s.cpu.values()) for s in samples) * 1000
        p50 = statistics.median(s.p50 for s in samples) * 1000
        rows.append(
            f"| {labels[name]} | {statistics.median(rates):.1f} "
            f"| {min(rates):.1f}–{max(rates):.1f} | {p50:.0f} | {own:.1f} | {everything:.1f} "
            f"| {sum(len(s.failed) for s in samples)} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_ab", description=__doc__)
    parser.add_argument(
        "--versions", required=True, help="git refs, oldest first ('.': this checkout)"
    )
    parser.add_argument("--sagas", type=int, default=200, help="per version and round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    refs = args.versions.split(",")

    env = database_env(f"{bench_db_prefix()}_ab", postgres_url())
    reset_databases(env)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    stack = start_stack(log_dir, env, orchestrator_defaults=True)
    stack.processes.pop("orchestrator").stop()  # the versions run instead
    labels: dict[str, str] = {}
    try:
        targets = {}
        for n, ref in enumerate(refs):
            name = f"v{n}"
            stack.processes[name] = start_version(stack, ref, n, log_dir)
            targets[name], labels[name] = stack.url(name), describe(ref)
        results = asyncio.run(
            rounds(targets, _pids(stack), args.sagas, args.concurrency, args.rounds, stack)
        )
    finally:
        stack.stop()
    report = (
        f"{args.rounds} rounds of {args.sagas} payments at concurrency {args.concurrency} per "
        f"version, the direction alternating; {machine()}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n\n{table(results, labels)}\n"
    )
    print(f"\nlogs in {log_dir}\n\n{report}")
    if args.output is not None:
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
