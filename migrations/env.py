"""Alembic environment: metadata and URL come from the application, never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from greenaudit.api.db import make_engine
from greenaudit.api.migrate import compare_type
from greenaudit.api.models import Base
from greenaudit.settings import Settings

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=compare_type,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    settings = Settings(database_url=url) if url else Settings()
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            _configure_and_run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("greenaudit migrations run online only: point them at a database")
run_migrations_online()
