"""Creating a row once, however many requests create it at the same moment."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Base


def insert_if_absent(
    session: Session, entity: type[Base], values: dict[str, Any], unique: list[str]
) -> bool:
    """``INSERT ... ON CONFLICT (unique) DO NOTHING``; True when this call inserted the row.

    The one way an idempotent create (run, budget, dataset profile, webhook, project) writes
    its row. Reading first and inserting after is a race on PostgreSQL: two requests both read
    nothing, one insert fails with a unique violation, and its transaction is lost. Here the
    loser's insert waits for the winner's transaction and then does nothing; a read after it
    (a new statement, so a new snapshot under READ COMMITTED) sees the winner's row, and the
    caller answers as for a retried request. On SQLite a writer holds the database, so there
    is never a race; the statement is the same so both databases answer the same.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(entity) if dialect == "postgresql" else sqlite.insert(entity)
    statement = insert.values(**values).on_conflict_do_nothing(index_elements=unique)
    result = session.execute(statement.returning(*inspect(entity).primary_key))
    return result.first() is not None
