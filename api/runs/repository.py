"""Composable queries over runs and their series. Aggregation happens in SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

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

SECONDS_PER_HOUR = 3600.0


def energy_totals(run_ids: Sequence[uuid.UUID]) -> Select[tuple[RunEnergyTotals]]:
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


def runs_matching(project_id: uuid.UUID, filters: RunFilters) -> Select[tuple[Run]]:
    return select(Run).where(*filter_conditions(project_id, filters))


def sorted_runs(query: Select[tuple[Run]], sort: RunSort, order: SortOrder) -> Select[tuple[Run]]:
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


def project_matching(project_id: uuid.UUID, id_or_name: str) -> Select[tuple[uuid.UUID]]:
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


def stored_samples(
    run_id: uuid.UUID, ranks: set[int], seq_min: int, seq_max: int
) -> Select[tuple[EnergySample]]:
    """Samples of a run that a batch covering these ranks and seqs could collide with."""
    return select(EnergySample).where(
        EnergySample.run_id == run_id,
        EnergySample.rank.in_(ranks),
        EnergySample.seq.between(seq_min, seq_max),
    )


def stored_points(
    run_id: uuid.UUID, names: set[str], step_min: int, step_max: int
) -> Select[tuple[MetricPoint]]:
    return select(MetricPoint).where(
        MetricPoint.run_id == run_id,
        MetricPoint.name.in_(names),
        MetricPoint.step.between(step_min, step_max),
    )


def energy_series(run_id: uuid.UUID) -> Select[tuple[EnergySample]]:
    return (
        select(EnergySample)
        .where(EnergySample.run_id == run_id)
        .order_by(EnergySample.t_start, EnergySample.rank, EnergySample.seq)
    )


def metric_series(run_id: uuid.UUID, name: str | None) -> Select[tuple[MetricPoint]]:
    query = select(MetricPoint).where(MetricPoint.run_id == run_id)
    if name is not None:
        query = query.where(MetricPoint.name == name)
    return query.order_by(MetricPoint.name, MetricPoint.step)


def _upsert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


def _greatest(session: Session, a: Any, b: Any) -> Any:
    # PostgreSQL's greatest/least are SQLite's two-argument max/min.
    if session.get_bind().dialect.name == "postgresql":
        return func.greatest(a, b)
    return func.max(a, b)


def _least(session: Session, a: Any, b: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.least(a, b)
    return func.min(a, b)


def add_energy_totals(session: Session, run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """Add newly stored samples to the run's running totals, atomically."""
    sums = {
        "cpu_kwh": sum(r["cpu_kwh"] or 0.0 for r in rows),
        "gpu_kwh": sum(r["gpu_kwh"] or 0.0 for r in rows),
        "ram_kwh": sum(r["ram_kwh"] or 0.0 for r in rows),
        "co2_kg": sum(r["co2_kg"] for r in rows),
        "gpu_seconds": sum(r["duration_s"] * r["gpu_count"] for r in rows),
        "samples": len(rows),
    }
    table = RunEnergyTotals.__table__
    statement = _upsert(session, table).values(run_id=run_id, **sums)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.run_id],
            set_={name: table.c[name] + statement.excluded[name] for name in sums},
        )
    )


def add_methods(session: Session, run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """Record the measurement methods newly stored samples used (each pair once)."""
    pairs = {
        (component, row[f"{component}_method"])
        for row in rows
        for component in ("cpu", "gpu", "ram")
        if row[f"{component}_method"] is not None
    }
    if pairs:
        statement = _upsert(session, RunMethod.__table__).values(
            [{"run_id": run_id, "component": c, "method": m} for c, m in sorted(pairs)]
        )
        session.execute(statement.on_conflict_do_nothing())


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
        for name, points in by_name.items()
    ]
    table = RunMetricStats.__table__
    statement = _upsert(session, table).values(values)
    new = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.run_id, table.c.name],
            set_={
                "min_value": _least(session, table.c.min_value, new.min_value),
                "max_value": _greatest(session, table.c.max_value, new.max_value),
                "first_step": _least(session, table.c.first_step, new.first_step),
                "last_step": _greatest(session, table.c.last_step, new.last_step),
                "points": table.c.points + new.points,
            },
        )
    )
