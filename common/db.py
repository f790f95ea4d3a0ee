"""Database bootstrap: create the process's database if missing and migrate it with Alembic."""

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg import AsyncConnection, errors, sql
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import MetaData, create_engine, event, exc, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

MIGRATIONS_ROOT = Path(__file__).resolve().parent.parent / "migrations"
# One lock for every migration run, so replicas starting together migrate one at a time.
MIGRATION_LOCK_ID = 0x5A6A_0001


def _libpq_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _name(url: URL) -> str:
    if not url.database:
        raise ValueError(f"no database named in {url!r}")
    return url.database


def ensure_database(url: URL) -> None:
    """Create the database named in `url` on its server unless it exists."""
    maintenance = _libpq_dsn(url.set(database="postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_name(url))))
            log.info("created database %s", url.database)
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            pass  # another process created it between our check and our CREATE


def drop_database(url: URL) -> None:
    """Drop the database named in `url` (tests start from a clean one)."""
    maintenance = _libpq_dsn(url.set(database="postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_name(url)))
        )


def _alembic_config(history: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_ROOT / history))
    return config


def migrate(url: URL, history: str) -> None:
    """Create the database if needed and upgrade it to the head of `migrations/<history>`."""
    ensure_database(url)
    config = _alembic_config(history)
    config.attributes["url"] = url
    command.upgrade(config, "head")


def head_revision(history: str) -> str:
    """The revision this code expects its database at: the head of `migrations/<history>`."""
    head = ScriptDirectory.from_config(_alembic_config(history)).get_current_head()
    if head is None:
        raise RuntimeError(f"migrations/{history} has no revision")
    return head


# One lock per database migrated: the services, each on its own database, migrate side by side.
MIGRATION_LOCK = text("SELECT pg_advisory_xact_lock(:key, hashtext(:name))")


def run_alembic_env(target_metadata: MetaData) -> None:
    """The body of every `migrations/<history>/env.py` (online mode only)."""
    from alembic import context

    url: URL = context.config.attributes["url"]
    engine = create_engine(url, poolclass=NullPool, connect_args=UNPREPARED)
    maintenance = create_engine(
        url.set(database="postgres"), poolclass=NullPool, connect_args=UNPREPARED
    )
    # Processes starting together migrate a database one at a time. The lock is a transaction's,
    # held open until every migration has run, on a connection of its own:
    # - not the migrations' own transaction, which a migration may commit midway
    #   (`autocommit_block()`, for CREATE INDEX CONCURRENTLY);
    # - not a session lock, which behind PgBouncer in transaction mode would stay on a server
    #   connection the next client is handed;
    # - in the maintenance database, not the one migrated: CREATE INDEX CONCURRENTLY waits for
    #   every transaction of its database with a snapshot, the lock's holder and its waiters
    #   included, which would never end.
    # A migrator that dies aborts the transaction, and the lock goes with it.
    with maintenance.connect() as guard:
        guard.execute(MIGRATION_LOCK, {"key": MIGRATION_LOCK_ID, "name": str(url.database)})
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
        guard.rollback()  # nothing was written through it: its end releases the lock
    engine.dispose()
    maintenance.dispose()


# psycopg never prepares a statement on the server: for one-shot work (a migration, a purge),
# and behind a pooler that cannot keep prepared statements.
UNPREPARED: dict[str, Any] = {"prepare_threshold": None}

# A pooled connection idle for longer than this is checked before use (see ping_when_idle).
PING_AFTER_IDLE_SECONDS = 2.0


def ping_when_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Check a pooled connection before use only if it sat idle in the pool for a while.

    `pool_pre_ping` pings at every checkout: one extra round trip per transaction, about a
    sixth of the orchestrator's CPU per saga. A connection in steady use has just proven
    itself; one that sat idle may have been cut (a database restart, a proxy's idle timeout).
    If a busy connection turns out dead anyway, the statement fails once and SQLAlchemy
    invalidates the whole pool, so the next checkouts connect afresh.
    """

    @event.listens_for(engine, "checkin")
    def _idle_since(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as error:
            # The pool discards this connection and checks out another (or connects anew).
            raise exc.DisconnectionError(f"idle connection is gone: {error}") from error


# A server that does not answer (a host gone, not a port closed) fails a connect in this time,
# not in the minutes a TCP connect may take: a request waiting for it gets its 503 in time.
CONNECT_TIMEOUT_SECONDS = 5


def connect_args(*, prepared: bool = True) -> dict[str, Any]:
    """psycopg's connection options for a SQLAlchemy engine: a connect timeout, and no
    server-side prepared statements unless `prepared` (see `open_pool`)."""
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **({} if prepared else UNPREPARED)}


def create_service_engine(
    url: URL, pool_size: int, max_overflow: int, *, prepared: bool = True
) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args=connect_args(prepared=prepared),
    )
    ping_when_idle(engine)
    return engine


def libpq_url(url: URL) -> str:
    """`url` as libpq takes it (no SQLAlchemy driver name)."""
    return _libpq_dsn(url)


async def open_pool(
    url: URL, size: int, *, prepared: bool = True, name: str = "hot path"
) -> AsyncConnectionPool:
    """A psycopg pool of autocommit connections, for plain SQL on a hot path.

    A checkout waits at most CONNECT_TIMEOUT_SECONDS for a connection (psycopg_pool's default
    is 30 s), so a database that is down fails a call in time for its caller to back off. A
    connection that broke is discarded when it is given back. `prepared`: let the server
    prepare a statement after a few uses (psycopg's default); off behind a pooler that cannot
    keep them (PgBouncer in transaction mode before 1.21)."""
    checked_out: WeakKeyDictionary[AsyncConnection[Any], float] = WeakKeyDictionary()

    async def ping_if_idle(conn: AsyncConnection[Any]) -> None:
        """As `ping_when_idle` for SQLAlchemy: a connection that sat idle (through a database
        restart, perhaps) is checked before use, and the pool replaces it if it is dead; one in
        steady use is not, which would cost a round trip per statement. Idle: not checked out
        for a while (the hot path holds a connection for one statement)."""
        now = time.monotonic()
        last = checked_out.get(conn)
        checked_out[conn] = now
        if last is not None and now - last >= PING_AFTER_IDLE_SECONDS:
            await AsyncConnectionPool.check_connection(conn)

    pool = AsyncConnectionPool(
        libpq_url(url),
        min_size=1,
        max_size=size,
        timeout=CONNECT_TIMEOUT_SECONDS,
        check=ping_if_idle,
        kwargs={
            "autocommit": True,
            "prepare_threshold": 5 if prepared else None,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        },
        name=name,
        open=False,
    )
    await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS * 2)
    return pool


# -- readiness ----------------------------------------------------------------------------------

CURRENT_REVISION = text("SELECT version_num FROM alembic_version")


def _verdict(current: str | None, head: str) -> str | None:
    if current != head:
        return f"the database is at migration {current}, this code needs {head}"
    return None


def not_ready(engine: Engine, head: str) -> str | None:
    """Why this process cannot serve (its database unreachable, or not at `head`), or None.

    A pooled connection left over from before a database restart fails once and invalidates the
    pool; the check then tries once more on a fresh connection, so a process reads as ready as
    soon as its database is back, not one probe later."""
    for last_try in (False, True):
        try:
            with engine.connect() as conn:
                return _verdict(_revision(conn), head)
        except Exception as error:  # whatever it is, this process cannot serve now
            if last_try or not getattr(error, "connection_invalidated", False):
                return f"the database is unreachable: {getattr(error, 'orig', error)}"
    raise AssertionError("unreachable")


async def not_ready_async(engine: AsyncEngine, head: str) -> str | None:
    """`not_ready`, for an asyncio engine."""
    for last_try in (False, True):
        try:
            async with engine.connect() as conn:
                return _verdict(await conn.run_sync(_revision), head)
        except Exception as error:  # whatever it is, this process cannot serve now
            if last_try or not getattr(error, "connection_invalidated", False):
                return f"the database is unreachable: {getattr(error, 'orig', error)}"
    raise AssertionError("unreachable")


def _revision(conn: Connection) -> str | None:
    revision: str | None = conn.scalar(CURRENT_REVISION)
    return revision


def reading(session: Session) -> AbstractContextManager[object]:
    """A read's own transaction: its connection goes back to the pool when the read is done.

    A session that merely reads keeps its connection until it is closed, after the response is
    serialised, which for a sync endpoint takes a thread of the request thread pool. With more
    requests in flight than threads, every thread can end up waiting for a connection held by a
    request that waits for a thread: the pool starves and requests time out together. Inside a
    caller's transaction, the read simply joins it."""
    return nullcontext() if session.in_transaction() else session.begin()
