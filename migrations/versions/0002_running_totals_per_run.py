"""Running totals per run (created 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "run_energy_totals",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("cpu_kwh", sa.Float(), nullable=False),
        sa.Column("gpu_kwh", sa.Float(), nullable=False),
        sa.Column("ram_kwh", sa.Float(), nullable=False),
        sa.Column("co2_kg", sa.Float(), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["run.id"], name=op.f("fk_run_energy_totals_run_id_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_energy_totals")),
    )
    op.create_table(
        "run_metric_stats",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("min_value", sa.Float(), nullable=False),
        sa.Column("max_value", sa.Float(), nullable=False),
        sa.Column("first_step", sa.BigInteger(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["run.id"], name=op.f("fk_run_metric_stats_run_id_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "name", name=op.f("pk_run_metric_stats")),
    )
    with op.batch_alter_table("run_metric_stats", schema=None) as batch_op:
        batch_op.create_index("ix_run_metric_stats_name", ["name"], unique=False)

    # Existing runs get their totals from the rows already stored.
    op.execute(
        "INSERT INTO run_energy_totals "
        "(run_id, cpu_kwh, gpu_kwh, ram_kwh, co2_kg, gpu_seconds, samples) "
        "SELECT run_id, COALESCE(SUM(cpu_kwh), 0), COALESCE(SUM(gpu_kwh), 0), "
        "COALESCE(SUM(ram_kwh), 0), COALESCE(SUM(co2_kg), 0), "
        "COALESCE(SUM(duration_s * gpu_count), 0), COUNT(*) FROM energy_sample GROUP BY run_id"
    )
    op.execute(
        "INSERT INTO run_metric_stats "
        "(run_id, name, min_value, max_value, first_step, last_step, points) "
        "SELECT run_id, name, MIN(value), MAX(value), MIN(step), MAX(step), COUNT(*) "
        "FROM metric_point GROUP BY run_id, name"
    )


def downgrade() -> None:
    with op.batch_alter_table("run_metric_stats", schema=None) as batch_op:
        batch_op.drop_index("ix_run_metric_stats_name")

    op.drop_table("run_metric_stats")
    op.drop_table("run_energy_totals")
