"""`make run-all`: start every process on its default port, in the foreground.

Ctrl-C (or SIGTERM) stops them all cleanly; if one dies, the others are stopped too. Without a
configured database URL it uses the PostgreSQL server at 127.0.0.1:5432, or, if none answers
there, an embedded one (pgserver) in `.data/pgserver`.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg

from common.settings import DEFAULT_PG_URL

ROOT = Path(__file__).resolve().parent.parent
# (package, default port), started in this order; the orchestrator last.
PROCESSES = [
    ("order_service", 8001),
    ("user_service", 8002),
    ("payment_service", 8003),
    ("orchestrator", 8000),
]


def _say(message: str) -> None:
    print(f"run-all | {message}", flush=True)


def _database_configured() -> bool:
    return "PG_URL" in os.environ or any(k.endswith("_DATABASE_URL") for k in os.environ)


def _local_server_answers() -> bool:
    try:
        with psycopg.connect(f"{DEFAULT_PG_URL}/postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def choose_database(env: dict[str, str]) -> None:
    if _database_configured():
        _say("using the configured database URL(s)")
    elif _local_server_answers():
        _say(f"using the PostgreSQL server at {DEFAULT_PG_URL}")
    else:
        import pgserver  # only needed here

        data = ROOT / ".data" / "pgserver"
        data.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(data, cleanup_mode="stop")
        env["PG_URL"] = server.get_uri()
        _say(f"no PostgreSQL at {DEFAULT_PG_URL}: started an embedded one in {data}")


def _pump(name: str, stream) -> None:
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
    children: list[tuple[str, int, subprocess.Popen[str]]] = []
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    for package, port in PROCESSES:
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
        _say("all up: orchestrator http://127.0.0.1:8000 (docs at /docs); Ctrl-C stops everything")

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
