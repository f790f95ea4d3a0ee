"""`/metrics` as an operator reads it: latency by route, the documentation's routes named as
such, and no `_created` series beside every counter and histogram."""

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from order_service.app import create_app

pytestmark = pytest.mark.usefixtures("databases")


def _routes(text: str) -> set[str]:
    return {
        sample.labels["route"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_request_duration_seconds_count"
    }


def test_every_route_is_labelled_by_its_template_and_only_a_miss_is_unmatched():
    with TestClient(create_app()) as client:
        client.get("/openapi.json")
        client.get("/orders/1")
        client.get("/no/such/path")
        text = client.get("/metrics").text

    routes = _routes(text)
    assert {"/openapi.json", "/orders/{order_id}", "unmatched"} <= routes
    assert "/orders/1" not in routes  # a template, not one series per order


def test_metrics_carry_no_created_series():
    with TestClient(create_app()) as client:
        client.get("/health/live")
        text = client.get("/metrics").text

    assert "http_request_duration_seconds_count" in text
    assert "_created" not in text
