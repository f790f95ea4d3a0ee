"""What the tests of the services share: the app as a module's `client` fixture, the
orchestrator's credentials, fresh keys, and the check of the JSON error body."""

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

# The bearer token the orchestrator calls the services' saga steps with.
SERVICE = {"Authorization": "Bearer dev-service-token"}


def service_client(create_app: Callable[[], FastAPI]) -> Any:
    """A `client` fixture: the app `create_app()` builds, started once per module on the test
    databases. In a test module: `client = service_client(create_app)`."""

    @pytest.fixture(scope="module")
    def client(databases: None) -> Iterator[TestClient]:
        with TestClient(create_app()) as client:
            yield client

    return client


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
