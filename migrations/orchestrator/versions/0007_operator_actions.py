"""the audit trail of operator actions: operator_actions

Every retry or cancellation an operator asks for, with the role of the token that asked, the
time, the saga, the reason given and what came of it (orchestrator/audit.py).

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("saga_id", UUID(as_uuid=True), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("result", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
    )
    op.create_index("ix_operator_actions_saga_id", "operator_actions", ["saga_id"])


def downgrade() -> None:
    op.drop_table("operator_actions")
