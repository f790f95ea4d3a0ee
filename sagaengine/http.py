"""One HTTP client per domain service, and the classification of every failure.

Before anything else looks at an error it is classified: a business refusal (a 4xx with a machine
code: final, compensate at once) or a transient fault (connection error, timeout, 5xx, 408, 429:
retry under the same key). Retrying is the runner's job, so that each attempt is persisted.
"""

from typing import Any, Protocol

import httpx

from sagaengine import context as logs
from sagaengine.definition import RemoteCall
from sagaengine.transport import transport


class StepError(Exception):
    def __init__(self, code: str, message: str, status_code: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status_code = status_code

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "status_code": self.status_code}


class BusinessRefusal(StepError):
    """The service said no and means it: retrying the same request cannot change the answer."""


class TransientFault(StepError):
    """The outcome is unknown or the service is unavailable: retry under the same key.
    `unsent`: the request never left (no connection could be made), so nothing was applied."""

    def __init__(
        self, code: str, message: str, status_code: int | None = None, *, unsent: bool = False
    ):
        super().__init__(code, message, status_code)
        self.unsent = unsent


TRANSIENT_STATUSES = frozenset({408, 429})


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200]


def classify(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a success, or the classified error of anything else."""
    status = response.status_code
    if status >= 500 or status in TRANSIENT_STATUSES:
        code, message = _error_of(response)
        raise TransientFault(code, message, status)
    if status >= 400:
        code, message = _error_of(response)
        raise BusinessRefusal(code, message, status)
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientFault("invalid_response", "the response was not JSON", status) from exc
    if not isinstance(body, dict):
        raise TransientFault("invalid_response", "the response was not a JSON object", status)
    return body


class ParticipantClient(Protocol):
    """What the runner calls a participant through: one call, under its key (None: a read, or
    a settle call), within `timeout`. Answers the JSON body of a 2xx; raises BusinessRefusal
    for a final "no", TransientFault for what may be retried (its outcome unknown)."""

    async def send(
        self, call: RemoteCall, idempotency_key: str | None, timeout: float
    ) -> dict[str, Any]: ...


class ServiceClient:
    """A participant over HTTP (httpx), its errors classified (`classify`)."""

    def __init__(self, name: str, http: httpx.AsyncClient):
        self.name = name
        self.http = http

    async def send(
        self, call: RemoteCall, idempotency_key: str | None, timeout: float
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if (request_id := logs.request_id.get()) is not None:
            headers[logs.REQUEST_ID_HEADER] = request_id  # one saga, one id, in every process
        try:
            response = await self.http.request(
                call.method, call.path, json=call.body, headers=headers, timeout=timeout
            )
        except httpx.ConnectTimeout as exc:
            message = f"no connection to {self.name} in {timeout}s"
            raise TransientFault("timeout", message, unsent=True) from exc
        except httpx.TimeoutException as exc:
            raise TransientFault("timeout", f"{self.name} did not answer in {timeout}s") from exc
        except httpx.ConnectError as exc:
            raise TransientFault("connection_error", f"{self.name}: {exc!r}", unsent=True) from exc
        except httpx.TransportError as exc:
            raise TransientFault("connection_error", f"{self.name}: {exc!r}") from exc
        return classify(response)


def build_clients(
    urls: dict[str, str], service_token: str, timeout: float
) -> dict[str, ServiceClient]:
    headers = {"Authorization": f"Bearer {service_token}"}
    # Idle connections are dropped well before the services' keep-alive timeout (uvicorn's is
    # 5 s, as is httpx's default expiry): reusing one that the server is closing at that
    # instant fails the call with an unknown outcome, and costs a retry.
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=50, keepalive_expiry=2.0)
    return {
        name: ServiceClient(
            name,
            httpx.AsyncClient(
                base_url=url, headers=headers, timeout=timeout, transport=transport(url, limits)
            ),
        )
        for name, url in urls.items()
    }
