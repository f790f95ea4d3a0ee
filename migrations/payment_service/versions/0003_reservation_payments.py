"""payments for seat reservations as well as orders

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("reservation_id", sa.BigInteger(), nullable=True))
    op.alter_column("payments", "order_id", existing_type=sa.BigInteger(), nullable=True)
    op.create_index("ix_payments_reservation_id", "payments", ["reservation_id"])
    op.create_index(
        "uq_payments_one_approved_per_reservation",
        "payments",
        ["reservation_id"],
        unique=True,
        postgresql_where=sa.text("status = 'APPROVED'"),
    )
    op.create_check_constraint(
        "pays_one_thing", "payments", "(order_id IS NULL) <> (reservation_id IS NULL)"
    )


def downgrade() -> None:
    op.drop_constraint("pays_one_thing", "payments", type_="check")
    op.drop_index("uq_payments_one_approved_per_reservation", table_name="payments")
    op.drop_index("ix_payments_reservation_id", table_name="payments")
    op.alter_column("payments", "order_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_column("payments", "reservation_id")
