"""The kit's Alembic operations build the `idempotency_keys` table the store maps, in each shape
it has had: a service's old migrations keep creating what they created, and its last one ends at
the shape of `IdempotencyRecordMixin`."""

from collections.abc import Callable, Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

from sagaengine.participant import IdempotencyRecordMixin
from sagaengine.participant.migrations import (
    TABLE,
    add_operation,
    add_reversed_by,
    create_idempotency_table_v1,
    create_idempotency_table_v2,
    drop_idempotency_table,
    drop_operation,
    drop_reversed_by,
)

# The first shape as it was released, to the type: a released shape never changes.
V1 = [
    ("key", "VARCHAR(200)", False, None),
    ("fingerprint", "VARCHAR(64)", False, None),
    ("outcome", "VARCHAR(16)", False, None),
    ("status_code", "INTEGER", True, None),
    ("response", "JSONB", True, None),
    ("created_at", "TIMESTAMP WITH TIME ZONE", False, "now()"),
]
REVERSED_BY = ("reversed_by", "VARCHAR(200)", True, None)
OPERATION = ("operation", "VARCHAR(64)", True, None)


class Base(DeclarativeBase):
    pass


class IdempotencyRecord(IdempotencyRecordMixin, Base):
    pass


@pytest.fixture
def connection(scratch_engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back: PostgreSQL's DDL is transactional."""
    with scratch_engine.connect() as conn, conn.begin() as transaction:
        yield conn
        transaction.rollback()


def migrate(connection: Connection, *operations: Callable[[], None]) -> None:
    """Run the operations as a migration's upgrade() would, on `connection`."""
    with Operations.context(MigrationContext.configure(connection)):
        for operation in operations:
            operation()


def columns(connection: Connection) -> list[tuple[str, str, bool, str | None]]:
    """The table's columns in order: name, type, nullable, default."""
    return [
        (c["name"], c["type"].compile(connection.dialect), c["nullable"], c["default"])
        for c in inspect(connection).get_columns(TABLE)
    ]


def differences_from_the_store(connection: Connection) -> list:
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_the_first_shape_has_no_reversed_by(connection: Connection):
    migrate(connection, create_idempotency_table_v1)
    assert columns(connection) == V1


def test_the_first_shape_and_its_steps_end_at_the_shape_the_store_maps(connection: Connection):
    migrate(connection, create_idempotency_table_v1, add_reversed_by, add_operation)
    assert columns(connection) == [*V1, REVERSED_BY, OPERATION]
    assert differences_from_the_store(connection) == []


def test_the_second_shape_and_its_step_end_at_the_shape_the_store_maps(connection: Connection):
    migrate(connection, create_idempotency_table_v2, add_operation)
    assert columns(connection) == [*V1[:-1], REVERSED_BY, V1[-1], OPERATION]
    assert differences_from_the_store(connection) == []
    assert inspect(connection).get_pk_constraint(TABLE)["constrained_columns"] == ["key"]


def test_the_second_shape_alone_lacks_the_operation(connection: Connection):
    migrate(connection, create_idempotency_table_v2)
    assert columns(connection) == [*V1[:-1], REVERSED_BY, V1[-1]]
    assert differences_from_the_store(connection) != []


def test_the_downgrades_undo_each_step(connection: Connection):
    migrate(connection, create_idempotency_table_v1, add_reversed_by, add_operation)
    migrate(connection, drop_operation)
    assert columns(connection) == [*V1, REVERSED_BY]
    migrate(connection, drop_reversed_by)
    assert columns(connection) == V1
    migrate(connection, drop_idempotency_table)
    assert not inspect(connection).has_table(TABLE)


def test_the_check_sees_a_table_that_is_not_the_stores(connection: Connection):
    """The comparison above can fail: the first shape alone lacks a column the store maps."""
    migrate(connection, create_idempotency_table_v1)
    assert differences_from_the_store(connection) != []
