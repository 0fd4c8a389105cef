"""Inserting checked tables into a database, all or nothing (``greenaudit import``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, Table, bindparam, or_, select
from sqlalchemy.exc import DataError, IntegrityError

from .. import blocks
from ..db import WRITE_OPTION
from .export import current_revision
from .format import ArchiveError, ArchiveSummary, VerifiedArchive, archived_tables, project_table
from .rows import batches, decode, loaders


def insert_table(connection: Connection, table: Table, path: Path) -> int:
    """Insert the rows of one checked Parquet file into ``table``; returns how many."""
    loads = loaders(table)
    # Rows can point at rows of the same table that come later in the file (run.parent_run_id);
    # those links are set once every row is in, so row order never breaks a foreign key.
    links: dict[str, list[dict[str, Any]]] = {
        fk.parent.name: [] for fk in table.foreign_keys if fk.column.table is table
    }
    key = [c.name for c in table.primary_key.columns]
    count = 0
    for rows in batches(pq.ParquetFile(path), table):
        for row in rows:
            decode(row, loads)
            for name, pending in links.items():
                if row[name] is not None:
                    pending.append({**{f"key_{k}": row[k] for k in key}, "link": row[name]})
                    row[name] = None
        if rows:
            connection.execute(table.insert(), rows)
        count += len(rows)
    for name, pending in links.items():
        if pending:
            statement = (
                table.update()
                .where(*(table.c[k] == bindparam(f"key_{k}") for k in key))
                .values({name: bindparam("link")})
            )
            connection.execute(statement, pending)
    return count


def import_archive(engine: Engine, archive: VerifiedArchive) -> ArchiveSummary:
    """Insert a verified archive's project into the database behind ``engine``, all or nothing.

    Everything goes in one transaction, in foreign-key order, with the archive's ids and
    timestamps; surrogate keys of samples and points are regenerated. No API keys are created.

    Args:
        engine: The target database, at this greenaudit's schema head.
        archive: From :func:`open_archive`, which upgraded an older archive to the head.

    Returns:
        The project and the row count stored per table, in foreign-key order.

    Raises:
        ArchiveError: The target is at another schema revision, already has a project with the
            archive's id or name, or refuses a row (then nothing was stored).
    """
    project = project_table()
    with engine.connect() as connection:
        # A writer from the first statement: SQLite takes its write lock before the checks.
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            target_revision = current_revision(connection)
            if target_revision != archive.revision:
                raise ArchiveError(
                    f"the archive has schema revision {archive.revision}, the target database "
                    f"is at {target_revision or 'none (no greenaudit schema)'}"
                )
            clash = connection.execute(
                select(project.c.id, project.c.name).where(
                    or_(project.c.id == archive.project_id, project.c.name == archive.project_name)
                )
            ).first()
            if clash is not None:
                raise ArchiveError(
                    f"the target database already has project {clash.name!r} ({clash.id}); the "
                    f"archive holds {archive.project_name!r} ({archive.project_id}): import into "
                    "a database without it"
                )
            try:
                rows = {
                    t.name: insert_table(connection, t, archive.files[t.name])
                    for t in archived_tables()
                }
                blocks.rebuild_project(connection, archive.project_id)
            except (IntegrityError, DataError) as error:
                reason = str(error.orig).splitlines()[0]
                raise ArchiveError(
                    f"the target database refused the archive's rows, so nothing was imported: "
                    f"{reason}"
                ) from None
    return ArchiveSummary(
        path=archive.path,
        project_id=archive.project_id,
        project_name=archive.project_name,
        schema_revision=archive.manifest.schema_revision,
        rows=rows,
    )
