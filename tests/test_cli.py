"""The command line, in process, on real databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from greenaudit.api.db import make_engine
from greenaudit.cli import app
from greenaudit.settings import Settings

from .conftest import fresh_postgres_database

runner = CliRunner()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_upgrade_creates_the_schema(backend: str, tmp_path: Path):
    if backend == "sqlite":
        _check_upgrade(f"sqlite:///{tmp_path / 'cli.db'}")
    else:
        with fresh_postgres_database("cli") as url:
            _check_upgrade(url)


def _check_upgrade(url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "database at head" in result.output
    engine = make_engine(Settings(database_url=url))
    try:
        assert "energy_sample" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_unreachable_database_is_a_clear_error(tmp_path: Path):
    result = runner.invoke(
        app, ["db", "upgrade", "--database-url", "postgresql://nobody@127.0.0.1:1/none"]
    )
    assert result.exit_code == 2
    assert "cannot reach the database" in result.output


def test_flush_needs_a_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("GREENAUDIT_URL", raising=False)
    monkeypatch.setenv("GREENAUDIT_HOME", str(tmp_path))
    result = runner.invoke(app, ["flush"])
    assert result.exit_code == 2
    assert "GREENAUDIT_URL" in result.output


def test_project_create_needs_the_admin_token(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GREENAUDIT_ADMIN_TOKEN", raising=False)
    result = runner.invoke(app, ["project", "create", "vision"])
    assert result.exit_code == 2
    assert "GREENAUDIT_ADMIN_TOKEN" in result.output
