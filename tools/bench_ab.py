"""`python -m tools.bench_ab --baseline <git ref>`: this checkout's orchestrator against another
version's, on the same services, in one run.

What a change to the engine gained, measured the way the machine allows: both orchestrators run
side by side (each on a database of its own, so neither recovers the other's sagas), against one
set of domain services, and take turns in ABBA rounds (A B, B A, A B, ...), each round a batch of
payments at the same concurrency, each orchestrator warmed up first. Reported per orchestrator:
the median and range of throughput, and the median CPU milliseconds per saga of each process (the
least noisy number on a shared machine). The other version is exported with `git archive` into a
temporary directory and run from there; this checkout provides the services and the load.

    python -m tools.bench_ab --baseline HEAD~3 [--sagas 200] [--concurrency 32] [--rounds 4]
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from common.db import drop_database
from tools.bench import Sample, _client, _drive, _payer, _pids, _seed
from tools.stack import (
    ROOT,
    Process,
    database_env,
    free_port,
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


def summary(name: str, samples: list[Sample]) -> str:
    rates = [s.throughput for s in samples]
    processes = samples[0].cpu.keys()
    cpu = {p: statistics.median(s.cpu[p] for s in samples) * 1000 for p in processes}
    cells = ", ".join(f"{p} {ms:.1f}" for p, ms in cpu.items() if ms >= 0.05)
    p50 = statistics.median(s.p50 for s in samples) * 1000
    return (
        f"| {name} | {statistics.median(rates):.1f} | {min(rates):.1f}–{max(rates):.1f} "
        f"| {p50:.0f} | {sum(len(s.failed) for s in samples)} | {cells} |"
    )


async def rounds(targets: dict[str, str], pids, sagas: int, concurrency: int, count: int, stack):
    """{name: [Sample per round]}, the names taking turns in ABBA order."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_ab", description=__doc__)
    parser.add_argument("--baseline", required=True, help="a git ref: the version to beat")
    parser.add_argument("--sagas", type=int, default=200, help="per orchestrator and round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)

    prefix = os.environ.get("BENCH_DB_PREFIX", "saga_bench") + "_ab"
    env = database_env(prefix, postgres_url())
    reset_databases(env)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    baseline_tree = export(args.baseline, Path(tempfile.mkdtemp(prefix="bench-ab-base-")))
    stack = start_stack(log_dir, env, orchestrator_defaults=True)
    url = make_url(env["ORCHESTRATOR_DATABASE_URL"]).set(database=f"{prefix}_baseline")
    drop_database(url.set(drivername="postgresql+psycopg"))  # it migrates its own at start
    base_db = url.render_as_string(hide_password=False)
    baseline: Process = orchestrator_process(
        stack, log_dir, "orchestrator-baseline", {"ORCHESTRATOR_DATABASE_URL": base_db}, True
    )
    baseline.cwd = baseline_tree
    baseline.port = free_port()
    try:
        baseline.start()
        baseline.wait_healthy(60)
        stack.processes["baseline"] = baseline
        pids = _pids(stack)
        targets = {"baseline": baseline.url, "this checkout": stack.url("orchestrator")}
        results = asyncio.run(
            rounds(targets, pids, args.sagas, args.concurrency, args.rounds, stack)
        )
    finally:
        stack.stop()
    print(
        f"\n{args.rounds} ABBA rounds of {args.sagas} payments at concurrency "
        f"{args.concurrency}; baseline {args.baseline}; logs in {log_dir}\n"
    )
    print("| orchestrator | sagas/s (median) | range | p50 ms | failed | CPU ms per saga |")
    print("|---|---:|---|---:|---:|---|")
    for name, samples in results.items():
        print(summary(name, samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
