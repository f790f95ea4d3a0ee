"""The HTTP front of both peers: the payment API as ours serves it, over another engine.

`POST /payments {"order_id"}` reads the order first: an unknown order is `404 order_not_found`,
a PAID or CANCELLED one `409 order_not_payable`, and neither starts anything. That is the
public contract ours meets too; ours meets it with the saga's first step instead (a saga whose
first step refuses the start is removed), which an engine of workflows recorded before they run
cannot do, so a user of these engines reads the order first. Otherwise the engine starts the
order's workflow (or finds the one already there) and the front answers 200 `{"saga_id",
"status", "error"}` once it is final.

Served as ours is, so that the same work is measured: the JSON request log of `common.logs` at
`LOG_LEVEL` (INFO, ours' production default), the HTTP latency metrics of `common.metrics`, the
error body of `common.handlers`.
"""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from fastapi import FastAPI, Request
from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from common import logs
from common import metrics as http_metrics
from common.errors import DomainError, NotFound
from common.handlers import DOCUMENTED_ERRORS, install_error_handlers
from sagaengine.definition import RemoteCall
from sagaengine.http import BusinessRefusal, ServiceClient, TransientFault
from tools.peers.payment import SagaResult

ORDER_FIELDS = ("user_id", "amount", "items")  # what the saga keeps of the order, as ours does
UNPAYABLE = ("PAID", "CANCELLED")


class OrderNotFound(NotFound):
    code = "order_not_found"


class OrderNotPayable(DomainError):
    code = "order_not_payable"


class DependencyUnavailable(DomainError):
    status_code = 503
    code = "dependency_unavailable"


class PaymentRequest(BaseModel):
    order_id: int


class PaymentEngine(Protocol):
    """What a peer plugs into the front, set on `app.state.engine` by its lifespan."""

    order_client: ServiceClient

    async def pay(self, order_id: int, order: dict[str, Any]) -> SagaResult:
        """Start the order's workflow, or find it, and wait for its result."""
        ...


async def read_payable_order(client: ServiceClient, order_id: int, timeout: float) -> dict:
    """The order as requested (`ORDER_FIELDS`), read with ours' brief retries; a refusal of the
    payment as ours answers it, before any workflow exists."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=0.1, max=1),
            retry=retry_if_exception_type(TransientFault),
            reraise=True,
        ):
            with attempt:
                call = RemoteCall(client.name, "GET", f"/orders/{order_id}")
                order = await client.send(call, None, timeout)
    except TransientFault as fault:
        raise DependencyUnavailable(f"the order service is unavailable: {fault}") from fault
    except BusinessRefusal as refusal:
        if refusal.status_code == 404:
            raise OrderNotFound(f"order {order_id} does not exist") from refusal
        unexpected = f"the order service refused a read: {refusal.code}"
        raise DependencyUnavailable(unexpected) from refusal
    if order["status"] in UNPAYABLE:
        raise OrderNotPayable(f"order {order_id} is {order['status']} and cannot be paid")
    return {name: order.get(name) for name in ORDER_FIELDS}


async def _always_ready(app: FastAPI) -> str | None:
    return None  # the peers' engines are not what the benchmark watches


def create_front(
    title: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    step_timeout: float,
) -> FastAPI:
    """The payment API over the engine that `lifespan` sets on `app.state.engine`."""
    app = FastAPI(title=title, lifespan=lifespan, responses=DOCUMENTED_ERRORS)
    install_error_handlers(app)
    http_metrics.instrument(app, readiness=_always_ready)
    logs.instrument(app)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/payments")
    async def pay(body: PaymentRequest, request: Request) -> dict:
        # `?wait=` is accepted and ignored: the answer always waits for the workflow's end.
        engine: PaymentEngine = request.app.state.engine
        order = await read_payable_order(engine.order_client, body.order_id, step_timeout)
        return await engine.pay(body.order_id, order)

    return app
