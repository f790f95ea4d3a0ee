"""The data platform mock in process: events stored once per id, one at a time or in batches."""

import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from data_platform.app import create_app
from tests.integration.support import service_client

pytestmark = pytest.mark.usefixtures("databases")


client = service_client(create_app)


def _event(event_type: str = "order.paid") -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "occurred_at": datetime.now(UTC).isoformat(),
        "payload": {"order_id": 1},
    }


def _stored(client: TestClient, event_ids: set[str]) -> dict[str, int]:
    events = client.get("/events").json()
    return {e["event_id"]: e["deliveries"] for e in events if e["event_id"] in event_ids}


def test_a_batch_stores_each_event_once_and_absorbs_repeats(client: TestClient):
    old, new = _event(), _event()
    client.post("/events", json=old)

    answer = client.post("/events/batch", json={"events": [old, new, new]})

    assert answer.status_code == 200
    assert answer.json() == {
        "events": [
            {"event_id": old["event_id"], "stored": False},
            {"event_id": new["event_id"], "stored": True},
            {"event_id": new["event_id"], "stored": False},
        ]
    }
    assert _stored(client, {old["event_id"], new["event_id"]}) == {
        old["event_id"]: 2,
        new["event_id"]: 2,
    }


def test_a_platform_that_is_down_takes_none_of_a_batch(client: TestClient):
    events = [_event(), _event()]
    client.post("/_control", json={"down": True})
    try:
        answer = client.post("/events/batch", json={"events": events})
    finally:
        client.post("/_control", json={"down": False})

    assert answer.status_code == 503
    assert _stored(client, {e["event_id"] for e in events}) == {}


@pytest.mark.parametrize("body", [{"events": []}, {"events": [{"type": "x"}]}, {}])
def test_a_malformed_batch_is_a_422_and_stores_nothing(client: TestClient, body: dict):
    answer = client.post("/events/batch", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"
