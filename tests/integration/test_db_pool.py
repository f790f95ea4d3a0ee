"""Pooled connections: one cut while idle in the pool is replaced, not handed to a request."""

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from common.db import ping_when_idle
from tests.conftest import database_url

pytestmark = pytest.mark.usefixtures("databases")


def _terminate(url, pid: int) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT pg_backend_pid()"))


def test_a_connection_cut_while_idle_is_replaced_before_use():
    url = database_url("ORDERS")
    engine = create_engine(make_url(url), pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_seconds=0)
    try:
        first = _backend_pid(engine)
        _terminate(url, first)  # as a database restart or a proxy's idle timeout would
        second = _backend_pid(engine)  # no error: the pool noticed and connected afresh
        assert second != first
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged():
    url = database_url("ORDERS")
    engine = create_engine(make_url(url), pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_seconds=3600)
    try:
        first = _backend_pid(engine)
        _terminate(url, first)
        # Not idle long enough to be checked: the cut shows at the first statement, and the
        # pool is invalidated so that the next checkout connects afresh.
        with pytest.raises(Exception, match="terminat|closed|connection"):
            _backend_pid(engine)
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


@pytest.mark.parametrize("idle_seconds", [0.0, 3600.0], ids=["idle", "in-steady-use"])
def test_the_hot_paths_pool_replaces_a_connection_cut_while_idle_before_use(
    monkeypatch, idle_seconds: float
):
    """The orchestrator's psycopg pool, as SQLAlchemy's above: after a database restart, the
    first start must not be handed a dead connection (and answered 503)."""
    import asyncio

    from common import db

    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", idle_seconds)
    url = make_url(database_url("ORDERS"))

    async def scenario() -> tuple[int, int | Exception]:
        pool = await db.open_pool(url, 1)
        try:
            async with pool.connection() as conn:
                first = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]
            _terminate(url, first)
            try:
                async with pool.connection() as conn:
                    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
                return first, row[0]
            except psycopg.OperationalError as error:
                return first, error
        finally:
            await pool.close()

    first, second = asyncio.run(scenario())
    if idle_seconds == 0:
        assert isinstance(second, int) and second != first  # checked, replaced, no error
    else:
        assert isinstance(second, psycopg.OperationalError)  # not checked: the cut shows
