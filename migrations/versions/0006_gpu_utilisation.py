"""gpu utilisation

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 04:00:20.941699
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("energy_sample", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpu_util_pct", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("energy_sample", schema=None) as batch_op:
        batch_op.drop_column("gpu_util_pct")
