"""Opening an archive for import: every check, before the target database is touched."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from greenaudit._version import __version__

from .format import (
    ArchiveError,
    CheckedFiles,
    Limits,
    Manifest,
    VerifiedArchive,
    archived_tables,
    head_revision,
    known_revisions,
)
from .reading import unpack
from .rows import check_layout, check_rows
from .upgrade import upgraded


def _project(manifest: Manifest) -> tuple[uuid.UUID, str]:
    raw: dict[str, Any] = manifest.project
    try:
        return uuid.UUID(str(raw["id"])), str(raw["name"])
    except (KeyError, ValueError):
        raise ArchiveError("the manifest's project has no valid id and name") from None


def _verify(path: Path, folder: Path, limits: Limits) -> VerifiedArchive:
    unpacked = unpack(path, folder, limits)
    manifest = unpacked.manifest
    revision, head = manifest.schema_revision, head_revision()
    if revision not in known_revisions():
        raise ArchiveError(
            f"the archive has schema revision {revision}, which this greenaudit ({__version__}) "
            f"does not know (its migrations end at {head}): import it with a greenaudit at "
            f"least as new as the one that exported it ({manifest.greenaudit_version})"
        )
    project = _project(manifest)
    entries = {e.name: e for e in manifest.tables}
    files: CheckedFiles = {n: (p, entries[n]) for n, p in unpacked.files.items()}
    if revision == head:
        check_layout(
            manifest,
            archived_tables(),
            "the archive's tables and columns differ from its schema revision's",
        )
    else:
        files = upgraded(manifest, files, folder, project, limits)
    check_rows(archived_tables(), files, project, limits, api_checks=True)
    return VerifiedArchive(
        path=path,
        manifest=manifest,
        revision=head,
        files={name: checked[0] for name, checked in files.items()},
        project_id=project[0],
        project_name=project[1],
    )


@contextmanager
def open_archive(path: Path, limits: Limits | None = None) -> Iterator[VerifiedArchive]:
    """Open the archive at ``path`` and verify it before anything is written anywhere.

    Its format, names and sizes are checked before any member is inflated; then every member's
    SHA-256, its tables and columns against its schema revision, and every row against the
    API's schemas and its own project. An archive of an older revision is loaded into a
    scratch SQLite database at that revision and migrated to the head, so the real migrations
    transform its data. All of it happens in a private temporary folder, removed on exit.

    Raises:
        ArchiveError: Any check failed; the message names the first in one line.
    """
    folder = Path(tempfile.mkdtemp(prefix="greenaudit-import-"))
    try:
        yield _verify(path, folder, limits or Limits())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
