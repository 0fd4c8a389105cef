"""Gpu utilisation (created 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("energy_sample", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpu_util_pct", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("energy_sample", schema=None) as batch_op:
        batch_op.drop_column("gpu_util_pct")
