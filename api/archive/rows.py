"""Every row of an archive, checked before the target database is touched.

Four rules, each of which closes a class of hostile archives:

1. **Types.** Each Parquet column has exactly the Arrow type its table column is exported as, so
   numbers as strings or naive timestamps never reach a row.
2. **Values.** Each row passes the API's own request schemas (``RunCreate``, ``EnergySampleIn``,
   ``BudgetIn`` ...), with the API's ranges, enums and cross-field rules; the columns only the
   service writes reuse those schemas' field constraints. Every string is free of NUL and lone
   surrogates and fits its column.
3. **Own project.** Every foreign key points at a row of this archive, which holds one project:
   no row can land in, or point into, another project. Such rows are refused, not rewritten: an
   export never makes them, so they mean the archive was forged or damaged, and moving a row
   into the importer's project would silently change what it claims.
4. **Derived rows.** Running totals, metric ranges and measurement methods equal what the
   archive's own samples and points add up to, so totals never disagree with ``/energy``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError, create_model
from pydantic.fields import FieldInfo
from sqlalchemy import Table

from greenaudit.analytics.entropy import label_entropy_bits, uniform_entropy_bits
from greenaudit.schemas import (
    DatasetProfileIn,
    EnergySampleIn,
    MetricPointIn,
    NonNegativeFloat,
    RunCreate,
    RunFinish,
    RunStatus,
    RunUpdate,
    SmallCount,
    UtcDatetime,
)

from ..alerts.schemas import AlertKind, Delivery
from ..budgets.schemas import BudgetIn
from ..projects.schemas import ProjectCreate
from .format import (
    BATCH_ROWS,
    ArchiveError,
    CheckedFiles,
    Limits,
    Manifest,
    TableEntry,
    archived_columns,
    codec,
    row_key,
)

Row = dict[str, Any]
#: Tables whose rows are sums of other rows; checked against those sums, not against a schema.
DERIVED = frozenset({"run_energy_totals", "run_metric_stats", "run_method"})
#: Relative and absolute slack of a running sum against the same sum taken again in another
#: order (float addition is not associative): far below any real disagreement.
SUM_RTOL, SUM_ATOL = 1e-9, 1e-12
#: A sample's duration_s is t_end - t_start, to the timestamps' microsecond resolution.
DURATION_ATOL_S = 1e-3
_COMPONENTS = ("cpu", "gpu", "ram")


def _borrowed(model: type[BaseModel], *names: str, optional: bool = False) -> dict[str, Any]:
    """The API model's field definitions, constraints included, for a stored-row model."""
    fields: dict[str, Any] = {}
    for name in names:
        info = model.model_fields[name]
        annotation: Any = info.annotation
        if optional:
            fields[name] = (annotation | None, FieldInfo.merge_field_infos(info, default=None))
        else:
            fields[name] = (annotation, FieldInfo.merge_field_infos(info, default=...))
    return fields


# The columns the service writes itself, with the constraints of the request fields they come from.
_RunStored: type[BaseModel] = create_model(
    "RunStored",
    status=(RunStatus, ...),
    ended_at=(UtcDatetime | None, None),
    last_seen_at=(UtcDatetime | None, None),
    created_at=(UtcDatetime, ...),
    **_borrowed(RunFinish, "duration_s", "error", optional=True),
    **_borrowed(RunFinish, "lost_items"),
)
_SampleStored: type[BaseModel] = create_model(
    "SampleStored", duration_s=(NonNegativeFloat, ...), co2_kg=(NonNegativeFloat, ...)
)
_AlertStored: type[BaseModel] = create_model(
    "AlertStored",
    kind=(AlertKind, ...),
    delivery=(Delivery, ...),
    attempts=(SmallCount, ...),
    details=(dict[str, Any], ...),
    created_at=(UtcDatetime, ...),
    next_attempt_at=(UtcDatetime | None, None),
    delivered_at=(UtcDatetime | None, None),
)


def _fields(model: type[BaseModel], row: Row) -> Row:
    return {name: row[name] for name in model.model_fields if name in row}


def _project(row: Row) -> None:
    ProjectCreate.model_validate({"name": row["name"]})


def _run(row: Row) -> None:
    body = RunCreate.model_validate({**_fields(RunCreate, row), "group": row["group_name"]})
    RunUpdate.model_validate(_fields(RunUpdate, row))
    stored = _RunStored.model_validate(_fields(_RunStored, row))
    if (row["node"], row["world_size"]) != (body.hardware.node, body.hardware.world_size):
        raise ValueError("node and world_size differ from the run's hardware")
    ended_at = getattr(stored, "ended_at")  # noqa: B009 - a field of a created model
    if ended_at is not None and ended_at < body.started_at:
        raise ValueError("ended_at is before started_at")


def _sample(row: Row) -> None:
    sample = EnergySampleIn.model_validate(_fields(EnergySampleIn, row))
    _SampleStored.model_validate(_fields(_SampleStored, row))
    if abs(row["duration_s"] - (sample.t_end - sample.t_start).total_seconds()) > DURATION_ATOL_S:
        raise ValueError("duration_s is not t_end - t_start")


def _point(row: Row) -> None:
    MetricPointIn.model_validate(_fields(MetricPointIn, row))


def _profile(row: Row) -> None:
    counts = row["class_counts"]
    body = {
        **_fields(DatasetProfileIn, row),
        "num_classes": None if counts is not None else row["num_classes"],
    }
    DatasetProfileIn.model_validate(body)
    if counts is not None:
        classes, entropy = sum(1 for c in counts if c > 0), label_entropy_bits(counts)
    else:
        classes, entropy = row["num_classes"], uniform_entropy_bits(row["num_classes"])
    if row["num_classes"] != classes or not math.isclose(
        row["entropy_bits"], entropy, rel_tol=SUM_RTOL, abs_tol=SUM_ATOL
    ):
        raise ValueError("num_classes or entropy_bits do not follow from the class counts")


def _budget(row: Row) -> None:
    BudgetIn.model_validate({**_fields(BudgetIn, row), "group": row["group_name"] or None})


def _alert(row: Row) -> None:
    _AlertStored.model_validate(_fields(_AlertStored, row))


#: The check of each table's rows at the schema head. A table added without one is refused,
#: so no table is imported unchecked.
ROW_CHECKS: dict[str, Callable[[Row], None]] = {
    "project": _project,
    "run": _run,
    "energy_sample": _sample,
    "metric_point": _point,
    "dataset_profile": _profile,
    "budget": _budget,
    "alert": _alert,
}


def _why(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    if isinstance(error, UnicodeError):
        return "a string holds a lone surrogate, which UTF-8 cannot carry"
    if isinstance(error, RecursionError):
        return "a JSON value is nested too deeply"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def check_parquet(path: Path, table: Table, entry: TableEntry, limits: Limits) -> pq.ParquetFile:
    """Rule 1: the file holds the manifest's rows, the table's columns, and their types."""
    try:
        parquet = pq.ParquetFile(path)
        metadata = parquet.metadata
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as error:
        raise ArchiveError(f"{entry.file} is not a readable Parquet file: {error}") from None
    columns = archived_columns(table)
    if metadata.num_rows != entry.rows or schema.names != entry.columns:
        raise ArchiveError(f"{entry.file} does not hold the rows and columns its manifest lists")
    for column in columns:
        found, expected = schema.field(column.name).type, codec(column).arrow
        if not found.equals(expected):
            raise ArchiveError(
                f"{table.name}.{column.name} is {found} in the archive; it must be {expected}"
            )
    decoded = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if decoded > limits.decoded_bytes:
        raise ArchiveError(
            f"{entry.file} decodes to {decoded} bytes; the limit is {limits.decoded_bytes}"
        )
    return parquet


def batches(parquet: pq.ParquetFile, table: Table) -> Iterator[list[Row]]:
    """The raw rows of a checked file, batch by batch (decode each with :func:`decode`)."""
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            yield batch.to_pylist()
    except (pa.ArrowException, OSError, ValueError) as error:
        # Invalid UTF-8, or a timestamp outside Python's years 1 to 9999.
        raise ArchiveError(f"{table.name} cannot be decoded: {_why(error)}") from None


def loaders(table: Table) -> list[tuple[str, Callable[[Any], Any]]]:
    """The decoding of each column that needs one (UUID and JSON text)."""
    return [(c.name, k.load) for c in archived_columns(table) if (k := codec(c)).load is not None]


def decode(row: Row, loads: list[tuple[str, Callable[[Any], Any]]]) -> Row:
    """A raw row as the database takes it, in place."""
    for name, load in loads:
        if row[name] is not None:
            row[name] = load(row[name])
    return row


class RowChecker:
    """Rules 2 to 4 over an archive's tables, given in foreign-key order.

    Args:
        project: The archive's one project, id and name, as its manifest gives them.
        api_checks: Apply the API's schemas and the derived-row sums (schema head only; an
            older archive is checked again once migrated to the head).
    """

    def __init__(
        self, tables: list[Table], project: tuple[uuid.UUID, str], api_checks: bool
    ) -> None:
        self.project_id, self.project_name = project
        self.api_checks = api_checks
        names = {t.name for t in tables}
        #: Values present per referenced (table, column): what a foreign key may point at.
        self.keys: dict[tuple[str, str], set[Any]] = {
            (fk.column.table.name, fk.column.name): set()
            for t in tables
            for fk in t.foreign_keys
            if fk.column.table.name in names
        }
        self.energy: dict[Any, list[float]] = {}
        self.methods: dict[Any, set[tuple[str, str]]] = {}
        self.stats: dict[tuple[Any, str], list[Any]] = {}
        self.stored: dict[str, dict[Any, Any]] = {name: {} for name in DERIVED}

    def check_table(self, table: Table, path: Path, entry: TableEntry, limits: Limits) -> None:
        """Check every row of one table; raises :class:`ArchiveError` naming the first bad one."""
        parquet = check_parquet(path, table, entry, limits)
        if self.api_checks and table.name not in ROW_CHECKS and table.name not in DERIVED:
            raise ArchiveError(f"table {table.name} has no row check; it cannot be imported")
        check = ROW_CHECKS.get(table.name) if self.api_checks else None
        texts = [
            (c.name, codec(c).max_length)
            for c in archived_columns(table)
            if codec(c).arrow == pa.string() and codec(c).load is None
        ]
        required = [c.name for c in archived_columns(table) if not c.nullable]
        links = [
            (fk.parent.name, (fk.column.table.name, fk.column.name)) for fk in table.foreign_keys
        ]
        own = [(key, column) for key, column in self.keys if key == table.name]
        loads = loaders(table)
        pending: list[tuple[int, Row, str, tuple[str, str]]] = []
        number = 0
        for rows in batches(parquet, table):
            for row in rows:
                number += 1
                try:
                    decode(row, loads)
                    for name, limit in texts:
                        if row[name] is not None:
                            _check_text(name, row[name], limit)
                    for name in required:
                        if row[name] is None:
                            raise ValueError(f"{name} is empty; the column requires a value")
                    if check is not None:
                        check(row)
                except (ValueError, TypeError, OverflowError, RecursionError) as error:
                    raise ArchiveError(
                        f"{table.name} row {number} ({row_key(table, row)}): {_why(error)}"
                    ) from None
                if table.name == "project" and (row["id"], row["name"]) != (
                    self.project_id,
                    self.project_name,
                ):
                    raise ArchiveError(
                        f"project.parquet holds project {row['name']!r} ({row['id']}); the "
                        f"manifest says {self.project_name!r} ({self.project_id})"
                    )
                for name, target in links:
                    value = row[name]
                    if value is None:
                        continue
                    if target[0] == table.name:
                        pending.append((number, row, name, target))
                    elif value not in self.keys.get(target, ()):
                        self._foreign(table, number, row, name, target)
                for key in own:
                    self.keys[key].add(row[key[1]])
                if self.api_checks:
                    self._collect(table.name, row)
        for number, row, name, target in pending:
            if row[name] not in self.keys[target]:
                self._foreign(table, number, row, name, target)

    def _foreign(
        self, table: Table, number: int, row: Row, name: str, target: tuple[str, str]
    ) -> None:
        raise ArchiveError(
            f"{table.name} row {number} ({row_key(table, row)}): {name} {row[name]} is no "
            f"{target[0]} of the archive's project {self.project_id}; an archive can only "
            "write into its own project"
        )

    def _collect(self, name: str, row: Row) -> None:
        if name == "energy_sample":
            sums = self.energy.setdefault(row["run_id"], [0.0] * 5 + [0])
            for i, component in enumerate(_COMPONENTS):
                sums[i] += row[f"{component}_kwh"] or 0.0
            sums[3] += row["co2_kg"]
            sums[4] += row["duration_s"] * row["gpu_count"]
            sums[5] += 1
            used = self.methods.setdefault(row["run_id"], set())
            for component in _COMPONENTS:
                if row[f"{component}_method"] is not None:
                    used.add((component, row[f"{component}_method"]))
        elif name == "metric_point":
            key = (row["run_id"], row["name"])
            value, step = row["value"], row["step"]
            stats = self.stats.get(key)
            if stats is None:
                self.stats[key] = [value, value, step, step, 1]
            else:
                stats[:] = [
                    min(stats[0], value),
                    max(stats[1], value),
                    min(stats[2], step),
                    max(stats[3], step),
                    stats[4] + 1,
                ]
        elif name == "run_energy_totals":
            self.stored[name][row["run_id"]] = row
        elif name == "run_metric_stats":
            self.stored[name][(row["run_id"], row["name"])] = row
        elif name == "run_method":
            self.stored[name].setdefault(row["run_id"], set()).add(
                (row["component"], row["method"])
            )

    def finish(self) -> None:
        """Rule 4, once every table is read."""
        if not self.api_checks:
            return
        totals = self.stored["run_energy_totals"]
        for run_id in set(totals) | set(self.energy):
            sums = self.energy.get(run_id, [0.0] * 5 + [0])
            row = totals.get(run_id)
            stored = (
                [
                    row[n]
                    for n in ("cpu_kwh", "gpu_kwh", "ram_kwh", "co2_kg", "gpu_seconds", "samples")
                ]
                if row is not None
                else [0.0] * 5 + [0]
            )
            if stored[5] != sums[5] or not all(
                math.isclose(a, b, rel_tol=SUM_RTOL, abs_tol=SUM_ATOL)
                for a, b in zip(stored[:5], sums[:5], strict=True)
            ):
                raise ArchiveError(
                    f"run_energy_totals of run {run_id} claim {stored[5]} samples, "
                    f"{sum(stored[:3]):.6g} kWh and {stored[3]:.6g} kg CO2e; the archive's "
                    f"samples of that run add up to {sums[5]}, {sum(sums[:3]):.6g} kWh and "
                    f"{sums[3]:.6g} kg: the running totals do not match the rows"
                )
        if self.stored["run_method"] != {k: v for k, v in self.methods.items() if v}:
            raise ArchiveError("run_method does not list the methods the archive's samples used")
        stats = {
            key: [r["min_value"], r["max_value"], r["first_step"], r["last_step"], r["points"]]
            for key, r in self.stored["run_metric_stats"].items()
        }
        if stats != self.stats:
            wrong = sorted(
                set(stats) ^ set(self.stats) or {k for k in stats if stats[k] != self.stats[k]},
                key=str,
            )
            raise ArchiveError(
                f"run_metric_stats of {wrong[0]} do not match the archive's metric points"
            )


def _check_text(name: str, value: str, limit: int | None) -> None:
    if "\x00" in value:
        raise ValueError(f"{name} holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} holds a lone surrogate, which UTF-8 cannot carry") from None
    if limit is not None and len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters long; the column holds {limit}")


def check_layout(manifest: Manifest, tables: list[Table], message: str) -> None:
    """The archive lists exactly ``tables``, each with its archived columns.

    Orders may differ: an older greenaudit listed tables and columns in its models' order,
    which a database migrated since (and reflected here) need not keep.
    """
    expected = {t.name: sorted(c.name for c in archived_columns(t)) for t in tables}
    if {e.name: sorted(e.columns) for e in manifest.tables} != expected:
        raise ArchiveError(message)
    project = next(e for e in manifest.tables if e.name == "project")
    if project.rows != 1:
        raise ArchiveError(f"the archive holds {project.rows} project rows; it must hold one")


def check_rows(
    tables: list[Table],
    files: CheckedFiles,
    project: tuple[uuid.UUID, str],
    limits: Limits,
    *,
    api_checks: bool,
) -> None:
    """Every row of every table, by the rules of :mod:`.rows`."""
    checker = RowChecker(tables, project, api_checks=api_checks)
    for table in tables:
        path, entry = files[table.name]
        checker.check_table(table, path, entry, limits)
    checker.finish()
