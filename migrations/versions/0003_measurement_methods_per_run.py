"""Measurement methods per run (created 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "run_method",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("component", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["run.id"], name=op.f("fk_run_method_run_id_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "component", "method", name=op.f("pk_run_method")),
    )
    # Existing runs: the methods their stored samples name.
    for component in ("cpu", "gpu", "ram"):
        op.execute(
            f"INSERT INTO run_method (run_id, component, method) "
            f"SELECT DISTINCT run_id, '{component}', {component}_method FROM energy_sample "
            f"WHERE {component}_method IS NOT NULL"
        )


def downgrade() -> None:
    op.drop_table("run_method")
