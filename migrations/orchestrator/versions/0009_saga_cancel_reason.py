"""an operator's cancellation of a saga: sagas.cancel_reason

`POST /admin/sagas/{id}/cancel` records why here, in the same row the saga's run fences its
writes on; whichever run holds the lease learns of it with its next move, and the saga starts
no action after that: it compensates what it applied and ends COMPENSATED (error `cancelled`).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sagas", sa.Column("cancel_reason", sa.String(500), nullable=True))


def downgrade() -> None:
    op.drop_column("sagas", "cancel_reason")
