"""room for every deduction that may come back: users.reversible

A charge-back (and a refund) gives a deduction back; it must never be refused, so a balance keeps
room for every deduction not given back yet: balance + reversible never exceeds 2**63 - 1, and a
top-up that would break that is refused instead.

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
    op.add_column(
        "users", sa.Column("reversible", sa.BigInteger(), nullable=False, server_default="0")
    )
    # The deductions applied so far that no charge-back has reversed.
    op.execute("""
        UPDATE users SET reversible = coalesce((
            SELECT sum(-ledger.delta) FROM balance_ledger AS ledger
            JOIN idempotency_keys AS record ON record.key = ledger.idempotency_key
            WHERE ledger.user_id = users.id AND ledger.reason = 'DEDUCTION'
              AND record.reversed_by IS NULL
        ), 0)
    """)
    op.create_check_constraint("reversible_not_negative", "users", "reversible >= 0")
    op.create_check_constraint(
        "room_for_reversals", "users", "balance::numeric + reversible <= 9223372036854775807"
    )


def downgrade() -> None:
    op.drop_constraint("room_for_reversals", "users")
    op.drop_constraint("reversible_not_negative", "users")
    op.drop_column("users", "reversible")
