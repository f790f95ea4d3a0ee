"""More requests in flight than the request thread pool has threads, on a small connection pool:
every request is answered, none waits out the pool timeout (no thread-pool starvation)."""

import asyncio
import os

import httpx

from tools.stack import Process, free_port

IN_FLIGHT = 150  # more than the 40 threads of the request thread pool


def test_a_burst_of_requests_never_starves_the_connection_pool(databases, tmp_path):
    env = {**os.environ, "ORDERS_DB_POOL_SIZE": "2", "ORDERS_DB_MAX_OVERFLOW": "0"}
    service = Process("order_service", free_port(), env, tmp_path / "order_service.log")
    service.start()
    try:
        service.wait_healthy()
        item = {"product_id": 1, "quantity": 1, "unit_price": 100}
        order = httpx.post(f"{service.url}/orders", json={"user_id": 1, "items": [item]}).json()

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=IN_FLIGHT)
            # Well under the pool's 30 s timeout: a starved pool would not answer in time.
            async with httpx.AsyncClient(timeout=20, limits=limits) as http:
                answers = await asyncio.gather(
                    *(http.get(f"{service.url}/orders/{order['id']}") for _ in range(IN_FLIGHT)),
                    return_exceptions=True,
                )
            return [a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers]

        statuses = asyncio.run(burst())
    finally:
        service.stop()
    assert statuses == [200] * IN_FLIGHT
