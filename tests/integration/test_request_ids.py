"""A caller's X-Request-ID is carried when it looks like one, and replaced when it does not:
bad bytes or an id too long for the saga's column are never a 500."""

import pytest

from order_service.app import create_app
from tests.integration.support import service_client

pytestmark = pytest.mark.usefixtures("databases")


client = service_client(create_app)


def test_a_well_formed_request_id_is_answered_back(client):
    r = client.get("/health", headers={"X-Request-ID": "checkout-42.a:b_c"})
    assert r.status_code == 200
    assert r.headers["X-Request-ID"] == "checkout-42.a:b_c"


@pytest.mark.parametrize(
    "sent",
    [b"caf\xe9", "cafā".encode(), b"x" * 129, b"has space", b""],
    ids=["latin-1", "utf-8", "too long", "space", "empty"],
)
def test_anything_else_is_replaced_by_a_fresh_id(client, sent):
    r = client.get("/health", headers=[(b"X-Request-ID", sent)])
    assert r.status_code == 200
    answered = r.headers["X-Request-ID"]
    assert answered.encode() != sent and len(answered) == 32  # a uuid4 hex
