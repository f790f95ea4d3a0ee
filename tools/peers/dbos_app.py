"""The payment saga on DBOS Transact, a peer of our orchestrator in `make bench`.

A DBOS workflow (checkpointed in its own PostgreSQL system database) whose steps are the saga's
remote calls, each `perform`ed with our clients, classification, keys and retry budgets, and, last,
the delivery of its outcome event (`tools.peers.payment`). The front (`tools.peers.front`) reads
the order, enqueues the order's workflow (`payment-{order_id}`: a repeated start finds the one
already there) and waits for its result.

Run as DBOS's maintainers would run it (every setting checked against DBOS 3.4's source; the
values are in `tools.peers`, where the report reads them):

- admission control by a DBOS queue: at most `DBOS_WORKER_CONCURRENCY` (64, as ours'
  ORCHESTRATOR_MAX_RUNNING_SAGAS) workflows run at once in this process; more wait recorded
  (ENQUEUED), as ours records a saga and runs it when there is room;
- the queue looked at every `DBOS_QUEUE_POLLING` seconds, and a waited-for workflow's status
  every `DBOS_RESULT_POLLING` (DBOS's default, 1 s, suits background work: it makes both
  settable for workflows that a client waits for). An enqueued workflow's handle polls: there
  is no waiting on it in memory, as there is for one started directly (`start_workflow_async`),
  which has no admission control. In runs made while choosing: 1 s halved the throughput at
  concurrency 8 (the latency is the polling's); 0.05 s cost more CPU per saga at 32 and 128
  (every waiting client polls); a workflow started directly cost a few ms less of CPU per saga;
- no `pool_pre_ping` on the system database (DBOS's default pings every connection it checks
  out: one more round trip before each of its transactions), and the executor that runs its
  database calls bounded to the system database's pool (`max_executor_threads`; unbounded by
  default, and a thread beyond the pool only waits for a connection);
- its log level at LOG_LEVEL (INFO in the bench, as every process).

    python -m tools.peers.dbos_app --port 8010 [--database-url postgresql://.../saga_bench_dbos]

The domain services' URLs, the service token and the budgets come from the orchestrator's own
settings (ORDER_SERVICE_URL, ..., ORCHESTRATOR_STEP_TIMEOUT, ...).
"""

import argparse
import asyncio
import os
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import uvicorn
from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID
from fastapi import FastAPI

from common import logs
from orchestrator.config import Settings
from sagaengine.http import ServiceClient, build_clients
from tools.peers import (
    DBOS_QUEUE_POLLING,
    DBOS_RESULT_POLLING,
    DBOS_SYSTEM_POOL,
    DBOS_WORKER_CONCURRENCY,
)
from tools.peers.front import create_front
from tools.peers.payment import (
    CallResult,
    CallSpec,
    SagaResult,
    perform,
    policies,
    run_payment_saga,
    service_urls,
    workflow_id,
)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/saga_bench_dbos"
QUEUE = "payment_saga"


class DbosEngine:
    """The order client, and how a payment runs on DBOS (see `tools.peers.front`)."""

    def __init__(self, queue: Queue, order_client: ServiceClient, result_polling: float):
        self.queue, self.order_client, self.result_polling = queue, order_client, result_polling
        self.workflow: Any = None  # the registered workflow function, set by `create_app`

    async def pay(self, order_id: int, order: dict[str, Any]) -> SagaResult:
        with SetWorkflowID(workflow_id(order_id)):  # an existing one is returned, not restarted
            handle = await self.queue.enqueue_async(self.workflow, order_id, order)
        return await handle.get_result(polling_interval_sec=self.result_polling)


def create_app(
    settings: Settings,
    database_url: str,
    *,
    worker_concurrency: int = DBOS_WORKER_CONCURRENCY,
    queue_polling: float = DBOS_QUEUE_POLLING,
    result_polling: float = DBOS_RESULT_POLLING,
) -> FastAPI:
    budgets = policies(settings)
    # DBOS may run a workflow on another event loop than the server's (a recovered one, on its
    # background loop): an httpx client belongs to the loop it was made on, so one set per loop.
    clients_by_loop: dict[asyncio.AbstractEventLoop, dict[str, ServiceClient]] = {}

    def clients() -> dict[str, ServiceClient]:
        loop = asyncio.get_running_loop()
        if loop not in clients_by_loop:
            clients_by_loop[loop] = build_clients(
                service_urls(settings), settings.service_token, settings.step_timeout
            )
        return clients_by_loop[loop]

    # Named explicitly: a recovered workflow is found by name, whatever module ran it.
    @DBOS.step(name="remote_call")
    async def remote_call(call: CallSpec) -> CallResult:
        return await perform(
            clients(), call, timeout=settings.step_timeout, policy=budgets[call["policy"]]
        )

    @DBOS.workflow(name="payment_saga")
    async def payment_saga(order_id: int, order: dict[str, Any]) -> SagaResult:
        # The event's time as this run sees it: a recovered run may see a later one, and the
        # platform keeps the first copy of the event (its id is the workflow's).
        return await run_payment_saga(
            DBOS.workflow_id, order_id, order, remote_call, lambda: datetime.now(UTC)
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        config: DBOSConfig = {
            "name": "saga-bench-peer",
            "system_database_url": database_url,
            "sys_db_pool_size": DBOS_SYSTEM_POOL,
            "db_engine_kwargs": {"pool_pre_ping": False},
            "max_executor_threads": DBOS_SYSTEM_POOL,
            "log_level": settings.log_level.upper(),
            "application_version": "payment-saga-1",
        }
        DBOS(config=config)
        # Launched on the server's loop, so that DBOS takes it as its main loop.
        DBOS.launch()
        queue = await DBOS.register_queue_async(
            QUEUE,
            worker_concurrency=worker_concurrency,
            polling_interval_sec=queue_polling,
            on_conflict="always_update",
        )
        engine = DbosEngine(queue, clients()["order"], result_polling)
        engine.workflow = payment_saga
        app.state.engine = engine
        try:
            yield
        finally:
            DBOS.destroy()
            for loop_clients in clients_by_loop.values():
                for client in loop_clients.values():
                    await client.http.aclose()

    return create_front("payment saga on DBOS", lifespan, settings.step_timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.peers.dbos_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DBOS_SYSTEM_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="DBOS's system database (created if missing)",
    )
    parser.add_argument("--worker-concurrency", type=int, default=DBOS_WORKER_CONCURRENCY)
    parser.add_argument(
        "--queue-polling", type=float, default=DBOS_QUEUE_POLLING, metavar="SECONDS"
    )
    parser.add_argument(
        "--result-polling", type=float, default=DBOS_RESULT_POLLING, metavar="SECONDS"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    logs.configure("dbos_app", settings.log_level)
    uvicorn.run(
        create_app(
            settings,
            args.database_url,
            worker_concurrency=args.worker_concurrency,
            queue_polling=args.queue_polling,
            result_polling=args.result_polling,
        ),
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep the JSON logging of common.logs, as ours does
        access_log=False,  # common.logs writes one line per request, as in ours
    )


if __name__ == "__main__":
    main()
