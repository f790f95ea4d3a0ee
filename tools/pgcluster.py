"""A PostgreSQL server of a run's own, for runs that crash the database on purpose.

The chaos run and the database-crash test stop the server the way a crash does (`pg_ctl stop -m
immediate`: no checkpoint, crash recovery at the next start) while every process is using it.
They do that to a throwaway cluster made here (`initdb` in a temporary directory, a free port on
127.0.0.1), never to the server the developer or the rest of the suite runs on.

The binaries are the local server's (`pg_config --bindir`) when there is one, else those of the
embedded `pgserver` package. PostgreSQL refuses to run as root: as root, the cluster belongs to
the `postgres` system user (or `pgserver`, created as that package does).
"""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tools.stack import free_port


def _bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        bindir = Path(found.stdout.strip())
        if found.returncode == 0 and (bindir / "pg_ctl").exists():
            return bindir
    from pgserver._commands import POSTGRES_BIN_PATH  # only this fallback needs it

    return Path(POSTGRES_BIN_PATH)


def _system_user() -> str | None:
    """Who runs the server: None (this user) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "-s", "/bin/sh", "pgserver"], check=True, capture_output=True)
    return "pgserver"


class Cluster:
    """One throwaway server: `start()`, `crash()` and `start()` again, `destroy()` at the end."""

    def __init__(self, root: Path | None = None, port: int | None = None):
        # The server's user must reach `root`: a fresh directory of /tmp, unless told otherwise.
        self.root = Path(root or tempfile.mkdtemp(prefix="pgcluster-"))
        self.data = self.root / "data"
        self.port = port or free_port()
        self.user = _system_user()
        self.bin = _bindir()
        self.crashes = 0

    @property
    def url(self) -> str:
        """In the form PG_URL takes: no database name."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}")

    def init(self) -> "Cluster":
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.root, self.user)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--locale=C",
        )  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            # A crash of the server process loses nothing the OS has: fsync guards against a
            # crash of the machine, which these runs do not play.
            "fsync": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        return self

    def start(self, timeout: float = 30) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", str(int(timeout)), "start")  # fmt: skip

    def crash(self) -> None:
        """Stop at once, as a crash does: no checkpoint, crash recovery at the next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.crashes += 1

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def answers(self) -> bool:
        try:
            with psycopg.connect(f"{self.url}/postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop()
            except RuntimeError:
                self.crash()
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_answers(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster on port {self.port} does not answer")
            time.sleep(0.05)  # a server starting up: nothing to wait on but its port
