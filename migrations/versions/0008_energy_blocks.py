"""energy blocks: a run's samples summed over blocks of consecutive seqs, at a few widths

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 18:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The widths of api/blocks.py when this revision was written; history does not import app code.
WIDTHS = (16, 256, 4096, 65536)


def upgrade() -> None:
    op.create_table(
        "run_energy_block",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("t_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("t_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kwh", sa.Float(), nullable=False),
        sa.Column("co2_kg", sa.Float(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=True),
        sa.Column("cpu_w", sa.Float(), nullable=True),
        sa.Column("gpu_w", sa.Float(), nullable=True),
        sa.Column("ram_w", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["run.id"],
            name=op.f("fk_run_energy_block_run_id_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "width", "rank", "block", name=op.f("pk_run_energy_block")
        ),
    )
    # Existing samples get their blocks here; ingestion keeps them from now on.
    for width in WIDTHS:
        op.execute(
            "INSERT INTO run_energy_block (run_id, width, rank, block, t_start, t_end, kwh, "
            "co2_kg, samples, step, cpu_w, gpu_w, ram_w) "
            f"SELECT run_id, {width}, rank, seq / {width}, MIN(t_start), MAX(t_end), "
            "SUM(COALESCE(cpu_kwh, 0) + COALESCE(gpu_kwh, 0) + COALESCE(ram_kwh, 0)), "
            "SUM(co2_kg), COUNT(*), MAX(step), MAX(cpu_w), MAX(gpu_w), MAX(ram_w) "
            f"FROM energy_sample GROUP BY run_id, rank, seq / {width}"
        )


def downgrade() -> None:
    op.drop_table("run_energy_block")
