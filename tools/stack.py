"""Start the services as separate processes, the way an operator would: `python -m <package>`."""

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from common.db import drop_database, migrate
from common.embedded_pg import local_server_answers, start_embedded
from common.settings import DEFAULT_PG_URL

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_SERVICES = {
    "order": "order_service",
    "user": "user_service",
    "payment": "payment_service",
    "concert": "concert_service",
}
# The env prefixes of the services a test or the chaos run may inject faults into.
FAULTY = ("ORDERS", "USERS", "PAYMENTS", "CONCERTS")
FAULT_INJECTION_ENV = {f"{prefix}_FAULT_INJECTION": "true" for prefix in FAULTY}
PEERS = {**DOMAIN_SERVICES, "data_platform": "data_platform"}  # what the orchestrator calls
# (env prefix, migration history, database name suffix) of every database
DATABASES = [
    ("ORDERS", "order_service", "orders"),
    ("USERS", "user_service", "users"),
    ("PAYMENTS", "payment_service", "payments"),
    ("CONCERTS", "concert_service", "concerts"),
    ("ORCHESTRATOR", "orchestrator", "orchestrator"),
    ("DATA_PLATFORM", "data_platform", "data_platform"),
]


def postgres_url() -> str:
    """PG_URL if set, else the local server, else an embedded one (data in .data/)."""
    if "PG_URL" in os.environ:
        return os.environ["PG_URL"]
    if local_server_answers():
        return DEFAULT_PG_URL
    return start_embedded(ROOT / ".data" / "tools-pgserver")


def bench_db_prefix() -> str:
    """The prefix of the benchmark's databases (BENCH_DB_PREFIX, by default `saga_bench`), so
    that two benchmarks on one server keep to their own."""
    return os.environ.get("BENCH_DB_PREFIX", "saga_bench")


def database_env(prefix: str, pg_url: str) -> dict[str, str]:
    """The <PREFIX>_DATABASE_URL of every process, on databases named `<prefix>_<suffix>`."""
    return {
        f"{env}_DATABASE_URL": str(make_url(pg_url).set(database=f"{prefix}_{suffix}"))
        for env, _, suffix in DATABASES
    }


def reset_databases(env: dict[str, str]) -> None:
    """Drop and re-create every database named in `env` at the latest migration."""
    for prefix, history, _ in DATABASES:
        url = make_url(env[f"{prefix}_DATABASE_URL"]).set(drivername="postgresql+psycopg")
        drop_database(url)
        migrate(url, history)


# Test settings: a short client timeout and small retry budgets, so failures show fast.
ORCHESTRATOR_TEST_ENV = {
    "ADMIN_VIEWER_TOKEN": "dev-viewer-token",  # the read-only operator (tests of the two roles)
    "ORCHESTRATOR_STEP_TIMEOUT": "1.0",
    "ORCHESTRATOR_ACTION_ATTEMPTS": "4",
    "ORCHESTRATOR_ACTION_MAX_SECONDS": "10",
    "ORCHESTRATOR_COMPENSATION_ATTEMPTS": "3",
    "ORCHESTRATOR_COMPENSATION_MAX_SECONDS": "10",
    "ORCHESTRATOR_BACKOFF_INITIAL": "0.05",
    "ORCHESTRATOR_BACKOFF_MAX": "0.3",
    "ORCHESTRATOR_LEASE_SECONDS": "10",
    "ORCHESTRATOR_RECOVERY_INTERVAL": "0.5",
    "ORCHESTRATOR_RELAY_BACKOFF_INITIAL": "0.1",
    "ORCHESTRATOR_RELAY_BACKOFF_MAX": "1.0",
    # A claim expires fast (a killed relay's events go out again soon), so a pass's delivery is
    # given less than the claim.
    "ORCHESTRATOR_RELAY_CLAIM_SECONDS": "3",
    "ORCHESTRATOR_RELAY_TIMEOUT": "2.5",
    "ORCHESTRATOR_RELAY_INTERVAL": "0.2",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    package: str
    port: int
    env: dict[str, str]
    log_path: Path
    command: tuple[str, ...] = ()  # e.g. ("relay",); by default it serves HTTP on `port`
    popen: subprocess.Popen | None = None
    cwd: Path = ROOT  # the checkout whose code it runs (another one: tools/bench_ab.py)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", self.package, *self.command, "--port", str(self.port)],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling a process that is starting: there is no event to wait on
        tail = self.log_path.read_text()[-3000:]
        raise RuntimeError(f"{self.package} did not become healthy:\n{tail}")

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as when a machine or the OOM killer takes it."""
        if self.popen and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def restart(self) -> None:
        self.start()
        if not self.command:
            self.wait_healthy()


@dataclass
class Stack:
    processes: dict[str, Process] = field(default_factory=dict)
    # Where orchestrators find the domain services, when not directly (a proxy in between).
    service_urls: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.processes[name].url

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()


def orchestrator_process(
    stack: Stack,
    log_dir: Path,
    name: str,
    env: dict[str, str] | None = None,
    defaults: bool = False,
) -> Process:
    """An orchestrator that finds the stack's domain services (or their proxies); with the test
    timeouts and budgets unless `defaults`."""
    service_urls = {f"{n.upper()}_SERVICE_URL": stack.url(n) for n in DOMAIN_SERVICES}
    service_urls["DATA_PLATFORM_URL"] = stack.url("data_platform")
    service_urls.update(stack.service_urls)
    tuning = {} if defaults else ORCHESTRATOR_TEST_ENV
    full_env = {**os.environ, **tuning, **service_urls, **(env or {})}
    return Process("orchestrator", free_port(), full_env, log_dir / f"{name}.log")


def start_stack(
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    orchestrator_env: dict[str, str] | None = None,
    orchestrator_defaults: bool = False,
) -> Stack:
    stack = Stack()
    base_env = {**os.environ, **(extra_env or {})}
    for name, package in PEERS.items():
        stack.processes[name] = Process(package, free_port(), base_env, log_dir / f"{package}.log")
    stack.processes["orchestrator"] = orchestrator_process(
        stack,
        log_dir,
        "orchestrator",
        {**(extra_env or {}), **(orchestrator_env or {})},
        defaults=orchestrator_defaults,
    )
    try:
        for process in stack.processes.values():
            process.start()
        for process in stack.processes.values():
            process.wait_healthy()
    except Exception:
        stack.stop()
        raise
    return stack
