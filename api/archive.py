"""Portable project archives, for ``greenaudit export`` and ``greenaudit import``.

An archive is one zip file::

    manifest.json         format name and version, greenaudit version, schema revision,
                          exported_at, the project row, and per table: file, rows, columns, SHA-256
    project.parquet       one Parquet file per table, in foreign-key order,
    dataset_profile.parquet
    run.parquet           with the columns of the SQLAlchemy metadata
    energy_sample.parquet
    ...

It copies a project exactly, ids, timestamps and running totals included, so it reads and writes
the database directly rather than going through the API. API keys are never archived.

Values keep the tables' units (kWh, W, kg CO2e, s). In Parquet, UUIDs are strings, JSON columns
are JSON text, timestamps are UTC with microsecond resolution, and floats are float64, as stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Table,
    TypeDecorator,
    bindparam,
    or_,
    select,
)
from sqlalchemy.exc import DataError, IntegrityError

from greenaudit._version import __version__

from .db import WRITE_OPTION
from .migrate import alembic_config
from .models import Base

FORMAT: Literal["greenaudit-archive"] = "greenaudit-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Tables never archived. Keys and the webhook's signing secret are secrets: an imported project
#: gets new keys from the admin API, and its webhook is set again.
EXCLUDED_TABLES = frozenset({"api_key", "webhook"})
#: Rows per Parquet row group and per insert: keeps memory flat on projects of any size.
BATCH_ROWS = 10_000
_CHUNK_BYTES = 1 << 20


class ArchiveError(Exception):
    """An archive that cannot be written or imported; the message says why."""


class TableEntry(BaseModel):
    """One table of an archive, as the manifest lists it."""

    name: str
    file: str
    rows: int = Field(ge=0)
    columns: list[str]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """``manifest.json``: what the archive holds and where it came from."""

    format: Literal["greenaudit-archive"]
    format_version: int
    greenaudit_version: str
    schema_revision: str
    exported_at: datetime
    project: dict[str, Any]
    tables: list[TableEntry]


@dataclass(frozen=True)
class ArchiveSummary:
    """What an export wrote or an import stored: the project and the row count of each table."""

    path: Path
    project_id: uuid.UUID
    project_name: str
    schema_revision: str
    rows: dict[str, int]


@dataclass(frozen=True)
class VerifiedArchive:
    """An archive whose format, schema and checksums were checked, unpacked to ``folder``."""

    path: Path
    manifest: Manifest
    folder: Path

    @property
    def project_id(self) -> uuid.UUID:
        """The archived project's id."""
        return uuid.UUID(str(self.manifest.project["id"]))

    @property
    def project_name(self) -> str:
        """The archived project's name."""
        return str(self.manifest.project["name"])


def archived_tables() -> list[Table]:
    """The tables that hold a project's data, parents before children (foreign-key order)."""
    return [t for t in Base.metadata.sorted_tables if t.name not in EXCLUDED_TABLES]


def archived_columns(table: Table) -> list[Column[Any]]:
    """The columns archived for ``table``: all but a surrogate autoincrement key.

    Such keys (``energy_sample.id``, ``metric_point.id``) are regenerated on import, in the
    exported order, so they cannot collide with rows already in the target database.
    """
    surrogate = table.autoincrement_column
    if surrogate is None:
        return list(table.columns)
    if any(fk.column is surrogate for t in Base.metadata.tables.values() for fk in t.foreign_keys):
        raise ArchiveError(f"{surrogate} is referenced by other rows; it cannot be regenerated")
    return [c for c in table.columns if c is not surrogate]


@dataclass(frozen=True)
class _Codec:
    arrow: pa.DataType
    # Database value to Arrow value, and back; None where the value passes as it is.
    dump: Callable[[Any], Any] | None = None
    load: Callable[[Any], Any] | None = None


def _codec(column: Column[Any]) -> _Codec:
    column_type: Any = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, JSON):
        # JSON text keeps nesting and key order, which no single Arrow type would for free-form
        # metadata; None stays a Parquet null and is written back through the same JSON type.
        return _Codec(pa.string(), _dump_json, json.loads)
    python_type = column_type.python_type
    if python_type is uuid.UUID:
        return _Codec(pa.string(), str, uuid.UUID)
    if python_type is datetime:
        return _Codec(pa.timestamp("us", tz="UTC"))
    if python_type is float:
        return _Codec(pa.float64())
    if python_type is bool:
        return _Codec(pa.bool_())
    if python_type is int:
        return _Codec(pa.int64())
    if python_type is str:
        return _Codec(pa.string())
    raise ArchiveError(f"column {column} of type {column.type} has no archive encoding yet")


def _dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _apply(function: Callable[[Any], Any] | None, value: Any) -> Any:
    return value if function is None or value is None else function(value)


def _project_table() -> Table:
    return Base.metadata.tables["project"]


def _belongs_to(table: Table, project_id: uuid.UUID) -> ColumnElement[bool]:
    """The condition that selects the rows of ``table`` that belong to the project.

    It follows foreign keys up to ``project``, so a new table under a run is archived without
    code changes.
    """
    project = _project_table()
    if table is project:
        return project.c.id == project_id
    # A direct link to the project is preferred over a path through another table.
    for fk in sorted(
        table.foreign_keys, key=lambda f: (f.column.table is not project, f.target_fullname)
    ):
        parent = fk.column.table
        if parent is table:
            continue  # lineage within the table (run.parent_run_id) says nothing of the project
        if parent is project:
            return fk.parent == project_id
        if not isinstance(parent, Table):
            continue
        return fk.parent.in_(select(fk.column).where(_belongs_to(parent, project_id)))
    raise ArchiveError(f"table {table.name} has no foreign key leading to project")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The schema revision this greenaudit's migrations end at (``alembic heads``)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise ArchiveError("greenaudit's migrations have no head revision")
    return head


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
    project = _project_table()
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _write_table(
    connection: Connection, table: Table, project_id: uuid.UUID, folder: Path
) -> TableEntry:
    columns = archived_columns(table)
    codecs = [_codec(c) for c in columns]
    schema = pa.schema(
        [
            pa.field(c.name, k.arrow, nullable=c.nullable)
            for c, k in zip(columns, codecs, strict=True)
        ]
    )
    # Ordered by primary key, so regenerated surrogate keys keep the source's order.
    query = (
        select(*columns)
        .where(_belongs_to(table, project_id))
        .order_by(*table.primary_key.columns)
        .execution_options(yield_per=BATCH_ROWS)
    )
    path = folder / f"{table.name}.parquet"
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for partition in connection.execute(query).partitions():
            values = list(zip(*partition, strict=True))
            arrays = [
                pa.array([_apply(k.dump, v) for v in column_values], type=k.arrow)
                for k, column_values in zip(codecs, values, strict=True)
            ]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            rows += len(partition)
    return TableEntry(
        name=table.name,
        file=path.name,
        rows=rows,
        columns=[c.name for c in columns],
        sha256=_sha256(path),
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
        ArchiveError: The project does not exist, the database is not at the schema head, or
            ``out`` cannot be written.
    """
    head = head_revision()
    with tempfile.TemporaryDirectory(prefix="greenaudit-export-") as tmp:
        folder = Path(tmp)
        with _snapshot(engine) as connection:
            revision = _current_revision(connection)
            if revision != head:
                raise ArchiveError(
                    f"the database is at schema revision {revision or 'none'}, this greenaudit "
                    f"exports from {head}: run greenaudit db upgrade first"
                )
            row = _find_project(connection, project)
            project_id: uuid.UUID = row["id"]
            entries = [_write_table(connection, t, project_id, folder) for t in archived_tables()]
        project_json = {
            c.name: _apply(_codec(c).dump, row[c.name]) for c in archived_columns(_project_table())
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


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a greenaudit archive, of any format version."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            raw = json.loads(archive.read(MANIFEST))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT


def _read_manifest(archive: zipfile.ZipFile, path: Path) -> Manifest:
    try:
        raw = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise ArchiveError(f"{path} has no {MANIFEST}: it is not a greenaudit archive") from None
    except ValueError as error:
        raise ArchiveError(f"{path}: {MANIFEST} is not valid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not a greenaudit archive (format is not {FORMAT!r})")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(
            f"{path} is archive format version {raw.get('format_version')!r}; this greenaudit "
            f"({__version__}) reads version {FORMAT_VERSION}"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as error:
        raise ArchiveError(f"{path}: {MANIFEST} is malformed: {error}") from None


def _unpack(archive: zipfile.ZipFile, entry: TableEntry, folder: Path) -> Path:
    # Hashed while copied out, so the bytes imported are the bytes that were checked.
    target = folder / entry.file
    digest = hashlib.sha256()
    try:
        with archive.open(entry.file) as source, target.open("wb") as sink:
            while chunk := source.read(_CHUNK_BYTES):
                digest.update(chunk)
                sink.write(chunk)
    except KeyError:
        raise ArchiveError(f"the archive lacks {entry.file}, which its manifest lists") from None
    except (zipfile.BadZipFile, OSError) as error:
        # A damaged member fails zip's own CRC check before ours.
        raise ArchiveError(f"{entry.file} cannot be read from the archive: {error}") from None
    if digest.hexdigest() != entry.sha256:
        raise ArchiveError(
            f"checksum mismatch for {entry.file}: the manifest says SHA-256 {entry.sha256}, the "
            f"file has {digest.hexdigest()}; the archive was altered or damaged"
        )
    return target


def _check_parquet(path: Path, entry: TableEntry) -> None:
    try:
        metadata = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as error:
        raise ArchiveError(f"{entry.file} is not a readable Parquet file: {error}") from None
    names = [metadata.schema.column(i).name for i in range(metadata.num_columns)]
    if metadata.num_rows != entry.rows or names != entry.columns:
        raise ArchiveError(f"{entry.file} does not hold the rows and columns its manifest lists")


def _verify(path: Path, folder: Path) -> VerifiedArchive:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise ArchiveError(f"{path} is not a readable zip archive: {error}") from None
    with archive:
        manifest = _read_manifest(archive, path)
        listed = {e.file for e in manifest.tables}
        unlisted = sorted(set(archive.namelist()) - listed - {MANIFEST})
        if unlisted:
            raise ArchiveError(f"the archive holds files its manifest does not list: {unlisted}")
        # Checked before the schema, so tampering is named as such and not as a schema mismatch.
        for entry in manifest.tables:
            if entry.file != f"{entry.name}.parquet":
                raise ArchiveError(f"the manifest names {entry.file!r} for table {entry.name}")
            _check_parquet(_unpack(archive, entry, folder), entry)
    head = head_revision()
    if manifest.schema_revision != head:
        raise ArchiveError(
            f"the archive has schema revision {manifest.schema_revision}; this greenaudit "
            f"({__version__}) writes databases at {head}: import it with the greenaudit "
            "version that exported it"
        )
    expected = [(t.name, [c.name for c in archived_columns(t)]) for t in archived_tables()]
    if [(e.name, e.columns) for e in manifest.tables] != expected:
        raise ArchiveError("the archive's tables and columns differ from its schema revision's")
    project = next(e for e in manifest.tables if e.name == _project_table().name)
    if project.rows != 1:
        raise ArchiveError(f"the archive holds {project.rows} project rows; it must hold one")
    return VerifiedArchive(path=path, manifest=manifest, folder=folder)


@contextmanager
def open_archive(path: Path) -> Iterator[VerifiedArchive]:
    """Open the archive at ``path`` and verify it before anything is written anywhere.

    Its format name and version, every member's SHA-256, its row counts, and its schema
    revision against this greenaudit's are checked; the Parquet files are unpacked to a
    temporary folder that is removed on exit.

    Raises:
        ArchiveError: Any check failed.
    """
    folder = Path(tempfile.mkdtemp(prefix="greenaudit-import-"))
    try:
        yield _verify(path, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _insert_table(connection: Connection, table: Table, path: Path) -> int:
    loads = [(c.name, _codec(c).load) for c in archived_columns(table)]
    # Rows can point at rows of the same table that come later in the file (run.parent_run_id);
    # those links are set once every row is in, so row order never breaks a foreign key.
    links: dict[str, list[dict[str, Any]]] = {
        fk.parent.name: [] for fk in table.foreign_keys if fk.column.table is table
    }
    key = [c.name for c in table.primary_key.columns]
    count = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        rows = batch.to_pylist()
        for row in rows:
            for name, load in loads:
                row[name] = _apply(load, row[name])
            for name, pending in links.items():
                if row[name] is not None:
                    pending.append({**{f"key_{k}": row[k] for k in key}, "link": row[name]})
                    row[name] = None
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
        engine: The target database, at the archive's schema revision.
        archive: From :func:`open_archive`.

    Returns:
        The project and the row count stored per table, in foreign-key order.

    Raises:
        ArchiveError: The target is at another schema revision, already has a project with the
            archive's id or name, or refuses a row (then nothing was stored).
    """
    project = _project_table()
    revision = archive.manifest.schema_revision
    with engine.connect() as connection:
        # A writer from the first statement: SQLite takes its write lock before the checks.
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            target_revision = _current_revision(connection)
            if target_revision != revision:
                raise ArchiveError(
                    f"the archive has schema revision {revision}, the target database is at "
                    f"{target_revision or 'none (no greenaudit schema)'}"
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
                    t.name: _insert_table(connection, t, archive.folder / f"{t.name}.parquet")
                    for t in archived_tables()
                }
            except (IntegrityError, DataError) as error:
                raise ArchiveError(
                    f"the target database refused the archive's rows, so nothing was imported: "
                    f"{error.orig}"
                ) from None
    return ArchiveSummary(
        path=archive.path,
        project_id=archive.project_id,
        project_name=archive.project_name,
        schema_revision=revision,
        rows=rows,
    )
