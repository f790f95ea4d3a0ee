"""An exception no handler takes: one ERROR line, with the request's id, and a 500 in the JSON
error shape that carries the same id back."""

import json
import logging

import pytest
from fastapi.testclient import TestClient

from common.logs import JsonFormatter
from order_service.app import create_app

pytestmark = pytest.mark.usefixtures("databases")


class Lines(logging.Handler):
    """Log lines as the service writes them, formatted when emitted (the ids are context)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("order_service"))
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_an_unexpected_error_is_logged_once_with_its_request_id():
    app = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    lines = Lines()
    logging.getLogger().addHandler(lines)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            answer = client.get("/boom", headers={"X-Request-ID": "req-boom-1"})
    finally:
        logging.getLogger().removeHandler(lines)

    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert answer.headers["X-Request-ID"] == "req-boom-1"
    errors = [line for line in lines.lines if line["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0]["request_id"] == "req-boom-1"
    assert "RuntimeError: a bug" in errors[0]["exc"]
