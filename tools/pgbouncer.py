"""A PgBouncer of its own, in transaction mode, in front of a PostgreSQL server: what most
production deployments put between many processes and one database. The tests run the payment
saga through it (`make test`: TEST_THROUGH_PGBOUNCER=1), and `python -m tools.pgbouncer` starts
one by hand.

Debian's `pgbouncer` (1.18): it refuses to run as root, so a root caller has it switch to the
`postgres` user (`-u`), and its files live in a directory that user can read and write.
"""

import argparse
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tools.stack import free_port

CONFIG = """\
[databases]
; every database name, on the server behind it
* = host={host} port={port} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
; enough server connections per database for every process of a test stack at once
default_pool_size = 40
max_client_conn = 2000
; a client's first SET of these is taken as is, not refused
ignore_startup_parameters = extra_float_digits,options
admin_users = {user}
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""


@dataclass
class PgBouncer:
    """A running PgBouncer: `url(database_url)` is that database reached through it."""

    port: int
    directory: Path
    process: subprocess.Popen

    def url(self, database_url: str) -> str:
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def stats(self) -> dict[str, int]:
        """Transactions served per database, from its admin console (SHOW STATS)."""
        url = f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer"
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.execute("SHOW STATS")
            columns = [c.name for c in cursor.description or ()]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        return {row["database"]: int(row["total_xact_count"]) for row in rows}

    def pool_mode(self) -> str:
        url = f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer"
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            for key, value, *_ in conn.execute("SHOW CONFIG").fetchall():
                if key == "pool_mode":
                    return str(value)
        raise RuntimeError("pgbouncer did not show its pool_mode")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
    )


def start(server_url: str, port: int | None = None, timeout: float = 10.0) -> PgBouncer:
    """A PgBouncer in transaction mode in front of the server of `server_url`."""
    executable = binary()
    if executable is None:
        raise RuntimeError("pgbouncer is not installed: make pgbouncer")
    server = make_url(server_url)
    port = port or free_port()
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    config = directory / "pgbouncer.ini"
    config.write_text(
        CONFIG.format(
            host=server.host or "127.0.0.1",
            port=server.port or 5432,
            user=server.username or "postgres",
            listen_port=port,
            directory=directory,
        )
    )
    command = [executable, str(config)]
    if os.geteuid() == 0:
        # It will not run as root: as the database's own user, with its files handed over.
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
        os.chown(config, account.pw_uid, account.pw_gid)
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bouncer = PgBouncer(port, directory, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"pgbouncer exited at start: {error}")
        try:
            bouncer.pool_mode()
            return bouncer
        except psycopg.OperationalError:
            time.sleep(0.05)  # it is starting: nothing to wait on but its port
    bouncer.stop()
    raise RuntimeError(f"pgbouncer did not answer on port {port} within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.pgbouncer",
        description="Run a PgBouncer in transaction mode in front of PG_URL's server until "
        "Ctrl-C; point a process at it with PG_URL=postgresql://postgres@127.0.0.1:PORT and "
        "DB_PREPARED_STATEMENTS=false.",
    )
    parser.add_argument("--port", type=int, default=6432)
    args = parser.parse_args()
    from tools.stack import postgres_url

    bouncer = start(postgres_url(), args.port)
    print(f"pgbouncer (transaction mode) on 127.0.0.1:{bouncer.port}; Ctrl-C stops it")
    try:
        bouncer.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        bouncer.stop()


if __name__ == "__main__":
    main()
