"""Initial schema (created 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _row_id() -> sa.Column[int]:
    # The high-volume tables count rows in BIGINT; SQLite autoincrements only an INTEGER key.
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def _cascade_from_project(table: str) -> sa.ForeignKeyConstraint:
    """The ``project_id`` foreign key of ``table``: its rows go with their project."""
    return sa.ForeignKeyConstraint(
        ["project_id"],
        ["project.id"],
        name=op.f(f"fk_{table}_project_id_project"),
        ondelete="CASCADE",
    )


def _cascade_from_run(table: str) -> sa.ForeignKeyConstraint:
    """The ``run_id`` foreign key of ``table``: its rows go with their run."""
    return sa.ForeignKeyConstraint(
        ["run_id"], ["run.id"], name=op.f(f"fk_{table}_run_id_run"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "project",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("budget_kg_co2", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project")),
        sa.UniqueConstraint("name", name=op.f("uq_project_name")),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        _cascade_from_project("api_key"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_key_prefix")),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_project_id"), ["project_id"], unique=False)

    op.create_table(
        "dataset_profile",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=200), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("sample_count", sa.BigInteger(), nullable=True),
        sa.Column("class_counts", sa.JSON(), nullable=True),
        sa.Column("entropy_bits", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _cascade_from_project("dataset_profile"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_profile")),
        sa.UniqueConstraint(
            "project_id", "name", "version", name=op.f("uq_dataset_profile_project_id_name_version")
        ),
    )
    op.create_table(
        "run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("model_params", sa.BigInteger(), nullable=True),
        sa.Column("flops", sa.Float(), nullable=True),
        sa.Column("dataset", sa.String(length=200), nullable=True),
        sa.Column("dataset_version", sa.String(length=200), nullable=True),
        sa.Column("dataset_size", sa.BigInteger(), nullable=True),
        sa.Column("task", sa.String(length=200), nullable=True),
        sa.Column("primary_metric", sa.String(length=200), nullable=True),
        sa.Column("parent_run_id", sa.Uuid(), nullable=True),
        sa.Column("group_name", sa.String(length=200), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("world_size", sa.Integer(), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("country_iso", sa.String(length=3), nullable=True),
        sa.Column("carbon_intensity_g_per_kwh", sa.Float(), nullable=False),
        sa.Column("carbon_intensity_source", sa.String(length=200), nullable=False),
        sa.Column("pue", sa.Float(), nullable=False),
        sa.Column("samples_processed", sa.BigInteger(), nullable=True),
        sa.Column("total_steps", sa.BigInteger(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_run_id"],
            ["run.id"],
            name=op.f("fk_run_parent_run_id_run"),
            ondelete="SET NULL",
        ),
        _cascade_from_project("run"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run")),
    )
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.create_index("ix_run_project_dataset", ["project_id", "dataset"], unique=False)
        batch_op.create_index("ix_run_project_group", ["project_id", "group_name"], unique=False)
        batch_op.create_index("ix_run_project_model", ["project_id", "model"], unique=False)
        batch_op.create_index("ix_run_project_started", ["project_id", "started_at"], unique=False)

    op.create_table(
        "energy_sample",
        _row_id(),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("t_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("t_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("cpu_kwh", sa.Float(), nullable=True),
        sa.Column("gpu_kwh", sa.Float(), nullable=True),
        sa.Column("ram_kwh", sa.Float(), nullable=True),
        sa.Column("cpu_w", sa.Float(), nullable=True),
        sa.Column("gpu_w", sa.Float(), nullable=True),
        sa.Column("ram_w", sa.Float(), nullable=True),
        sa.Column("cpu_method", sa.String(length=16), nullable=True),
        sa.Column("gpu_method", sa.String(length=16), nullable=True),
        sa.Column("ram_method", sa.String(length=16), nullable=True),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("co2_kg", sa.Float(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=True),
        _cascade_from_run("energy_sample"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_energy_sample")),
        sa.UniqueConstraint("run_id", "rank", "seq", name=op.f("uq_energy_sample_run_id_rank_seq")),
    )
    with op.batch_alter_table("energy_sample", schema=None) as batch_op:
        batch_op.create_index("ix_energy_sample_run_t_start", ["run_id", "t_start"], unique=False)

    op.create_table(
        "metric_point",
        _row_id(),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        _cascade_from_run("metric_point"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_point")),
        sa.UniqueConstraint(
            "run_id", "name", "step", name=op.f("uq_metric_point_run_id_name_step")
        ),
    )


def downgrade() -> None:
    op.drop_table("metric_point")
    with op.batch_alter_table("energy_sample", schema=None) as batch_op:
        batch_op.drop_index("ix_energy_sample_run_t_start")

    op.drop_table("energy_sample")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_project_started")
        batch_op.drop_index("ix_run_project_model")
        batch_op.drop_index("ix_run_project_group")
        batch_op.drop_index("ix_run_project_dataset")

    op.drop_table("run")
    op.drop_table("dataset_profile")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_key_project_id"))

    op.drop_table("api_key")
    op.drop_table("project")
