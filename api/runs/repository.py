"""Composable queries over runs and their series. Aggregation happens in SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select, Subquery, func, or_, select
from sqlalchemy.orm import Session

from ..models import EnergySample, MetricPoint, Project, Run
from .schemas import RunFilters

SECONDS_PER_HOUR = 3600.0


def energy_totals_per_run(run_ids: Sequence[uuid.UUID] | None = None) -> Subquery:
    """One row per run: kWh per component, CO2, GPU-hours and sample count.

    ``run_ids`` limits it to those runs (inside the aggregate, so the index on run_id is used).
    """
    query = select(
        EnergySample.run_id.label("run_id"),
        func.coalesce(func.sum(EnergySample.cpu_kwh), 0.0).label("cpu_kwh"),
        func.coalesce(func.sum(EnergySample.gpu_kwh), 0.0).label("gpu_kwh"),
        func.coalesce(func.sum(EnergySample.ram_kwh), 0.0).label("ram_kwh"),
        func.coalesce(func.sum(EnergySample.co2_kg), 0.0).label("co2_kg"),
        (
            func.coalesce(func.sum(EnergySample.duration_s * EnergySample.gpu_count), 0.0)
            / SECONDS_PER_HOUR
        ).label("gpu_hours"),
        func.count().label("energy_samples"),
    ).group_by(EnergySample.run_id)
    if run_ids is not None:
        query = query.where(EnergySample.run_id.in_(run_ids))
    return query.subquery("run_energy")


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
    """The measurement methods each run used, per component."""
    found: dict[uuid.UUID, dict[str, set[str]]] = {
        run_id: {"cpu": set(), "gpu": set(), "ram": set()} for run_id in run_ids
    }
    if not run_ids:
        return found
    rows = session.execute(
        select(
            EnergySample.run_id,
            EnergySample.cpu_method,
            EnergySample.gpu_method,
            EnergySample.ram_method,
        )
        .where(EnergySample.run_id.in_(run_ids))
        .distinct()
    )
    for run_id, cpu, gpu, ram in rows:
        for component, method in (("cpu", cpu), ("gpu", gpu), ("ram", ram)):
            if method is not None:
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
