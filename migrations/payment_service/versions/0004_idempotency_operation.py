"""a compensation undoes only an action of its kind: idempotency_keys.operation

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from sagaengine.participant.migrations import add_operation, drop_operation

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_operation()


def downgrade() -> None:
    drop_operation()
