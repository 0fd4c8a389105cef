"""An archive of an older schema revision, brought to the head by the real migrations.

Its tables go into a scratch SQLite database migrated to the archive's revision, the scratch
database is migrated to the head (so, for example, 0007 moves a project's budget to the budget
table exactly as it does for a served database), and the project is exported from there again.
SQLite keeps every value of every type exactly (64-bit integers and floats, microsecond
timestamps, JSON as text), so the detour changes nothing the migrations do not.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import MetaData, Table
from sqlalchemy.exc import SQLAlchemyError

from greenaudit._version import __version__
from greenaudit.settings import Settings

from ..db import make_engine
from ..migrate import upgrade
from ..models import Base
from .export import write_table
from .format import ArchiveError, CheckedFiles, Limits, Manifest, archived_tables, head_revision
from .load import insert_table
from .rows import check_layout, check_rows


def _tables_at_revision(metadata: MetaData) -> list[Table]:
    tables = archived_tables(metadata)
    for table in tables:
        head = Base.metadata.tables.get(table.name)
        for column in table.columns:
            # Reflection reads back SQLite's storage types (a UUID as CHAR(32)); where the head
            # has the column, its type encodes the value exactly as the export wrote it.
            if head is not None and column.name in head.c:
                column.type = head.c[column.name].type
    return tables


def upgraded(
    manifest: Manifest,
    files: CheckedFiles,
    folder: Path,
    project: tuple[uuid.UUID, str],
    limits: Limits,
) -> CheckedFiles:
    """The archive's tables at the schema head, as checked files in ``folder``."""
    revision, head = manifest.schema_revision, head_revision()
    engine = make_engine(Settings(database_url=f"sqlite:///{folder / 'scratch.db'}"))
    try:
        upgrade(engine, revision)
        metadata = MetaData()
        metadata.reflect(engine)
        tables = _tables_at_revision(metadata)
        check_layout(
            manifest,
            tables,
            f"the archive has schema revision {revision}; this greenaudit ({__version__}) "
            f"writes databases at {head} and upgrades older archives, but this archive's tables "
            f"and columns differ from revision {revision}'s",
        )
        # Types, strings and foreign keys now; the API's schemas once the rows are at the head.
        check_rows(tables, files, project, limits, api_checks=False)
        with engine.begin() as connection:
            for table in tables:
                insert_table(connection, table, files[table.name][0])
        upgrade(engine, "head")
        out: CheckedFiles = {}
        with engine.connect() as connection, connection.begin():
            for table in archived_tables():
                path = folder / f"head-{table.name}.parquet"
                out[table.name] = (path, write_table(connection, table, project[0], path))
        return out
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise ArchiveError(
            f"the archive's rows at schema revision {revision} could not be migrated to {head}: "
            f"{reason}"
        ) from None
    finally:
        engine.dispose()
