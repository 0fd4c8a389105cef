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
the database directly rather than going through the API; every row is checked with the API's
own schemas on the way in (:mod:`.rows`). API keys are never archived. An archive of an older
schema revision is migrated to the head on import (:mod:`.upgrade`).
"""

from __future__ import annotations

from .export import export_project
from .format import (
    EXCLUDED_TABLES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    REBUILT_TABLES,
    ArchiveError,
    ArchiveSummary,
    Limits,
    Manifest,
    TableEntry,
    VerifiedArchive,
    archived_columns,
    archived_tables,
    head_revision,
)
from .load import import_archive
from .reading import is_archive
from .verify import open_archive

__all__ = [
    "EXCLUDED_TABLES",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "REBUILT_TABLES",
    "ArchiveError",
    "ArchiveSummary",
    "Limits",
    "Manifest",
    "TableEntry",
    "VerifiedArchive",
    "archived_columns",
    "archived_tables",
    "export_project",
    "head_revision",
    "import_archive",
    "is_archive",
    "open_archive",
]
