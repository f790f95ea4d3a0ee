"""a confirmed reservation can be cancelled: statuses CANCELLING and CANCELLED

CANCELLING still takes its seat (the cancellation saga's semantic lock), so the index of one
active reservation per seat covers it.

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

INDEX = "uq_reservations_one_active_per_seat"


def _statuses(statuses: str, active: str) -> None:
    op.drop_constraint("status_known", "reservations", type_="check")
    op.create_check_constraint("status_known", "reservations", f"status IN ({statuses})")
    op.drop_index(INDEX, table_name="reservations")
    op.create_index(
        INDEX,
        "reservations",
        ["seat_id"],
        unique=True,
        postgresql_where=sa.text(f"status IN ({active})"),
    )


def upgrade() -> None:
    _statuses(
        "'HELD', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'CANCELLING', 'CANCELLED'",
        "'HELD', 'CONFIRMED', 'CANCELLING'",
    )


def downgrade() -> None:
    _statuses("'HELD', 'CONFIRMED', 'RELEASED', 'EXPIRED'", "'HELD', 'CONFIRMED'")
