"""SQL for analytics: one row per run (best metric value, costs), and one run's series."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, Select, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from ..models import DatasetProfile, EnergySample, MetricPoint, Project, Run
from ..runs.repository import SECONDS_PER_HOUR, filter_conditions
from ..runs.schemas import RunFilters


class epoch_seconds(FunctionElement[float]):  # noqa: N801 - reads as the SQL function it emits
    """Seconds since 1970 of a timestamp column, computed by the database."""

    type = Float()
    inherit_cache = True


@compiles(epoch_seconds, "postgresql")
def _epoch_postgresql(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    # SQLite keeps UTC timestamps as text; julianday() parses them (2440587.5 is 1970-01-01).
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


def run_costs_and_scores(
    project_ids: Sequence[uuid.UUID], filters: RunFilters, metric: str, higher_is_better: bool
) -> Select[Any]:
    """One row per run that logged ``metric``: its best value and every cost axis."""
    conditions = filter_conditions(project_ids, filters)
    best = func.max(MetricPoint.value) if higher_is_better else func.min(MetricPoint.value)
    scores = (
        select(MetricPoint.run_id.label("run_id"), best.label("score"))
        .join(Run, Run.id == MetricPoint.run_id)
        .where(MetricPoint.name == metric, *conditions)
        .group_by(MetricPoint.run_id)
        .subquery("scores")
    )
    costs = (
        select(
            EnergySample.run_id.label("run_id"),
            func.sum(
                func.coalesce(EnergySample.cpu_kwh, 0.0)
                + func.coalesce(EnergySample.gpu_kwh, 0.0)
                + func.coalesce(EnergySample.ram_kwh, 0.0)
            ).label("energy_kwh"),
            func.sum(EnergySample.co2_kg).label("co2_kg"),
            (func.sum(EnergySample.duration_s * EnergySample.gpu_count) / SECONDS_PER_HOUR).label(
                "gpu_hours"
            ),
        )
        .join(Run, Run.id == EnergySample.run_id)
        .where(*conditions)
        .group_by(EnergySample.run_id)
        .subquery("costs")
    )
    return (
        select(
            Run.id.label("run_id"),
            Run.project_id,
            Run.name,
            Run.model,
            Run.dataset,
            Run.dataset_version,
            Run.task,
            Run.flops,
            Run.model_params,
            Run.dataset_size,
            scores.c.score,
            costs.c.energy_kwh,
            costs.c.co2_kg,
            costs.c.gpu_hours,
        )
        .join(scores, scores.c.run_id == Run.id)
        .outerjoin(costs, costs.c.run_id == Run.id)
        .where(*conditions)
    )


def profiles_for(project_ids: Sequence[uuid.UUID]) -> Select[tuple[DatasetProfile]]:
    return select(DatasetProfile).where(DatasetProfile.project_id.in_(project_ids))


def project_named(name: str) -> Select[tuple[uuid.UUID]]:
    return select(Project.id).where(Project.name == name)


def metric_series(run_id: uuid.UUID, metric: str) -> Select[Any]:
    time_s = epoch_seconds(MetricPoint.time)
    return (
        select(MetricPoint.step, time_s.label("time_s"), MetricPoint.value)
        .where(MetricPoint.run_id == run_id, MetricPoint.name == metric)
        .order_by(MetricPoint.time, MetricPoint.step)
    )


def energy_intervals(run_id: uuid.UUID) -> Select[Any]:
    energy: ColumnElement[float] = (
        func.coalesce(EnergySample.cpu_kwh, 0.0)
        + func.coalesce(EnergySample.gpu_kwh, 0.0)
        + func.coalesce(EnergySample.ram_kwh, 0.0)
    )
    return select(
        epoch_seconds(EnergySample.t_start).label("t_start"),
        epoch_seconds(EnergySample.t_end).label("t_end"),
        energy.label("kwh"),
        EnergySample.co2_kg,
        EnergySample.rank,
    ).where(EnergySample.run_id == run_id)
