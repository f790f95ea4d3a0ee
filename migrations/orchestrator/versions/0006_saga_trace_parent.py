"""the trace a saga belongs to: sagas.trace_parent

A saga is one OpenTelemetry trace, begun by its start request. Its context (a W3C
`traceparent`, 55 characters) is kept with the saga, so a run that resumes it in another process
(after a crash, an operator's retry) continues the same trace, the outbox delivery of its outcome
links to it, and the admin page links to it. NULL when tracing was off at its start.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: PostgreSQL adds the column without rewriting the table.
    op.add_column("sagas", sa.Column("trace_parent", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("sagas", "trace_parent")
