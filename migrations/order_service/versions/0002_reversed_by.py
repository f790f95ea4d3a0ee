"""an action is undone at most once: idempotency_keys.reversed_by

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from sagaengine.participant.migrations import add_reversed_by, drop_reversed_by

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_reversed_by()


def downgrade() -> None:
    drop_reversed_by()
