"""Alembic operations for the `idempotency_keys` table that `IdempotencyRecordMixin` maps, called
from a service's own migrations so that no service copies the table's DDL.

The table has had three shapes, and each has its function. A released shape never changes: a
migration that called it must create the same thing forever, so a new shape is a new function
(and a step from the last one), never an edit.

- v1: `create_idempotency_table_v1()`, without `reversed_by`;
- v1 -> v2: `add_reversed_by()` (back: `drop_reversed_by()`), the key of the compensation that
  undid the action, so that an action is undone at most once;
- v2 in one go: `create_idempotency_table_v2()`, for a service that starts at v2 (`reversed_by`
  then comes before `created_at`; the store does not mind the order);
- v2 -> v3: `add_operation()` (back: `drop_operation()`), the operation that claimed the key, so
  that a compensation undoes only an action of the kind it compensates (NULL on records written
  before it, which are trusted as before);
- `drop_idempotency_table()` undoes any creation.

    def upgrade() -> None:
        create_idempotency_table_v2()
        add_operation()
        op.create_table("orders", ...)
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

__all__ = [
    "TABLE",
    "add_operation",
    "add_reversed_by",
    "create_idempotency_table_v1",
    "create_idempotency_table_v2",
    "drop_idempotency_table",
    "drop_operation",
    "drop_reversed_by",
]

TABLE = "idempotency_keys"

# Widths are written out, not taken from the store's constants: a shape is frozen once released.


def _answer_columns() -> list[sa.Column[Any]]:
    """The columns of every shape up to the answer: key, request fingerprint, outcome, answer."""
    return [
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    ]


def _reversed_by() -> sa.Column[Any]:
    return sa.Column("reversed_by", sa.String(length=200), nullable=True)


def _created_at() -> sa.Column[Any]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def create_idempotency_table_v1() -> None:
    """The first shape: an action's record, without the key of what undid it."""
    op.create_table(TABLE, *_answer_columns(), _created_at(), sa.PrimaryKeyConstraint("key"))


def add_reversed_by() -> None:
    """v1 -> v2: `reversed_by`, the key of the compensation that undid the action."""
    op.add_column(TABLE, _reversed_by())


def drop_reversed_by() -> None:
    """v2 -> v1."""
    op.drop_column(TABLE, "reversed_by")


def create_idempotency_table_v2() -> None:
    """The current shape in one go."""
    op.create_table(
        TABLE, *_answer_columns(), _reversed_by(), _created_at(), sa.PrimaryKeyConstraint("key")
    )


def add_operation() -> None:
    """v2 -> v3: `operation`, the name of the operation that claimed the key."""
    op.add_column(TABLE, sa.Column("operation", sa.String(length=64), nullable=True))


def drop_operation() -> None:
    """v3 -> v2."""
    op.drop_column(TABLE, "operation")


def drop_idempotency_table() -> None:
    op.drop_table(TABLE)
