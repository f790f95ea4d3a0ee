"""Liveness and readiness: live while the process runs; ready only with its database reachable
and at the migration the code needs."""

import pytest
from fastapi.testclient import TestClient

from order_service.app import create_app

pytestmark = pytest.mark.usefixtures("databases")


def test_a_process_with_its_database_at_head_is_live_and_ready():
    with TestClient(create_app()) as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").json() == {"status": "ready"}


def test_a_database_behind_the_code_is_not_ready():
    with TestClient(create_app()) as client:
        client.app.state.migration_head = "a_revision_from_the_future"
        answer = client.get("/health/ready")
        assert client.get("/health/live").status_code == 200
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert answer.json()["error"]["code"] == "not_ready"
    assert "a_revision_from_the_future" in answer.json()["error"]["message"]
