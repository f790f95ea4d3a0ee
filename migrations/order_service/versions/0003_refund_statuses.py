"""an order can be refunded: statuses REFUND_IN_PROGRESS and REFUNDED

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "status IN ('PENDING', 'PAYMENT_IN_PROGRESS', 'PAID', 'CANCELLED')"
AFTER = (
    "status IN ('PENDING', 'PAYMENT_IN_PROGRESS', 'PAID', 'CANCELLED',"
    " 'REFUND_IN_PROGRESS', 'REFUNDED')"
)


def upgrade() -> None:
    op.drop_constraint("status_known", "orders", type_="check")
    op.create_check_constraint("status_known", "orders", AFTER)


def downgrade() -> None:
    op.drop_constraint("status_known", "orders", type_="check")
    op.create_check_constraint("status_known", "orders", BEFORE)
