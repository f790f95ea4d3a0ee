"""a saga whose start is still being decided by its first step: sagas.starting

A start records its saga and runs the first step's call before it answers: if that step refuses
the start (an unknown order, one that cannot be paid), the saga is removed and the client gets
the refusal, as if no saga had been recorded. Until that is decided, the saga is `starting`,
and a repeated start that finds it waits for the decision instead of answering a saga that may
vanish.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "sagas",
        sa.Column("starting", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )


def downgrade() -> None:
    op.drop_column("sagas", "starting")
