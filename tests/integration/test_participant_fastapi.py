"""A service adopts the participant kit in a few lines, with nothing of this project's common code:
its own table (made by the kit's migration), its own session and credentials check handed to
`settle_router()`, and its step answered by `stored_response()`."""

from collections.abc import Iterator
from typing import Annotated

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from sagaengine.participant import IdempotencyRecordMixin, IdempotencyStore, Refusal
from sagaengine.participant.fastapi import (
    IdempotencyKey,
    OptionalIdempotencyKey,
    settle_router,
    stored_response,
)
from sagaengine.participant.migrations import add_operation, create_idempotency_table_v2
from tests.integration.support import new_key

TOKEN = {"Authorization": "Bearer participant-token"}


class Base(DeclarativeBase):
    pass


class IdempotencyRecord(IdempotencyRecordMixin, Base):
    pass


class Participant:
    """The service: one saga step, `POST /parcels` (ships a parcel, once per key)."""

    def __init__(self, engine: Engine):
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.store = IdempotencyStore(IdempotencyRecord)
        self.shipped: list[str] = []

    def get_session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def app(self) -> FastAPI:
        def authorize(request: Request) -> None:
            if request.headers.get("Authorization") != TOKEN["Authorization"]:
                raise Refusal("not the orchestrator", code="unauthorized", status_code=401)

        async def refused(_: Request, exc: Refusal) -> JSONResponse:
            return JSONResponse(exc.body(), status_code=exc.status_code)

        app = FastAPI()
        app.add_exception_handler(Refusal, refused)
        app.include_router(
            settle_router(self.store, get_session=self.get_session, authorize=authorize)
        )
        session_dependency = Annotated[Session, Depends(self.get_session)]

        @app.post("/parcels", status_code=201)
        def ship(session: session_dependency, key: IdempotencyKey) -> JSONResponse:
            def apply() -> tuple[int, dict[str, str]]:
                self.shipped.append(key)
                return 201, {"parcel": key}

            return stored_response(self.store.execute(session, key, "ship", {}, apply))

        @app.get("/key")
        def echo(key: OptionalIdempotencyKey = None) -> dict[str, str | None]:
            return {"key": key}

        return app


@pytest.fixture(scope="module")
def participant(scratch_engine: Engine) -> Participant:
    with scratch_engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        create_idempotency_table_v2()
        add_operation()
    return Participant(scratch_engine)


@pytest.fixture(scope="module")
def client(participant: Participant) -> Iterator[TestClient]:
    with TestClient(participant.app()) as client:
        yield client


def ship(client: TestClient, key: str) -> tuple[int, str | None, dict]:
    answer = client.post("/parcels", headers={"Idempotency-Key": key})
    return answer.status_code, answer.headers.get("Idempotent-Replayed"), answer.json()


def settle(client: TestClient, key: str, headers: dict[str, str] = TOKEN) -> dict:
    answer = client.post("/_idempotency/settle", json={"key": key}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_retried_step_replays_its_answer_marked_as_a_replay(client, participant):
    key = new_key()
    assert ship(client, key) == (201, None, {"parcel": key})
    assert ship(client, key) == (201, "true", {"parcel": key})
    assert participant.shipped.count(key) == 1


def test_settling_a_step_that_ran_answers_its_record(client):
    key = new_key()
    ship(client, key)
    assert settle(client, key) == {
        "key": key,
        "outcome": "APPLIED",
        "status_code": 201,
        "response": {"parcel": key},
    }


def test_settling_a_step_that_never_arrived_refuses_it_for_good(client, participant):
    key = new_key()
    assert settle(client, key) == {
        "key": key,
        "outcome": "TOMBSTONE",
        "status_code": None,
        "response": None,
    }
    status, replayed, body = ship(client, key)
    assert (status, replayed, body["error"]["code"]) == (409, "true", "action_compensated")
    assert key not in participant.shipped
    assert settle(client, key)["status_code"] == 409


def test_settling_asks_the_credentials_check_it_was_given(client):
    answer = client.post("/_idempotency/settle", json={"key": new_key()})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Idempotency-Key": ""}, {"Idempotency-Key": "k" * 201}, {"Idempotency-Key": "\x00"}],
    ids=["missing", "empty", "too long", "NUL"],
)
def test_a_step_needs_a_storable_key_of_1_to_200_characters(client, headers, participant):
    assert client.post("/parcels", headers=headers).status_code == 422
    assert participant.shipped.count(headers.get("Idempotency-Key")) == 0


def test_an_optional_key_may_be_left_out(client):
    assert client.get("/key").json() == {"key": None}
    assert client.get("/key", headers={"Idempotency-Key": "k"}).json() == {"key": "k"}
