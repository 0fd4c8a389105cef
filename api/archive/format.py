"""The archive format: manifest, size limits, tables and the Parquet encoding of each column.

Values keep the tables' units (kWh, W, kg CO2e, s). In Parquet, UUIDs are strings, JSON columns
are JSON text, timestamps are UTC with microsecond resolution, and floats are float64, as stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from alembic.script import ScriptDirectory
from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    select,
)

from ..migrate import alembic_config
from ..models import Base

FORMAT: Literal["greenaudit-archive"] = "greenaudit-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Tables never archived. Keys and the webhook's signing secret are secrets: an imported project
#: gets new keys from the admin API, and its webhook is set again.
EXCLUDED_TABLES = frozenset({"api_key", "webhook"})
#: Tables not archived because they are sums of archived rows that the import rebuilds: checking
#: them against the samples would cost what rebuilding them does.
REBUILT_TABLES = frozenset({"run_energy_block"})
#: Rows per Parquet row group and per insert: keeps memory flat on projects of any size.
BATCH_ROWS = 10_000
#: A table name as the manifest may give it. Checked before any member is read, and members are
#: never written under their own names, so no name can point outside the import's folder.
TABLE_NAME = r"^[a-z][a-z0-9_]{0,62}$"


class ArchiveError(Exception):
    """An archive that cannot be written or imported; the message says why, in one line."""


@dataclass(frozen=True)
class Limits:
    """Caps on what an import reads, in bytes, checked before and while anything is inflated.

    The defaults fit a project of some hundred million samples. ``max_ratio`` bounds how much
    a member may inflate against its compressed size: an export stores its Parquet files
    uncompressed in the zip (they are zstd inside), so an honest archive is near 1.
    """

    manifest_bytes: int = 1 << 20
    member_bytes: int = 16 << 30
    total_bytes: int = 32 << 30
    #: Decoded size of a table's Parquet data, from its row groups' metadata.
    decoded_bytes: int = 64 << 30
    max_ratio: float = 100.0
    max_members: int = 64


class TableEntry(BaseModel):
    """One table of an archive, as the manifest lists it."""

    name: str = Field(pattern=TABLE_NAME)
    file: str = Field(max_length=80)
    rows: int = Field(ge=0, le=2**63 - 1)
    columns: list[str] = Field(max_length=200)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """``manifest.json``: what the archive holds and where it came from."""

    format: Literal["greenaudit-archive"]
    format_version: int
    greenaudit_version: str = Field(max_length=100)
    schema_revision: str = Field(pattern=r"^[0-9A-Za-z_]{1,32}$")
    exported_at: datetime
    project: dict[str, Any]
    tables: list[TableEntry] = Field(max_length=64)


@dataclass(frozen=True)
class ArchiveSummary:
    """What an export wrote or an import stored: the project and the row count of each table.

    ``schema_revision`` is the revision the archive was made at; an import upgrades an older
    one to ``head`` on the way in.
    """

    path: Path
    project_id: uuid.UUID
    project_name: str
    schema_revision: str
    rows: dict[str, int]


def archived_tables(metadata: MetaData = Base.metadata) -> list[Table]:
    """The tables that hold a project's data, parents before children (foreign-key order)."""
    return [
        t
        for t in metadata.sorted_tables
        if t.name not in EXCLUDED_TABLES | REBUILT_TABLES and t.name != "alembic_version"
    ]


def archived_columns(table: Table) -> list[Column[Any]]:
    """The columns archived for ``table``: all but a surrogate autoincrement key.

    Such keys (``energy_sample.id``, ``metric_point.id``) are regenerated on import, in the
    exported order, so they cannot collide with rows already in the target database.
    """
    surrogate = table.autoincrement_column
    if surrogate is None:
        return list(table.columns)
    tables = table.metadata.tables.values()
    if any(fk.column is surrogate for t in tables for fk in t.foreign_keys):
        raise ArchiveError(f"{surrogate} is referenced by other rows; it cannot be regenerated")
    return [c for c in table.columns if c is not surrogate]


def row_key(table: Table, row: dict[str, Any]) -> str:
    """How a message names one row.

    By its primary key, or by its natural key where that is a regenerated surrogate
    (``energy_sample`` by run, rank and seq).
    """
    names = [c.name for c in table.primary_key.columns if c.name in row]
    if not names:
        unique = next((u for u in table.constraints if isinstance(u, UniqueConstraint)), None)
        names = [] if unique is None else [c.name for c in unique.columns]
    return ", ".join(f"{n}={row.get(n)}" for n in names)


@dataclass(frozen=True)
class Codec:
    """How one column travels: its Arrow type, and database value to Arrow value and back."""

    arrow: pa.DataType
    dump: Callable[[Any], Any] | None = None
    load: Callable[[Any], Any] | None = None
    #: Longest string the column holds (its ``String(length)``), if any.
    max_length: int | None = None


def codec(column: Column[Any]) -> Codec:
    """The encoding of ``column`` in an archive."""
    column_type: Any = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, JSON):
        # JSON text keeps nesting and key order, which no single Arrow type would for free-form
        # metadata; None stays a Parquet null and is written back through the same JSON type.
        return Codec(pa.string(), dump_json, load_json)
    python_type = column_type.python_type
    if python_type is uuid.UUID:
        return Codec(pa.string(), str, uuid.UUID)
    if python_type is datetime:
        return Codec(pa.timestamp("us", tz="UTC"))
    if python_type is float:
        return Codec(pa.float64())
    if python_type is bool:
        return Codec(pa.bool_())
    if python_type is int:
        return Codec(pa.int64())
    if python_type is str:
        length = column_type.length if isinstance(column_type, String) else None
        return Codec(pa.string(), max_length=length)
    raise ArchiveError(f"column {column} of type {column.type} has no archive encoding yet")


def dump_json(value: Any) -> str:
    """JSON text as an archive holds it; refuses what UTF-8 cannot carry (a lone surrogate)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    return text


def load_json(text: str) -> Any:
    """Parse a JSON column. Its strings must be UTF-8: no lone surrogate from an escape."""
    value = json.loads(text)
    dump_json(value)
    return value


def apply(function: Callable[[Any], Any] | None, value: Any) -> Any:
    return value if function is None or value is None else function(value)


def project_table(metadata: MetaData = Base.metadata) -> Table:
    return metadata.tables["project"]


def belongs_to(table: Table, project_id: uuid.UUID) -> ColumnElement[bool]:
    """The condition that selects the rows of ``table`` that belong to the project.

    It follows foreign keys up to ``project``, so a new table under a run is archived without
    code changes.
    """
    project = project_table(table.metadata)
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
        return fk.parent.in_(select(fk.column).where(belongs_to(parent, project_id)))
    raise ArchiveError(f"table {table.name} has no foreign key leading to project")


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The schema revision this greenaudit's migrations end at (``alembic heads``)."""
    head = _scripts().get_current_head()
    if head is None:
        raise ArchiveError("greenaudit's migrations have no head revision")
    return head


def known_revisions() -> set[str]:
    """Every schema revision this greenaudit's migrations pass through."""
    return {script.revision for script in _scripts().walk_revisions()}


#: Each table's checked Parquet file, at the schema head, and its manifest entry.
CheckedFiles = dict[str, tuple[Path, TableEntry]]


@dataclass(frozen=True)
class VerifiedArchive:
    """An archive whose every check passed, its tables at the schema head in ``files``.

    ``manifest.schema_revision`` is the revision it was made at; ``revision`` the one its
    checked tables are at now (the head: an older archive was upgraded on the way).
    """

    path: Path
    manifest: Manifest
    revision: str
    files: dict[str, Path]
    project_id: uuid.UUID
    project_name: str
