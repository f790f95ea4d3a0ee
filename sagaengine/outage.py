"""A dependency away: whether an error means "not now" rather than "wrong", how long to wait
before trying again, and one log line per outage rather than one per failed attempt."""

import logging
import random
import time

import psycopg
from sqlalchemy import exc


def unavailable(error: BaseException) -> bool:
    """Whether `error` says the database could not be used right now (down, restarting, the
    connection cut, the pool exhausted) rather than that the statement was wrong: the same work
    may succeed on a fresh connection. SQLAlchemy invalidates a pool whose connection turned
    out dead, so the next checkout connects afresh."""
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or isinstance(
            error, exc.OperationalError | exc.InterfaceError
        )
    return isinstance(
        error, exc.TimeoutError | psycopg.OperationalError | psycopg.InterfaceError | OSError
    )


def backoff(failures: int, initial: float = 0.1, ceiling: float = 2.0) -> float:
    """Seconds to wait after `failures` failures in a row: exponential, with jitter, capped."""
    return min(ceiling, initial * 2.0 ** max(failures - 1, 0)) * random.uniform(0.5, 1.0)


class Outage:
    """Logs an outage of a dependency once, however many attempts fail while it lasts: a warning
    at the first failure, a line when an attempt succeeds again. Without a word of success (a
    request handler only sees failures), a failure after `quiet_seconds` without one starts a
    new outage."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        meanwhile: str = "retrying with backoff",
        quiet_seconds: float = 30.0,
    ):
        self.log = logger
        self.what = what
        self.meanwhile = meanwhile
        self.quiet_seconds = quiet_seconds
        self.since: float | None = None
        self.last = 0.0
        self.failures = 0

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if self.since is None or now - self.last > self.quiet_seconds:
            self.since, self.failures = now, 0
            self.log.warning("%s is unavailable, %s: %s", self.what, self.meanwhile, error)
        self.last = now
        self.failures += 1

    def recovered(self) -> None:
        if self.since is None:
            return
        self.log.warning(
            "%s is back after %.1f s (%d failed attempts)",
            self.what,
            time.monotonic() - self.since,
            self.failures,
        )
        self.since = None
