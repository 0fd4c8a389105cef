"""Writing a project to an archive (``greenaudit export``)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, ColumnElement, Connection, Engine, Table, or_, select

from greenaudit._version import __version__

from .format import (
    BATCH_ROWS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ArchiveError,
    ArchiveSummary,
    Codec,
    Manifest,
    TableEntry,
    apply,
    archived_columns,
    archived_tables,
    belongs_to,
    codec,
    head_revision,
    project_table,
    row_key,
)

_CHUNK_BYTES = 1 << 20


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    # Every table is read in one transaction on one snapshot, so the running totals match the
    # samples exported even while runs keep reporting. SQLite in WAL mode gives a read
    # transaction a snapshot already; PostgreSQL needs REPEATABLE READ for it.
    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect() as connection:
        connection.execution_options(**options)
        with connection.begin():
            yield connection


def _find_project(connection: Connection, name_or_id: str) -> dict[str, Any]:
    project = project_table()
    condition: ColumnElement[bool] = project.c.name == name_or_id
    try:
        condition = or_(condition, project.c.id == uuid.UUID(name_or_id))
    except ValueError:
        pass
    rows = connection.execute(select(project).where(condition)).mappings().all()
    if not rows:
        raise ArchiveError(f"no project is named {name_or_id!r} or has that id")
    if len(rows) > 1:
        raise ArchiveError(f"{name_or_id!r} is one project's name and another's id; give the id")
    return dict(rows[0])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _why(error: Exception) -> str:
    if isinstance(error, UnicodeEncodeError):
        bad = error.object[error.start : error.end]
        return f"holds {bad!r}, a lone surrogate that UTF-8 cannot carry"
    return f"cannot be written as JSON ({error})"


def _encoded(
    table: Table, columns: Sequence[Column[Any]], index: int, coder: Codec, partition: Any
) -> pa.Array:
    values = []
    for row in partition:
        try:
            values.append(apply(coder.dump, row[index]))
        except (UnicodeEncodeError, ValueError) as error:
            # Stored by an older service that let it in (SQLite keeps JSON as escaped text):
            # the export names the row to fix rather than write what no import would take.
            key = row_key(table, dict(zip((c.name for c in columns), row, strict=True)))
            raise ArchiveError(
                f"{table.name} ({key}): {columns[index].name} {_why(error)}; no archive was "
                "written: correct that value (a run's meta through PATCH /api/v1/runs/{id}) "
                "and export again"
            ) from None
    return pa.array(values, type=coder.arrow)


def write_table(
    connection: Connection, table: Table, project_id: uuid.UUID, path: Path
) -> TableEntry:
    """Write the project's rows of ``table`` to the Parquet file ``path``; returns its entry."""
    columns = archived_columns(table)
    codecs = [codec(c) for c in columns]
    schema = pa.schema(
        [
            pa.field(c.name, k.arrow, nullable=c.nullable)
            for c, k in zip(columns, codecs, strict=True)
        ]
    )
    # Ordered by primary key, so regenerated surrogate keys keep the source's order.
    query = (
        select(*columns)
        .where(belongs_to(table, project_id))
        .order_by(*table.primary_key.columns)
        .execution_options(yield_per=BATCH_ROWS)
    )
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for partition in connection.execute(query).partitions():
            arrays = [_encoded(table, columns, i, k, partition) for i, k in enumerate(codecs)]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            rows += len(partition)
    return TableEntry(
        name=table.name,
        file=f"{table.name}.parquet",
        rows=rows,
        columns=[c.name for c in columns],
        sha256=sha256_of(path),
    )


def export_project(engine: Engine, project: str, out: Path) -> ArchiveSummary:
    """Write one project, every row of every table but its keys, to the zip archive ``out``.

    Args:
        engine: The source database, at this greenaudit's schema head.
        project: The project's name or id.
        out: The archive to write; replaced whole, and only once it is complete.

    Returns:
        The project and the row count written per table, in foreign-key order.

    Raises:
        ArchiveError: The project does not exist, the database is not at the schema head, a
            stored value cannot be archived (the message names its row), or ``out`` cannot be
            written.
    """
    head = head_revision()
    with tempfile.TemporaryDirectory(prefix="greenaudit-export-") as tmp:
        folder = Path(tmp)
        with _snapshot(engine) as connection:
            revision = current_revision(connection)
            if revision != head:
                raise ArchiveError(
                    f"the database is at schema revision {revision or 'none'}, this greenaudit "
                    f"exports from {head}: run greenaudit db upgrade first"
                )
            row = _find_project(connection, project)
            project_id: uuid.UUID = row["id"]
            entries = [
                write_table(connection, t, project_id, folder / f"{t.name}.parquet")
                for t in archived_tables()
            ]
        project_json = {
            c.name: apply(codec(c).dump, row[c.name]) for c in archived_columns(project_table())
        }
        manifest = Manifest(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            greenaudit_version=__version__,
            schema_revision=head,
            exported_at=datetime.now(timezone.utc),
            project=project_json,
            tables=entries,
        )
        partial = out.with_name(out.name + ".partial")
        try:
            with zipfile.ZipFile(partial, "w") as archive:
                archive.writestr(
                    MANIFEST,
                    manifest.model_dump_json(indent=2),
                    compress_type=zipfile.ZIP_DEFLATED,
                )
                for entry in entries:
                    # Parquet is compressed already (zstd).
                    archive.write(folder / entry.file, entry.file, zipfile.ZIP_STORED)
            os.replace(partial, out)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise ArchiveError(f"cannot write {out}: {error.strerror or error}") from None
    return ArchiveSummary(
        path=out,
        project_id=project_id,
        project_name=str(row["name"]),
        schema_revision=head,
        rows={e.name: e.rows for e in entries},
    )
