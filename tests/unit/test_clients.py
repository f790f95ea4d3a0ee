"""The service clients (sagaengine/http.py): what a call sends, and how every answer or
failure is classified as a business refusal or a transient fault.

HTTP is mocked with respx; coroutines are driven with asyncio.run.
"""

import asyncio
from typing import Any

import httpx
import pytest
import respx

from sagaengine.definition import RemoteCall
from sagaengine.http import (
    BusinessRefusal,
    ServiceClient,
    TransientFault,
    build_clients,
    classify,
)

BASE = "http://user.test"
DEDUCT = RemoteCall("user", "POST", "/users/7/deductions", {"amount": 500})


def _send(call: RemoteCall = DEDUCT, key: str | None = "saga-1:deduct_balance:action") -> Any:
    async def run() -> Any:
        async with httpx.AsyncClient(base_url=BASE) as http:
            return await ServiceClient("user", http).send(call, key, timeout=1.0)

    return asyncio.run(run())


@pytest.fixture
def mock_user() -> respx.MockRouter:
    with respx.mock(base_url=BASE, assert_all_called=True) as router:
        yield router


# --- send ---------------------------------------------------------------------------------------


def test_returns_the_json_object_of_a_success(mock_user: respx.MockRouter) -> None:
    mock_user.post("/users/7/deductions").mock(
        return_value=httpx.Response(200, json={"user_id": 7, "amount": 500, "balance": 1500})
    )
    assert _send() == {"user_id": 7, "amount": 500, "balance": 1500}


def test_sends_method_path_json_body_and_idempotency_key(mock_user: respx.MockRouter) -> None:
    route = mock_user.post("/users/7/deductions").mock(return_value=httpx.Response(201, json={}))
    _send(key="saga-1:deduct_balance:action")
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url == f"{BASE}/users/7/deductions"
    assert request.headers["Idempotency-Key"] == "saga-1:deduct_balance:action"
    assert request.headers["content-type"] == "application/json"
    assert request.read() == b'{"amount":500}'


def test_sends_no_idempotency_key_when_none_is_given(mock_user: respx.MockRouter) -> None:
    route = mock_user.post("/users/7/deductions").mock(return_value=httpx.Response(200, json={}))
    _send(key=None)
    assert "idempotency-key" not in route.calls.last.request.headers


def test_sends_a_call_without_body(mock_user: respx.MockRouter) -> None:
    route = mock_user.post("/orders/3/payment-start").mock(
        return_value=httpx.Response(200, json={"id": 3})
    )
    assert _send(RemoteCall("order", "POST", "/orders/3/payment-start")) == {"id": 3}
    assert route.calls.last.request.read() == b""


def test_business_error_carries_its_code_message_and_status(mock_user: respx.MockRouter) -> None:
    mock_user.post("/users/7/deductions").mock(
        return_value=httpx.Response(
            409, json={"error": {"code": "insufficient_balance", "message": "balance too low"}}
        )
    )
    with pytest.raises(BusinessRefusal) as refusal:
        _send()
    assert refusal.value.code == "insufficient_balance"
    assert refusal.value.message == "balance too low"
    assert refusal.value.status_code == 409
    assert refusal.value.as_json() == {
        "code": "insufficient_balance",
        "message": "balance too low",
        "status_code": 409,
    }


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_timeouts_and_throttling_are_transient(
    mock_user: respx.MockRouter, status: int
) -> None:
    mock_user.post("/users/7/deductions").mock(
        return_value=httpx.Response(
            status, json={"error": {"code": "unavailable", "message": "try later"}}
        )
    )
    with pytest.raises(TransientFault) as fault:
        _send()
    assert fault.value.status_code == status
    assert fault.value.code == "unavailable"
    assert not isinstance(fault.value, BusinessRefusal)


def test_refused_connection_is_a_transient_connection_error(mock_user: respx.MockRouter) -> None:
    mock_user.post("/users/7/deductions").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransientFault) as fault:
        _send()
    assert fault.value.code == "connection_error"
    assert fault.value.status_code is None
    assert fault.value.unsent  # no connection, so the request never left


def test_read_timeout_is_a_transient_timeout(mock_user: respx.MockRouter) -> None:
    mock_user.post("/users/7/deductions").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientFault) as fault:
        _send()
    assert fault.value.code == "timeout"
    assert fault.value.status_code is None
    assert not fault.value.unsent  # it left: its outcome is unknown


def test_a_connection_dropped_after_sending_is_not_unsent(mock_user: respx.MockRouter) -> None:
    mock_user.post("/users/7/deductions").mock(side_effect=httpx.ReadError("reset"))
    with pytest.raises(TransientFault) as fault:
        _send()
    assert (fault.value.code, fault.value.unsent) == ("connection_error", False)


def test_connect_timeout_is_a_transient_timeout(mock_user: respx.MockRouter) -> None:
    mock_user.post("/users/7/deductions").mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(TransientFault) as fault:
        _send()
    assert fault.value.code == "timeout"
    assert fault.value.unsent


def test_non_json_success_is_an_invalid_response(mock_user: respx.MockRouter) -> None:
    mock_user.post("/users/7/deductions").mock(return_value=httpx.Response(200, text="ok"))
    with pytest.raises(TransientFault) as fault:
        _send()
    assert fault.value.code == "invalid_response"
    assert fault.value.status_code == 200


# --- classify -----------------------------------------------------------------------------------


def _response(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", f"{BASE}/x"), **kwargs)


@pytest.mark.parametrize("status", [200, 201, 202])
def test_classify_returns_a_2xx_json_object(status: int) -> None:
    assert classify(_response(status, json={"ok": True})) == {"ok": True}


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_classify_reads_the_error_body_of_a_4xx(status: int) -> None:
    body = {"error": {"code": "order_not_payable", "message": "order 3 is PAID"}}
    with pytest.raises(BusinessRefusal) as refusal:
        classify(_response(status, json=body))
    assert (refusal.value.code, refusal.value.status_code) == ("order_not_payable", status)
    assert refusal.value.message == "order 3 is PAID"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "Not Found"},
        {"content": b""},
        {"json": {"detail": "Not Found"}},
        {"json": ["not", "an", "object"]},
        {"json": {"error": "flat string"}},
    ],
    ids=["text", "empty", "no-error-key", "list", "error-not-object"],
)
def test_classify_names_a_4xx_without_error_body_by_its_status(kwargs: dict[str, Any]) -> None:
    with pytest.raises(BusinessRefusal) as refusal:
        classify(_response(404, **kwargs))
    assert refusal.value.code == "http_404"
    assert refusal.value.status_code == 404


def test_classify_keeps_a_missing_message_empty() -> None:
    with pytest.raises(BusinessRefusal) as refusal:
        classify(_response(409, json={"error": {"code": "seat_taken"}}))
    assert (refusal.value.code, refusal.value.message) == ("seat_taken", "")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_classify_names_a_transient_fault_without_error_body_by_its_status(status: int) -> None:
    with pytest.raises(TransientFault) as fault:
        classify(_response(status, text="<html>Bad Gateway</html>"))
    assert fault.value.code == f"http_{status}"
    assert fault.value.status_code == status
    assert "Bad Gateway" in fault.value.message


@pytest.mark.parametrize(
    "kwargs",
    [{"text": "ok"}, {"content": b""}, {"json": [1, 2]}, {"json": "text"}, {"json": None}],
    ids=["text", "empty", "list", "string", "null"],
)
def test_classify_refuses_a_2xx_that_is_not_a_json_object(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TransientFault) as fault:
        classify(_response(200, **kwargs))
    assert fault.value.code == "invalid_response"


# --- build_clients ------------------------------------------------------------------------------


def test_build_clients_gives_each_service_its_base_url_and_bearer_token() -> None:
    urls = {"order": "http://order.test", "user": "http://user.test"}
    clients = build_clients(urls, "s3cret", timeout=2.5)

    async def call_each() -> list[httpx.Request]:
        with respx.mock(assert_all_called=True) as router:
            order = router.post("http://order.test/ping").mock(
                return_value=httpx.Response(200, json={})
            )
            user = router.post("http://user.test/ping").mock(
                return_value=httpx.Response(200, json={})
            )
            for client in clients.values():
                await client.send(RemoteCall(client.name, "POST", "/ping"), None, 1.0)
        for client in clients.values():
            await client.http.aclose()
        return [order.calls.last.request, user.calls.last.request]

    try:
        assert set(clients) == {"order", "user"}
        assert {name: c.name for name, c in clients.items()} == {"order": "order", "user": "user"}
        assert all(c.http.headers["Authorization"] == "Bearer s3cret" for c in clients.values())
        requests = asyncio.run(call_each())
    finally:
        for client in clients.values():
            if not client.http.is_closed:
                asyncio.run(client.http.aclose())
    assert [r.headers["Authorization"] for r in requests] == ["Bearer s3cret"] * 2
