"""Composable queries over runs and their series. Aggregation happens in SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Dialect,
    Float,
    Integer,
    Row,
    Select,
    String,
    Table,
    TypeDecorator,
    Uuid,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from .. import blocks
from ..models import (
    EnergySample,
    MetricPoint,
    Project,
    Run,
    RunEnergyTotals,
    RunMethod,
    RunMetricStats,
)
from .schemas import RunFilters, RunSort, SortOrder

if TYPE_CHECKING:
    from ..db import AnySelect


def energy_totals(run_ids: Sequence[uuid.UUID]) -> Select[RunEnergyTotals]:
    return select(RunEnergyTotals).where(RunEnergyTotals.run_id.in_(run_ids))


def filter_conditions(
    project_id: uuid.UUID | Sequence[uuid.UUID], filters: RunFilters
) -> list[ColumnElement[bool]]:
    """Conditions on ``Run`` for one project (or several, such as yours and ``published``)."""
    conditions: list[ColumnElement[bool]] = [
        Run.project_id == project_id
        if isinstance(project_id, uuid.UUID)
        else Run.project_id.in_(project_id)
    ]
    exact = {
        Run.model: filters.model,
        Run.dataset: filters.dataset,
        Run.task: filters.task,
        Run.group_name: filters.group,
        Run.status: filters.status.value if filters.status else None,
        Run.kind: filters.kind.value if filters.kind else None,
    }
    conditions += [column == value for column, value in exact.items() if value is not None]
    if filters.started_after is not None:
        conditions.append(Run.started_at >= filters.started_after)
    if filters.started_before is not None:
        conditions.append(Run.started_at < filters.started_before)
    return conditions


def runs_matching(project_id: uuid.UUID, filters: RunFilters) -> Select[Run]:
    return select(Run).where(*filter_conditions(project_id, filters))


def sorted_runs(query: Select[Run], sort: RunSort, order: SortOrder) -> Select[Run]:
    """``query`` ordered by a run column or a running total; ties broken by id."""
    totals = {
        RunSort.co2_kg: RunEnergyTotals.co2_kg,
        RunSort.energy_kwh: RunEnergyTotals.cpu_kwh
        + RunEnergyTotals.gpu_kwh
        + RunEnergyTotals.ram_kwh,
    }
    if sort in totals:
        key: Any = func.coalesce(totals[sort], 0.0)
        query = query.outerjoin(RunEnergyTotals, RunEnergyTotals.run_id == Run.id)
    else:
        key = getattr(Run, sort.value)
    return query.order_by(key.desc() if order is SortOrder.desc else key.asc(), Run.id)


def project_matching(project_id: uuid.UUID, id_or_name: str) -> Select[uuid.UUID]:
    """The key's project, if ``id_or_name`` names it."""
    try:
        as_id: uuid.UUID | None = uuid.UUID(id_or_name)
    except ValueError:
        as_id = None
    named = Project.name == id_or_name
    return select(Project.id).where(
        Project.id == project_id, or_(named, Project.id == as_id) if as_id else named
    )


def methods_by_run(
    session: Session, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, set[str]]]:
    """The measurement methods each run used, per component (from ``run_method``)."""
    found: dict[uuid.UUID, dict[str, set[str]]] = {
        run_id: {"cpu": set(), "gpu": set(), "ram": set()} for run_id in run_ids
    }
    if not run_ids:
        return found
    rows = session.execute(
        select(RunMethod.run_id, RunMethod.component, RunMethod.method).where(
            RunMethod.run_id.in_(run_ids)
        )
    )
    for run_id, component, method in rows:
        found[run_id][component].add(method)
    return found


SAMPLE_KEY = ("rank", "seq")
POINT_KEY = ("name", "step")


def _among_keys(
    table: Table, key: tuple[str, str], run_id: uuid.UUID, keys: Sequence[tuple[Any, Any]]
) -> ColumnElement[bool]:
    """Rows of the run that may hold one of ``keys``.

    The first key column among the keys' own, the second within their range: one index range
    scan, where a row-value IN list of 1000 keys was slower than the insert itself.
    """
    first, second = table.c[key[0]], table.c[key[1]]
    return and_(
        table.c.run_id == run_id,
        first.in_({a for a, _ in keys}),
        second.between(min(b for _, b in keys), max(b for _, b in keys)),
    )


def stored_samples(run_id: uuid.UUID, keys: Sequence[tuple[int, int]]) -> AnySelect:
    """The stored samples of a run among these (rank, seq) keys, and some neighbours."""
    table = EnergySample.__table__
    return select(table).where(_among_keys(table, SAMPLE_KEY, run_id, keys))


def stored_points(run_id: uuid.UUID, keys: Sequence[tuple[str, int]]) -> AnySelect:
    """The stored points of a run among these (name, step) keys, and some neighbours."""
    table = MetricPoint.__table__
    return select(table).where(_among_keys(table, POINT_KEY, run_id, keys))


def energy_series(run_id: uuid.UUID) -> Select[EnergySample]:
    return (
        select(EnergySample)
        .where(EnergySample.run_id == run_id)
        .order_by(EnergySample.t_start, EnergySample.rank, EnergySample.seq)
    )


def metric_series(run_id: uuid.UUID, name: str | None) -> Select[MetricPoint]:
    query = select(MetricPoint).where(MetricPoint.run_id == run_id)
    if name is not None:
        query = query.where(MetricPoint.name == name)
    return query.order_by(MetricPoint.name, MetricPoint.step)


# Ingestion runs the same few statements for every batch. They are built once per dialect, with
# their values bound at execution, so SQLAlchemy compiles each once and reuses it; building them
# per batch cost more than the inserts themselves.
TOTAL_COLUMNS = ("cpu_kwh", "gpu_kwh", "ram_kwh", "co2_kg", "gpu_seconds", "samples")

# Table columns rather than ORM attributes keep these statements off the ORM's execution path.
_run = Run.__table__.c
# Table columns are untyped, so the types of RUN_FOR_INGEST's row are stated here, in its order.
IngestRun = Row[
    uuid.UUID,
    uuid.UUID,
    float,
    str,
    float,
    dict[str, Any],
    datetime | None,
    str,
    datetime | None,
    str | None,
]
RUN_FOR_INGEST = select(
    _run.id,
    _run.project_id,
    _run.carbon_intensity_g_per_kwh,
    _run.carbon_intensity_source,
    _run.pue,
    _run.hardware,
    _run.last_seen_at,
    _run.status,
    _run.ended_at,
    _run.group_name,
).where(_run.id == bindparam("run_id"))
RUN_FOR_INGEST_LOCKED = RUN_FOR_INGEST.with_for_update()
RUN_SEEN = (
    update(Run.__table__)
    .where(_run.id == bindparam("run_id"))
    .values(last_seen_at=bindparam("now"))
)
RUN_INTENSITY = (
    update(Run.__table__)
    .where(_run.id == bindparam("run_id"))
    .values(
        carbon_intensity_g_per_kwh=bindparam("intensity"),
        carbon_intensity_source=bindparam("source"),
    )
)
_sample = EnergySample.__table__.c
#: The next seq of one rank of a run: one past the highest stored (an index range's end).
NEXT_SEQ = select(func.coalesce(func.max(_sample.seq) + 1, 0)).where(
    _sample.run_id == bindparam("run_id"), _sample.rank == bindparam("rank")
)
RUN_REOPEN = (
    update(Run)
    .where(Run.id == bindparam("run_id"))
    .values(status=bindparam("status"), ended_at=None)
    .execution_options(synchronize_session=False)
)


def _dialect_insert(dialect: str, table: Any) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _greatest(dialect: str, a: Any, b: Any) -> Any:
    # PostgreSQL's greatest/least are SQLite's two-argument max/min.
    return func.greatest(a, b) if dialect == "postgresql" else func.max(a, b)


def _least(dialect: str, a: Any, b: Any) -> Any:
    return func.least(a, b) if dialect == "postgresql" else func.min(a, b)


@cache
def _add_totals(dialect: str) -> Any:
    table = RunEnergyTotals.__table__
    statement = _dialect_insert(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.run_id],
        set_={name: table.c[name] + statement.excluded[name] for name in TOTAL_COLUMNS},
    )


@cache
def _add_methods(dialect: str) -> Any:
    return _dialect_insert(dialect, RunMethod.__table__).on_conflict_do_nothing()


@cache
def _add_metric_stats(dialect: str) -> Any:
    table = RunMetricStats.__table__
    statement = _dialect_insert(dialect, table)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[table.c.run_id, table.c.name],
        set_={
            "min_value": _least(dialect, table.c.min_value, new.min_value),
            "max_value": _greatest(dialect, table.c.max_value, new.max_value),
            "first_step": _least(dialect, table.c.first_step, new.first_step),
            "last_step": _greatest(dialect, table.c.last_step, new.last_step),
            "points": table.c.points + new.points,
        },
    )


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# The binary COPY type of each column type ingestion writes on PostgreSQL.
_COPY_TYPES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (Uuid, "uuid"),
    (BigInteger, "int8"),
    (Integer, "int4"),
    (Float, "float8"),
    (String, "text"),
    (DateTime, "timestamptz"),
)


def _copy_type(column: Column[Any]) -> str:
    column_type = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return next(name for kind, name in _COPY_TYPES if isinstance(column_type, kind))


COPY_FROM_ROWS = 16


@dataclass(frozen=True)
class _BulkInsert:
    """The driver-level statements that store a batch of one table's rows.

    PostgreSQL: a binary ``COPY`` into a temporary staging table (the fastest way in), then one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` of the keys it stored; COPY alone
    cannot skip rows already stored. Below ``COPY_FROM_ROWS`` rows those three round trips cost
    more than they save, and the rows go in with a pipelined ``executemany`` of ``insert_rows``.
    SQLite: one ``executemany`` of a prepared INSERT.
    """

    columns: list[str]
    insert: str
    insert_rows: str = ""
    stage: str = ""
    copy: str = ""
    copy_types: tuple[str, ...] = ()


@cache
def _bulk_insert(table: Table, dialect: Dialect, key: tuple[str, str]) -> _BulkInsert:
    quote = dialect.identifier_preparer.quote
    columns = [c for c in table.c if c.name != "id"]
    names = ", ".join(quote(c.name) for c in columns)
    conflict = f"ON CONFLICT ({quote('run_id')}, {quote(key[0])}, {quote(key[1])}) DO NOTHING"
    if dialect.name != "postgresql":
        marks = ", ".join("?" for _ in columns)
        return _BulkInsert(
            columns=[c.name for c in columns],
            insert=f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks}) {conflict}",
        )
    stage = quote(f"{table.name}_stage")
    marks = ", ".join("%s" for _ in columns)
    returning = f"RETURNING {quote(key[0])}, {quote(key[1])}"
    return _BulkInsert(
        columns=[c.name for c in columns],
        insert_rows=f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks}) {conflict} "
        f"{returning}",
        # Per connection, emptied at each commit. Created in every transaction that needs it,
        # since one rolled back would take a table it created along.
        stage=f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} "
        f"(LIKE {quote(table.name)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        copy=f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)",
        copy_types=tuple(_copy_type(c) for c in columns),
        # In key order, so that concurrent batches lock the same keys in the same order.
        insert=f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} FROM {stage} "
        f"ORDER BY {quote(key[0])}, {quote(key[1])} "
        f"{conflict} {returning}",
    )


@cache
def _bind_processors(table: Table, dialect: Dialect) -> dict[str, Any]:
    """SQLAlchemy's own conversions to what the driver stores, for columns that need one."""
    found = {}
    for column in table.c:
        processor = column.type.bind_processor(dialect)
        if processor is not None:
            found[column.name] = processor
    return found


def _insert_missing(
    session: Session, table: Table, key: tuple[str, str], rows: list[dict[str, Any]]
) -> set[tuple[Any, Any]]:
    """Insert the rows of one run whose ``key`` is not stored yet; returns the keys inserted.

    Rows already stored, by an earlier send or a concurrent request, are left alone, so a
    re-send cannot fail or race. This goes below the ORM to the driver: converting 1000 rows
    of parameters through SQLAlchemy cost more than the database took to store them.
    """
    connection = session.connection()
    dialect = connection.dialect
    bulk = _bulk_insert(table, dialect, key)
    row_values = itemgetter(*bulk.columns)
    if dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor:
            if len(rows) < COPY_FROM_ROWS:
                cursor.executemany(bulk.insert_rows, map(row_values, rows), returning=True)
                stored: set[tuple[Any, Any]] = set()
                while True:
                    stored.update((a, b) for a, b in cursor.fetchall())
                    if not cursor.nextset():
                        return stored
            cursor.execute(bulk.stage)
            with cursor.copy(bulk.copy) as copy:
                copy.set_types(bulk.copy_types)
                for row in rows:
                    copy.write_row(row_values(row))
            cursor.execute(bulk.insert)
            return {(a, b) for a, b in cursor.fetchall()}
    # A writer holds SQLite's write lock for its whole transaction, so nothing can be inserted
    # between this look and the insert; the ON CONFLICT clause only guards the invariant.
    keys = [(row[key[0]], row[key[1]]) for row in rows]
    look = select(table.c[key[0]], table.c[key[1]]).where(
        _among_keys(table, key, rows[0]["run_id"], keys)
    )
    present = {(a, b) for a, b in session.execute(look)}
    new = [row for row, k in zip(rows, keys, strict=True) if k not in present]
    if new:
        processors = _bind_processors(table, dialect)
        converted = []
        for row in new:
            bound = {**row, **{name: convert(row[name]) for name, convert in processors.items()}}
            converted.append(row_values(bound))
        connection.exec_driver_sql(bulk.insert, converted)
    return {k for k in keys if k not in present}


def insert_new_samples(session: Session, rows: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """Insert the samples not stored yet; returns the (rank, seq) of those it inserted."""
    return _insert_missing(session, EnergySample.__table__, SAMPLE_KEY, rows)


def insert_new_points(session: Session, rows: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """Insert the metric points not stored yet; returns the (name, step) of those inserted."""
    return _insert_missing(session, MetricPoint.__table__, POINT_KEY, rows)


def add_energy_totals(session: Session, run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """Add newly stored samples to the run's running totals and energy blocks, atomically."""
    cpu = gpu = ram = co2 = gpu_seconds = 0.0
    for row in rows:  # one pass: this runs for every sample stored
        cpu += row["cpu_kwh"] or 0.0
        gpu += row["gpu_kwh"] or 0.0
        ram += row["ram_kwh"] or 0.0
        co2 += row["co2_kg"]
        gpu_seconds += row["duration_s"] * row["gpu_count"]
    sums = {
        "run_id": run_id,
        "cpu_kwh": cpu,
        "gpu_kwh": gpu,
        "ram_kwh": ram,
        "co2_kg": co2,
        "gpu_seconds": gpu_seconds,
        "samples": len(rows),
    }
    session.execute(_add_totals(_dialect(session)), sums)
    blocks.add(session, run_id, rows)


def add_methods(session: Session, run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """Record the measurement methods newly stored samples used (each pair once)."""
    pairs = {
        (component, row[f"{component}_method"])
        for row in rows
        for component in ("cpu", "gpu", "ram")
        if row[f"{component}_method"] is not None
    }
    if pairs:
        session.execute(
            _add_methods(_dialect(session)),
            [{"run_id": run_id, "component": c, "method": m} for c, m in sorted(pairs)],
        )


def add_metric_stats(session: Session, run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """Fold newly stored points into the run's per-metric range and count, atomically."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    values = [
        {
            "run_id": run_id,
            "name": name,
            "min_value": min(p["value"] for p in points),
            "max_value": max(p["value"] for p in points),
            "first_step": min(p["step"] for p in points),
            "last_step": max(p["step"] for p in points),
            "points": len(points),
        }
        for name, points in sorted(by_name.items())
    ]
    session.execute(_add_metric_stats(_dialect(session)), values)
