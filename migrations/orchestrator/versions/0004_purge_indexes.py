"""indexes for the purge: finished sagas by finish time, and events not delivered yet

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Concurrently: on a table of millions of sagas, a plain build would block every start and
    # every step of the running orchestrators until it is done.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_sagas_finished",
            "sagas",
            ["finished_at"],
            postgresql_where=sa.text("status IN ('COMPLETED', 'COMPENSATED')"),
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_outbox_undelivered",
            "outbox",
            ["saga_id"],
            postgresql_where=sa.text("status <> 'DELIVERED'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_outbox_undelivered", table_name="outbox", postgresql_concurrently=True)
        op.drop_index("ix_sagas_finished", table_name="sagas", postgresql_concurrently=True)
