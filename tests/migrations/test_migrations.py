"""Alembic makes the schema, on both databases, and the models never drift from it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from greenaudit.api.db import make_engine
from greenaudit.api.migrate import compare_type, downgrade, upgrade
from greenaudit.api.models import Base
from greenaudit.settings import Settings

from ..conftest import SCHEMA_TABLES, fresh_postgres_database

PROJECT, RUN = "0b5b8f1e6f3a4c1e9a553f1f2b2f7a10", "1b5b8f1e6f3a4c1e9a553f1f2b2f7a11"
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
TABLES = SCHEMA_TABLES


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'm.db'}"
        else:
            url = stack.enter_context(fresh_postgres_database("migrations"))
        engine = make_engine(Settings(database_url=url))
        stack.callback(engine.dispose)
        yield engine


def user_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def drift(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": compare_type})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_downgrade_upgrade(empty_engine: Engine):
    assert user_tables(empty_engine) == set()
    upgrade(empty_engine)
    assert user_tables(empty_engine) == TABLES
    downgrade(empty_engine, "base")
    assert user_tables(empty_engine) == set()
    upgrade(empty_engine)
    assert user_tables(empty_engine) == TABLES
    assert drift(empty_engine) == []


def test_drift_is_detected(empty_engine: Engine):
    """The drift check can fail: a model change without a migration shows up."""
    upgrade(empty_engine)
    from sqlalchemy import Column, Integer, MetaData, Table

    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    Table("run", changed, Column("extra_column", Integer), extend_existing=True)
    with empty_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": compare_type})
        differences = compare_metadata(context, changed)
    assert [d[0] for d in differences] == ["add_column"]
    assert differences[0][3].name == "extra_column"


def test_running_totals_are_backfilled_from_stored_rows(empty_engine: Engine):
    upgrade(empty_engine, "0001")
    with empty_engine.begin() as connection:
        connection.execute(
            text("INSERT INTO project (id, name, created_at) VALUES (:id, 'p', :t)"),
            {"id": PROJECT, "t": T0},
        )
        connection.execute(
            text(
                "INSERT INTO run (id, project_id, kind, status, world_size, hardware, meta, "
                "carbon_intensity_g_per_kwh, carbon_intensity_source, pue, started_at, created_at) "
                "VALUES (:id, :p, 'train', 'running', 1, '{}', '{}', 100, 'test', 1, :t, :t)"
            ),
            {"id": RUN, "p": PROJECT, "t": T0},
        )
        for seq, (cpu, gpus) in enumerate([(0.5, 2), (1.5, 0)]):
            connection.execute(
                text(
                    "INSERT INTO energy_sample (run_id, rank, seq, t_start, t_end, duration_s, "
                    "cpu_kwh, cpu_method, gpu_count, co2_kg) "
                    "VALUES (:r, 0, :s, :t, :t, 60, :cpu, 'rapl', :g, :co2)"
                ),
                {"r": RUN, "s": seq, "t": T0, "cpu": cpu, "g": gpus, "co2": cpu / 10},
            )
        for step, value in [(1, 0.4), (2, 0.7), (3, 0.6)]:
            connection.execute(
                text(
                    "INSERT INTO metric_point (run_id, name, step, value, time) "
                    "VALUES (:r, 'accuracy', :s, :v, :t)"
                ),
                {"r": RUN, "s": step, "v": value, "t": T0},
            )
    upgrade(empty_engine)
    with empty_engine.connect() as connection:
        energy = connection.execute(
            text("SELECT cpu_kwh, co2_kg, gpu_seconds, samples FROM run_energy_totals")
        ).one()
        stats = connection.execute(
            text("SELECT min_value, max_value, first_step, last_step, points FROM run_metric_stats")
        ).one()
    assert tuple(energy) == (pytest.approx(2.0), pytest.approx(0.2), 120.0, 2)
    assert tuple(stats) == (0.4, 0.7, 1, 3, 3)
    with empty_engine.connect() as connection:
        methods = connection.execute(text("SELECT component, method FROM run_method")).all()
    assert [tuple(m) for m in methods] == [("cpu", "rapl")]


def test_a_project_budget_moves_to_the_budget_table_and_back(empty_engine: Engine):
    upgrade(empty_engine, "0006")
    with empty_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO project (id, name, budget_kg_co2, created_at) "
                "VALUES (:id, 'p', 12.5, :t)"
            ),
            {"id": PROJECT, "t": T0},
        )
    upgrade(empty_engine)
    with empty_engine.connect() as connection:
        budget = connection.execute(
            text("SELECT group_name, period, limit_kg_co2, limit_kwh FROM budget")
        ).one()
    assert tuple(budget) == ("", "all", 12.5, None)
    downgrade(empty_engine, "0006")
    with empty_engine.connect() as connection:
        assert connection.scalar(text("SELECT budget_kg_co2 FROM project")) == 12.5
