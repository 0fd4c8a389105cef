"""Reading an archive's zip: its manifest and members, within the caps, names checked first.

Nothing here writes under a name taken from the archive. Members are copied, hashed as they
go, to files this code names (``0.parquet``, ``1.parquet`` ...) in the import's private folder,
and every byte inflated counts against :class:`Limits` before it reaches the disk.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from greenaudit._version import __version__

from .format import FORMAT, FORMAT_VERSION, MANIFEST, ArchiveError, Limits, Manifest, TableEntry

_CHUNK_BYTES = 1 << 20
#: Members smaller than this are not held to the compression ratio (a tiny table's Parquet
#: header compresses well).
_RATIO_FLOOR_BYTES = 1 << 20


@dataclass(frozen=True)
class Unpacked:
    """An archive's manifest, and each listed table's Parquet file, checked and copied out."""

    manifest: Manifest
    files: dict[str, Path]


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a greenaudit archive, of any format version."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(MANIFEST)
            if info.file_size > Limits().manifest_bytes:
                return True  # it says it is one; opening it gives the size error
            raw = json.loads(archive.read(info))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT


def _read_manifest(archive: zipfile.ZipFile, path: Path, limits: Limits) -> Manifest:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise ArchiveError(f"{path} has no {MANIFEST}: it is not a greenaudit archive") from None
    if info.file_size > limits.manifest_bytes:
        raise ArchiveError(
            f"{MANIFEST} is {info.file_size} bytes; the limit is {limits.manifest_bytes}"
        )
    with archive.open(info) as source:
        # Read one byte past the cap: a size the directory understates is caught as well.
        data = source.read(limits.manifest_bytes + 1)
    if len(data) > limits.manifest_bytes:
        raise ArchiveError(f"{MANIFEST} is over the limit of {limits.manifest_bytes} bytes")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as error:
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
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ArchiveError(
            f"{path}: {MANIFEST} is malformed: {where}: {first['msg']} "
            f"({error.error_count()} error(s))"
        ) from None


def _check_listing(archive: zipfile.ZipFile, manifest: Manifest, limits: Limits) -> None:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveError(
            f"the archive holds {len(infos)} files; the limit is {limits.max_members}"
        )
    names = [entry.name for entry in manifest.tables]
    if len(set(names)) != len(names):
        raise ArchiveError("the manifest lists a table twice")
    for entry in manifest.tables:
        if entry.file != f"{entry.name}.parquet":
            raise ArchiveError(f"the manifest names {entry.file!r} for table {entry.name}")
    listed = {e.file for e in manifest.tables} | {MANIFEST}
    unlisted = sorted(i.filename for i in infos if i.filename not in listed)
    if unlisted:
        raise ArchiveError(f"the archive holds files its manifest does not list: {unlisted[:5]}")
    total = 0
    for info in infos:
        if info.file_size > limits.member_bytes:
            raise ArchiveError(
                f"{info.filename} inflates to {info.file_size} bytes; the limit per file is "
                f"{limits.member_bytes}"
            )
        if info.file_size > _RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise ArchiveError(
                f"{info.filename} inflates {info.file_size / max(info.compress_size, 1):.0f} "
                f"times ({info.compress_size} to {info.file_size} bytes); the limit is "
                f"{limits.max_ratio:.0f} times: it is a zip bomb, or not an export"
            )
        total += info.file_size
    if total > limits.total_bytes:
        raise ArchiveError(
            f"the archive inflates to {total} bytes; the limit is {limits.total_bytes}"
        )


def _copy(
    archive: zipfile.ZipFile, entry: TableEntry, target: Path, limits: Limits, budget: list[int]
) -> None:
    # Hashed while copied out, so the bytes imported are the bytes that were checked; counted,
    # so a member larger than the directory says stops at the cap, not at a full disk.
    digest = hashlib.sha256()
    info = archive.getinfo(entry.file)
    written = 0
    try:
        with archive.open(info) as source, target.open("wb") as sink:
            while chunk := source.read(_CHUNK_BYTES):
                written += len(chunk)
                budget[0] -= len(chunk)
                if written > min(info.file_size, limits.member_bytes) or budget[0] < 0:
                    raise ArchiveError(f"{entry.file} inflates past its size or the limits")
                digest.update(chunk)
                sink.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        # A damaged member fails zip's own CRC check before ours.
        raise ArchiveError(f"{entry.file} cannot be read from the archive: {error}") from None
    if digest.hexdigest() != entry.sha256:
        raise ArchiveError(
            f"checksum mismatch for {entry.file}: the manifest says SHA-256 {entry.sha256}, the "
            f"file has {digest.hexdigest()}; the archive was altered or damaged"
        )


def unpack(path: Path, folder: Path, limits: Limits) -> Unpacked:
    """Check the archive's manifest, names and sizes, then copy out and hash its tables.

    Raises:
        ArchiveError: A check failed; nothing was written outside ``folder``.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise ArchiveError(f"{path} is not a readable zip archive: {error}") from None
    with archive:
        manifest = _read_manifest(archive, path, limits)
        _check_listing(archive, manifest, limits)
        files: dict[str, Path] = {}
        budget = [limits.total_bytes]
        for index, entry in enumerate(manifest.tables):
            if entry.file not in archive.NameToInfo:
                raise ArchiveError(f"the archive lacks {entry.file}, which its manifest lists")
            target = folder / f"{index}.parquet"
            _copy(archive, entry, target, limits, budget)
            files[entry.name] = target
    return Unpacked(manifest=manifest, files=files)
