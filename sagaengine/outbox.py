"""The outbox relay: delivers the data-platform events that final sagas wrote, after commit.

At-least-once: a row is claimed (a short transaction), delivered with no transaction open, then
marked DELIVERED; a relay that dies mid-delivery leaves its claim to expire and the row is
delivered again, and the data platform deduplicates by event id. Failures are retried with
exponential backoff and jitter, scheduled in the row itself.

A circuit breaker keeps a dead platform from costing anything: after a pass in which every
delivery failed, the relay backs off as a whole (exponentially, ignoring wake-ups) and sends one
event per pass as a probe, until one gets through.

Order per aggregate: only the oldest pending event of each aggregate can be claimed, so several
relays (`FOR UPDATE SKIP LOCKED` lets them share the table) never deliver one order's events out
of order. A claim is a lease in the row (`claimed_by`, `claimed_until`), not a lock held across
the call.
"""

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from sagaengine import context as logs
from sagaengine import tracing
from sagaengine.metrics import EngineMetrics
from sagaengine.outage import Outage, backoff, unavailable
from sagaengine.postgres import PlainSql
from sagaengine.store import OutboxStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    occurred_at: datetime
    attempts: int
    request_id: str | None = None  # of the saga that wrote it: the delivery carries it too
    trace_parent: str | None = None  # of the saga that wrote it: the delivery links to it


@dataclass(frozen=True)
class RelayPolicy:
    batch: int = 50  # events per pass, delivered in one request
    claim_seconds: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    interval: float = 1.0


# Claim up to `limit` deliverable rows, in one statement: pending, due, unclaimed (or their claim
# expired), and the oldest pending row of their aggregate; each with its saga's request id and
# trace.
CLAIM = f"""
    UPDATE outbox
    SET claimed_by = %(token)s, claimed_until = now() + %(claim)s, attempts = attempts + 1
    WHERE id IN (
        SELECT candidate.id FROM outbox AS candidate
        WHERE candidate.status = '{OutboxStatus.PENDING}' AND candidate.next_attempt_at <= now()
          AND (candidate.claimed_until IS NULL OR candidate.claimed_until < now())
          AND NOT EXISTS (
              SELECT 1 FROM outbox AS older
              WHERE older.aggregate_id = candidate.aggregate_id
                AND older.status = '{OutboxStatus.PENDING}' AND older.id < candidate.id)
        ORDER BY candidate.id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    RETURNING id, event_id, type, payload, occurred_at, attempts,
              (SELECT request_id FROM sagas WHERE sagas.id = outbox.saga_id),
              (SELECT trace_parent FROM sagas WHERE sagas.id = outbox.saga_id)
"""
# Whoever holds the claim now, an event that reached the platform is delivered.
MARK_DELIVERED = f"""
    UPDATE outbox SET status = '{OutboxStatus.DELIVERED}', delivered_at = now(), claimed_by = NULL,
                      claimed_until = NULL, last_error = NULL
    WHERE id = ANY(%(ids)s) AND status = '{OutboxStatus.PENDING}'
"""
# The rest are tried again after their backoff, if this relay still holds their claim.
RESCHEDULE = """
    UPDATE outbox SET next_attempt_at = now() + make_interval(secs => failed.delay),
                      claimed_by = NULL, claimed_until = NULL, last_error = failed.problem
    FROM unnest(%(ids)s::bigint[], %(delays)s::float8[], %(problems)s::text[])
        AS failed(id, delay, problem)
    WHERE outbox.id = failed.id AND outbox.claimed_by = %(token)s
"""
PENDING = f"SELECT count(*) FROM outbox WHERE status = '{OutboxStatus.PENDING}'"


class OutboxRelay:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        http: httpx.AsyncClient,
        *,
        owner: str,
        policy: RelayPolicy,
        metrics: EngineMetrics | None = None,
    ):
        self.metrics = metrics or EngineMetrics.unregistered()
        self.sql = PlainSql(pool)  # claims and marks: plain SQL, as the saga's hot path
        self.http = http
        self.owner = owner
        self.policy = policy
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._backlog_read_at = 0.0
        self.failing_passes = 0  # passes in a row in which every delivery failed
        self._database = Outage(log, "the orchestrator's database (outbox relay)")
        # Logged once per outage, however many events and passes fail while it lasts.
        self._platform = Outage(
            log, "the data platform", "events wait in the outbox and are retried with backoff"
        )

    def notify(self) -> None:
        """A saga just wrote an event: deliver it now rather than at the next poll."""
        self._wakeup.set()

    async def claim(self, limit: int) -> tuple[str, list[Claimed]]:
        """Claim up to `limit` deliverable rows, in one statement (CLAIM)."""
        token = f"{self.owner}.{uuid.uuid4().hex[:12]}"
        params = {"token": token, "claim": timedelta(seconds=self.policy.claim_seconds)}
        rows = await self.sql.all(CLAIM, {**params, "limit": limit})
        return token, sorted((Claimed(*row) for row in rows), key=lambda c: c.id)

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.policy.backoff_max, self.policy.backoff_initial * 2.0 ** (attempts - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _post(self, messages: list[Claimed]) -> str | None:
        """Send a pass's events in one request (the platform takes all of them, or none);
        None if it took them, else what went wrong. The request id of the saga that wrote
        them goes along when they share one (one event, or one saga's)."""
        events = [
            {
                "event_id": str(m.event_id),
                "type": m.type,
                "occurred_at": m.occurred_at.isoformat(),
                "payload": m.payload,
            }
            for m in messages
        ]
        request_ids = {m.request_id for m in messages}
        request_id = request_ids.pop() if len(request_ids) == 1 else None
        headers = {logs.REQUEST_ID_HEADER: request_id} if request_id else {}
        try:
            response = await self.http.post(
                "/events/batch", json={"events": events}, headers=headers
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if response.status_code < 300:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    async def _record(self, token: str, outcomes: list[tuple[Claimed, str | None]]) -> None:
        """Mark what was delivered (one statement) and reschedule the rest (one more)."""
        delivered = [m.id for m, problem in outcomes if problem is None]
        failed = [(m, problem) for m, problem in outcomes if problem is not None]
        async with self.sql.pool.connection() as conn:
            if delivered:
                await self.sql.execute(conn, MARK_DELIVERED, {"ids": delivered})
            if failed:
                await self.sql.execute(
                    conn,
                    RESCHEDULE,
                    {
                        "ids": [m.id for m, _ in failed],
                        "delays": [self._backoff(m.attempts) for m, _ in failed],
                        "problems": [problem for _, problem in failed],
                        "token": token,
                    },
                )
        for message, problem in outcomes:
            if problem is None:
                self.metrics.outbox_delivered.labels(message.type).inc()
                lag = time.time() - message.occurred_at.timestamp()
                self.metrics.outbox_delivery_lag.labels(message.type).observe(max(lag, 0.0))
            else:
                self.metrics.outbox_failures.labels(message.type).inc()
                log.debug(
                    "outbox: event %s of saga %s not delivered (attempt %d): %s",
                    message.event_id,
                    message.payload.get("saga_id"),
                    message.attempts,
                    problem,
                )
        problems = {problem for _, problem in outcomes}
        if problems == {None}:
            self._platform.recovered()
        elif problems:
            self._platform.failed(RuntimeError(next(p for p in problems if p is not None)))

    async def deliver(self, token: str, messages: list[Claimed]) -> bool:
        """Deliver claimed events in one request, and record the outcome."""
        types = [m.type for m in messages]
        self.metrics.declare_events(set(types))
        with tracing.delivery_span(types, [m.trace_parent for m in messages]):
            problem = await self._post(messages)
            await self._record(token, [(message, problem) for message in messages])
        return problem is None

    async def run_once(self) -> int:
        # While the platform keeps failing, one event per pass probes it.
        token, claimed = await self.claim(1 if self.failing_passes else self.policy.batch)
        if claimed:
            delivered = await self.deliver(token, claimed)
            self.failing_passes = 0 if delivered else self.failing_passes + 1
        if time.monotonic() - self._backlog_read_at > 1.0:
            self.metrics.outbox_backlog.set(await self.pending())
            self._backlog_read_at = time.monotonic()
        return len(claimed)

    def stop(self) -> None:
        """End `run()` after the pass under way, if any: a delivery in flight is answered and
        marked, and no claim is left to expire (another relay would otherwise wait it out, and
        send those events a second time)."""
        self._stopping.set()
        self._wakeup.set()

    async def _rest(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def run(self) -> None:
        database_failures = 0  # passes in a row that could not reach the database
        while not self._stopping.is_set():
            self._wakeup.clear()  # before the pass: a notify during it is not lost
            try:
                delivered = await self.run_once()
                if database_failures:
                    database_failures = 0
                    self._database.recovered()
                if delivered == self.policy.batch:
                    continue  # more are waiting
            except Exception as error:
                if not unavailable(error):
                    log.exception("outbox relay pass failed; trying again")
                else:  # logged once per outage; tried again with backoff
                    database_failures += 1
                    self._database.failed(error)
                    await self._rest(backoff(database_failures, ceiling=self.policy.interval))
                    continue
            if self.failing_passes:
                # The platform is failing: back off as a whole, whatever wakes us.
                await self._rest(self._backoff(self.failing_passes))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self.policy.interval)

    async def pending(self) -> int:
        """The backlog, read through the index of pending rows: this runs every second, and
        must not cost more as delivered rows pile up."""
        row = await self.sql.one(PENDING)
        return row[0] if row is not None else 0
