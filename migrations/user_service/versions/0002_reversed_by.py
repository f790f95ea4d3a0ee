"""an action is undone at most once: idempotency_keys.reversed_by

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("reversed_by", sa.String(length=200)))


def downgrade() -> None:
    op.drop_column("idempotency_keys", "reversed_by")
