"""Fixtures shared by the integration tests (the helpers they import are in support.py)."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from common.db import drop_database, ensure_database
from tests.conftest import PREFIX, TEST_PG_URL


@pytest.fixture(scope="module")
def scratch_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An empty database of the test module's own, beside the suite's, dropped afterwards."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    url = make_url(TEST_PG_URL).set(drivername="postgresql+psycopg", database=f"{PREFIX}_{name}")
    drop_database(url)
    ensure_database(url)
    engine = create_engine(url)
    yield engine
    engine.dispose()
    drop_database(url)


@pytest.fixture
def db(client: TestClient) -> sessionmaker[Session]:
    """Sessions on the database of the module's service (its `client`), to look behind its API."""
    return client.app.state.sessionmaker
