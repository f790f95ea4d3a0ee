"""subscriptions and their renewals

Revision ID: 0001
Revises:
Create Date: 2026-11-30 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sagaengine.participant.migrations import create_idempotency_table_v2, drop_idempotency_table

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_idempotency_table_v2()
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("paid_through", sa.String(length=7), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("price > 0", name="price_positive"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "renewals",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.CheckConstraint("status IN ('PENDING', 'ACTIVE', 'RELEASED')", name="status_known"),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_renewals_subscription_id", "renewals", ["subscription_id"])
    op.create_index(
        "uq_renewals_one_pending",
        "renewals",
        ["subscription_id"],
        unique=True,
        postgresql_where=sa.text("status = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_index("uq_renewals_one_pending", table_name="renewals")
    op.drop_index("ix_renewals_subscription_id", table_name="renewals")
    op.drop_table("renewals")
    op.drop_table("subscriptions")
    drop_idempotency_table()
