"""`make run-all`: start every process on its default port, in the foreground.

Ctrl-C (or SIGTERM) stops them all cleanly; if one dies, the others are stopped too. Without a
configured database URL it uses the PostgreSQL server at 127.0.0.1:5432, or, if none answers
there, an embedded one (pgserver) with its data in `.data/pgserver` (RUN_ALL_DATA_DIR overrides
the folder; RUN_ALL_EMBEDDED_PG=1 uses the embedded one even when a server answers).
RUN_ALL_PORT_OFFSET=N moves every port by N (the tests use it to run beside a running set).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from common.embedded_pg import local_server_answers, start_embedded
from common.settings import DEFAULT_PG_URL

ROOT = Path(__file__).resolve().parent.parent
# (package, default port), started in this order; the orchestrator last.
PROCESSES = [
    ("order_service", 8001),
    ("user_service", 8002),
    ("payment_service", 8003),
    ("concert_service", 8004),
    ("data_platform", 8009),
    ("orchestrator", 8000),
]
# Where the orchestrator finds the others (unless the environment says otherwise).
SERVICE_URL_VARIABLES = {
    "order_service": "ORDER_SERVICE_URL",
    "user_service": "USER_SERVICE_URL",
    "payment_service": "PAYMENT_SERVICE_URL",
    "concert_service": "CONCERT_SERVICE_URL",
    "data_platform": "DATA_PLATFORM_URL",
}


def _say(message: str) -> None:
    print(f"run-all | {message}", flush=True)


def _database_configured() -> bool:
    return "PG_URL" in os.environ or any(k.endswith("_DATABASE_URL") for k in os.environ)


def choose_database(env: dict[str, str]) -> None:
    forced = env.get("RUN_ALL_EMBEDDED_PG") == "1"
    if _database_configured() and not forced:
        _say("using the configured database URL(s)")
    elif local_server_answers() and not forced:
        _say(f"using the PostgreSQL server at {DEFAULT_PG_URL}")
    else:
        data = Path(env.get("RUN_ALL_DATA_DIR") or ROOT / ".data") / "pgserver"
        env["PG_URL"] = start_embedded(data)
        for name in [k for k in env if k.endswith("_DATABASE_URL")]:
            del env[name]
        _say(f"using an embedded PostgreSQL with its data in {data}")


def _pump(name: str, stream: IO[str]) -> None:
    for line in iter(stream.readline, ""):
        print(f"{name:<16}| {line}", end="", flush=True)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    env = dict(os.environ)
    choose_database(env)
    offset = int(env.get("RUN_ALL_PORT_OFFSET", "0"))
    ports = {package: port + offset for package, port in PROCESSES}
    for package, variable in SERVICE_URL_VARIABLES.items():
        env.setdefault(variable, f"http://127.0.0.1:{ports[package]}")
    children: list[tuple[str, int, subprocess.Popen[str]]] = []
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    for package, _ in PROCESSES:
        port = ports[package]
        proc = subprocess.Popen(
            [sys.executable, "-m", package, "--port", str(port)],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=_pump, args=(package, proc.stdout), daemon=True).start()
        children.append((package, port, proc))

    deadline = time.monotonic() + 60
    pending = {port for _, port, _ in children}
    while pending and not stopping.is_set() and time.monotonic() < deadline:
        pending = {port for port in pending if not _healthy(port)}
        if any(proc.poll() is not None for _, _, proc in children):
            break
        stopping.wait(0.2)
    if not pending:
        orchestrator = f"http://127.0.0.1:{ports['orchestrator']}"
        _say(f"all up: orchestrator {orchestrator} (API docs at /docs); Ctrl-C stops everything")

    exit_code = 0
    while not stopping.is_set():
        dead = [(name, proc.returncode) for name, _, proc in children if proc.poll() is not None]
        if dead:
            _say(f"{dead[0][0]} exited with code {dead[0][1]}: stopping the others")
            exit_code = 1
            break
        stopping.wait(0.5)

    _say("stopping")
    for _, _, proc in reversed(children):
        if proc.poll() is None:
            proc.terminate()
    for name, _, proc in reversed(children):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _say(f"{name} did not stop in 15s: killing it")
            proc.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
