"""Run liveness (created 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_run_status_last_seen", ["status", "last_seen_at"], unique=False)
    # Runs from before liveness was tracked were last heard from when they were created.
    op.execute("UPDATE run SET last_seen_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_status_last_seen")
        batch_op.drop_column("last_seen_at")
