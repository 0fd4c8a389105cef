"""Running Alembic from code: ``greenaudit serve`` and ``greenaudit db upgrade`` use this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, String

import greenaudit.migrations

MIGRATIONS_DIR = Path(greenaudit.migrations.__file__).parent


def compare_type(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_type: Any,
    metadata_type: Any,
) -> bool | None:
    """Alembic's type comparison, except that SQLite's string lengths are not a difference.

    SQLite does not enforce VARCHAR lengths, and changing one there would mean rebuilding the
    table, whose drop would cascade through the foreign keys; so migrations widen strings on
    PostgreSQL only. ``None`` leaves every other comparison to Alembic.
    """
    if (
        context.dialect.name == "sqlite"
        and isinstance(inspected_type, String)
        and isinstance(metadata_type, String)
        and type(inspected_type.as_generic()) is type(metadata_type.as_generic())
    ):
        return False
    return None


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (works from a wheel too)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision``."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
