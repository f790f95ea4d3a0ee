"""The payment saga on DBOS Transact, a peer of our orchestrator in `make bench`.

A DBOS workflow (checkpointed in its own PostgreSQL system database) whose steps are the saga's
remote calls, each `perform`ed with our clients, classification, keys and retry budgets
(`tools.peers.payment`). `POST /payments {"order_id"}` starts the workflow, waits for it, and
answers 200 `{"saga_id", "status", "error"}`.

    python -m tools.peers.dbos_app --port 8010 [--database-url postgresql://.../saga_bench_dbos]

The domain services' URLs, the service token and the budgets come from the orchestrator's own
settings (ORDER_SERVICE_URL, ..., ORCHESTRATOR_STEP_TIMEOUT, ...).
"""

import argparse
import asyncio
import logging
import os
import uuid
from contextlib import asynccontextmanager

import uvicorn
from dbos import DBOS, DBOSConfig, SetWorkflowID
from fastapi import FastAPI
from pydantic import BaseModel

from orchestrator.clients import ServiceClient, build_clients
from orchestrator.config import Settings
from tools.peers.payment import CallResult, CallSpec, perform, policies, run_payment_saga

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/saga_bench_dbos"


class PaymentRequest(BaseModel):
    order_id: int


def create_app(settings: Settings, database_url: str) -> FastAPI:
    budgets = policies(settings)
    # DBOS may run a workflow on another event loop than the server's (a recovered one, on its
    # background loop): an httpx client belongs to the loop it was made on, so one set per loop.
    clients_by_loop: dict[asyncio.AbstractEventLoop, dict[str, ServiceClient]] = {}

    def clients() -> dict[str, ServiceClient]:
        loop = asyncio.get_running_loop()
        if loop not in clients_by_loop:
            clients_by_loop[loop] = build_clients(
                settings.service_urls(), settings.service_token, settings.step_timeout
            )
        return clients_by_loop[loop]

    # Named explicitly: a recovered workflow is found by name, whatever module ran it.
    @DBOS.step(name="remote_call")
    async def remote_call(call: CallSpec) -> CallResult:
        return await perform(
            clients(), call, timeout=settings.step_timeout, policy=budgets[call["policy"]]
        )

    @DBOS.workflow(name="payment_saga")
    async def payment_saga(order_id: int) -> dict:
        return await run_payment_saga(DBOS.workflow_id, order_id, remote_call)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        config: DBOSConfig = {
            "name": "saga-bench-peer",
            "system_database_url": database_url,
            "log_level": os.environ.get("DBOS_LOG_LEVEL", "WARNING"),
            "application_version": "payment-saga-1",
        }
        DBOS(config=config)
        # Launched on the server's loop, so that DBOS takes it as its main loop.
        DBOS.launch()
        try:
            yield
        finally:
            DBOS.destroy()
            for loop_clients in clients_by_loop.values():
                for client in loop_clients.values():
                    await client.http.aclose()

    app = FastAPI(title="payment saga on DBOS", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/payments")
    async def pay(body: PaymentRequest) -> dict:
        saga_id = str(uuid.uuid4())
        with SetWorkflowID(saga_id):
            handle = await DBOS.start_workflow_async(payment_saga, body.order_id)
        return await handle.get_result()

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.peers.dbos_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DBOS_SYSTEM_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="DBOS's system database (created if missing)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(
        create_app(Settings(), args.database_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
