"""a saga's business keys, and the indexes the admin finds sagas by: sagas.keys

The admin lists sagas by the business keys they carry (order id, user id, concert and seat id,
`SagaDefinition.keys`), and by the request that started them. The keys are written at the start
and whenever a step teaches the saga one (the payment learns its user from the order), so a
filter is one containment test (`keys @> '{"order_id": 5}'`) through a GIN index, whatever the
saga's type. Sagas started before this revision carry no keys (`{}`): found by status, type or
time, not by key.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "sagas",
        sa.Column("keys", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    # Concurrently: on millions of sagas a plain build would block every start and step.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_sagas_keys",
            "sagas",
            ["keys"],
            postgresql_using="gin",
            postgresql_ops={"keys": "jsonb_path_ops"},
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_sagas_request_id", "sagas", ["request_id"], postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_sagas_request_id", "sagas", postgresql_concurrently=True)
        op.drop_index("ix_sagas_keys", "sagas", postgresql_concurrently=True)
    op.drop_column("sagas", "keys")
