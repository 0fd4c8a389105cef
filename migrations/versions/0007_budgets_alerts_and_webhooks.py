"""Budgets alerts and webhooks (created 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def _cascade_from_project(table: str) -> sa.ForeignKeyConstraint:
    """The ``project_id`` foreign key of ``table``: its rows go with their project."""
    return sa.ForeignKeyConstraint(
        ["project_id"],
        ["project.id"],
        name=op.f(f"fk_{table}_project_id_project"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "budget",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("group_name", sa.String(length=200), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("limit_kg_co2", sa.Float(), nullable=True),
        sa.Column("limit_kwh", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _cascade_from_project("budget"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget")),
        sa.UniqueConstraint(
            "project_id",
            "group_name",
            "period",
            name=op.f("uq_budget_project_id_group_name_period"),
        ),
    )
    op.create_table(
        "webhook",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _cascade_from_project("webhook"),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_webhook")),
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("budget_id", sa.Uuid(), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=400), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budget.id"],
            name=op.f("fk_alert_budget_id_budget"),
            ondelete="SET NULL",
        ),
        _cascade_from_project("alert"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["run.id"], name=op.f("fk_alert_run_id_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint(
            "project_id", "dedupe_key", name=op.f("uq_alert_project_id_dedupe_key")
        ),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alert_delivery_next_attempt", ["delivery", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_alert_project_created", ["project_id", "created_at"], unique=False
        )

    # A project's budget moves to the budget table: one for the project's whole life.
    op.execute(
        sa.text(
            "INSERT INTO budget (id, project_id, group_name, period, limit_kg_co2, limit_kwh, "
            "created_at, updated_at) SELECT id, id, '', 'all', budget_kg_co2, NULL, created_at, "
            "created_at FROM project WHERE budget_kg_co2 IS NOT NULL"
        )
    )
    # Not in batch mode: on SQLite that rebuilds the table, and dropping the old one with
    # foreign keys on would cascade to every run. SQLite (3.35+) drops a column in place, and
    # does not enforce VARCHAR lengths, so only PostgreSQL needs the wider status.
    op.drop_column("project", "budget_kg_co2")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "run",
            "status",
            existing_type=sa.VARCHAR(length=16),
            type_=sa.String(length=24),
            existing_nullable=False,
        )


def downgrade() -> None:
    # The older schema knows no such status; the run did end, on purpose.
    op.execute(sa.text("UPDATE run SET status = 'finished' WHERE status = 'stopped_by_budget'"))
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "run",
            "status",
            existing_type=sa.String(length=24),
            type_=sa.VARCHAR(length=16),
            existing_nullable=False,
        )
    op.add_column("project", sa.Column("budget_kg_co2", sa.FLOAT(), nullable=True))
    op.execute(
        sa.text(
            "UPDATE project SET budget_kg_co2 = (SELECT b.limit_kg_co2 FROM budget b WHERE "
            "b.project_id = project.id AND b.group_name = '' AND b.period = 'all')"
        )
    )

    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_project_created")
        batch_op.drop_index("ix_alert_delivery_next_attempt")

    op.drop_table("alert")
    op.drop_table("webhook")
    op.drop_table("budget")
