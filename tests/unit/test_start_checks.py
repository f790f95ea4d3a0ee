"""The start of a saga reads the order (or concert) first; how it answers when that read fails."""

import asyncio

import httpx
import pytest
import respx

from common.errors import DomainError
from orchestrator import service
from orchestrator.clients import ServiceClient

ORDERS = "http://orders.test"


def _start(status: int, body: dict) -> DomainError:
    async def scenario():
        async with httpx.AsyncClient(base_url=ORDERS) as http:
            client = ServiceClient("order", http)
            with respx.mock(base_url=ORDERS) as mock:
                mock.get("/orders/7").respond(status, json=body)
                with pytest.raises(DomainError) as refused:
                    await service.start_payment(None, client, 7, None, timeout=1.0)
                return refused.value

    return asyncio.run(scenario())


def test_an_unknown_order_is_a_404():
    refused = _start(404, {"error": {"code": "order_not_found", "message": "no"}})
    assert (refused.status_code, refused.code) == (404, "order_not_found")


def test_a_paid_order_is_a_409_without_a_saga():
    refused = _start(200, {"id": 7, "status": "PAID", "user_id": 1, "amount": 5, "items": []})
    assert (refused.status_code, refused.code) == (409, "order_not_payable")


@pytest.mark.parametrize("status", [401, 403, 400])
def test_a_read_refused_for_another_reason_is_a_503_not_a_500(status):
    refused = _start(status, {"error": {"code": "unauthorized", "message": "bad token"}})
    assert (refused.status_code, refused.code) == (503, "dependency_unavailable")


def test_a_dependency_that_stays_down_is_a_503():
    refused = _start(503, {"error": {"code": "unavailable", "message": "down"}})
    assert (refused.status_code, refused.code) == (503, "dependency_unavailable")
