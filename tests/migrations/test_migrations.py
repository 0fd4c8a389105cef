"""Alembic makes the schema, on both databases, and the models never drift from it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from greenaudit.api.db import make_engine
from greenaudit.api.migrate import downgrade, upgrade
from greenaudit.api.models import Base
from greenaudit.settings import Settings

from ..conftest import fresh_postgres_database

TABLES = {"project", "api_key", "run", "energy_sample", "metric_point", "dataset_profile"}


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
        context = MigrationContext.configure(connection, opts={"compare_type": True})
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
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, changed)
    assert [d[0] for d in differences] == ["add_column"]
    assert differences[0][3].name == "extra_column"
