"""SQL for the dashboards: daily CO2, groups, and a run's power series reduced in buckets."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Date, Integer, Select, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from ..analytics.repository import epoch_seconds
from ..models import EnergySample, Run, RunEnergyTotals, RunMetricStats


class utc_day(FunctionElement[Any]):  # noqa: N801 - reads as the SQL it emits
    """The UTC calendar day of a timestamp column."""

    type = Date()
    inherit_cache = True


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"CAST(({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC') AS DATE)"


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


class bucket_of(FunctionElement[int]):  # noqa: N801
    """floor(value / width) as an integer, for non-negative values."""

    type = Integer()
    inherit_cache = True


@compiles(bucket_of, "postgresql")
def _bucket_postgresql(element: bucket_of, compiler: Any, **kw: Any) -> str:
    value, width = list(element.clauses)
    return (
        f"CAST(floor(({compiler.process(value, **kw)}) / ({compiler.process(width, **kw)}))"
        " AS INTEGER)"
    )


@compiles(bucket_of, "sqlite")
def _bucket_sqlite(element: bucket_of, compiler: Any, **kw: Any) -> str:
    # SQLite's CAST truncates towards zero, which is floor for the non-negative values here.
    value, width = list(element.clauses)
    return f"CAST(({compiler.process(value, **kw)}) / ({compiler.process(width, **kw)}) AS INTEGER)"


def daily_co2(project_id: uuid.UUID) -> Select[Any]:
    """CO2 per day, each run counted on the day it started."""
    day = utc_day(Run.started_at)
    return (
        select(day.label("day"), func.sum(RunEnergyTotals.co2_kg).label("co2_kg"))
        .join(RunEnergyTotals, RunEnergyTotals.run_id == Run.id)
        .where(Run.project_id == project_id)
        .group_by(day)
        .order_by(day)
    )


def group_costs(project_id: uuid.UUID) -> Select[Any]:
    return (
        select(
            Run.group_name,
            func.count(Run.id).label("runs"),
            func.coalesce(func.sum(RunEnergyTotals.co2_kg), 0.0).label("co2_kg"),
            func.coalesce(
                func.sum(
                    RunEnergyTotals.cpu_kwh + RunEnergyTotals.gpu_kwh + RunEnergyTotals.ram_kwh
                ),
                0.0,
            ).label("energy_kwh"),
        )
        .outerjoin(RunEnergyTotals, RunEnergyTotals.run_id == Run.id)
        .where(Run.project_id == project_id, Run.group_name.is_not(None))
        .group_by(Run.group_name)
        .order_by(Run.group_name)
    )


def group_best_results(project_id: uuid.UUID) -> Select[Any]:
    """Each grouped run's best value of its own primary metric."""
    return (
        select(
            Run.group_name,
            Run.id,
            Run.name,
            Run.model,
            Run.primary_metric,
            RunMetricStats.max_value,
            RunMetricStats.min_value,
        )
        .join(
            RunMetricStats,
            (RunMetricStats.run_id == Run.id) & (RunMetricStats.name == Run.primary_metric),
        )
        .where(Run.project_id == project_id, Run.group_name.is_not(None))
    )


def sample_span(run_id: uuid.UUID) -> Select[Any]:
    return select(
        func.count(),
        func.min(epoch_seconds(EnergySample.t_start)),
        func.max(epoch_seconds(EnergySample.t_end)),
    ).where(EnergySample.run_id == run_id)


def power_buckets(run_id: uuid.UUID, start_s: float, width_s: float) -> Select[Any]:
    """Samples reduced to time buckets per rank.

    Each bucket keeps the peak mean power of each component and the energy in it, so peaks
    survive the reduction and the energy adds up exactly.
    """
    # By each sample's midpoint: it falls in the bucket where most of it lies, and never on a
    # boundary that the rounding of SQLite's julianday() could tip either way.
    middle = (epoch_seconds(EnergySample.t_start) + epoch_seconds(EnergySample.t_end)) / 2
    bucket = bucket_of(middle - start_s, width_s)
    return (
        select(
            bucket.label("bucket"),
            EnergySample.rank,
            func.min(epoch_seconds(EnergySample.t_start)).label("t"),
            func.max(EnergySample.cpu_w).label("cpu_w"),
            func.max(EnergySample.gpu_w).label("gpu_w"),
            func.max(EnergySample.ram_w).label("ram_w"),
            func.sum(
                func.coalesce(EnergySample.cpu_kwh, 0.0)
                + func.coalesce(EnergySample.gpu_kwh, 0.0)
                + func.coalesce(EnergySample.ram_kwh, 0.0)
            ).label("kwh"),
        )
        .where(EnergySample.run_id == run_id)
        .group_by(bucket, EnergySample.rank)
        .order_by(bucket, EnergySample.rank)
    )
