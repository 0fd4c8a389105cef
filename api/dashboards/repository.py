"""SQL for the dashboards: daily CO2 and groups (series come from the analytics queries)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Select, func, select
from sqlalchemy.sql.expression import FunctionElement

from ..db import compile_per_dialect
from ..models import Run, RunEnergyTotals, RunMetricStats


class utc_day(FunctionElement[Any]):  # noqa: N801 - reads as the SQL it emits
    """The UTC calendar day of a timestamp column."""

    type = Date()
    inherit_cache = True


compile_per_dialect(
    utc_day,
    postgresql="CAST(({0} AT TIME ZONE 'UTC') AS DATE)",
    sqlite="date({0})",
)


def daily_co2(project_id: uuid.UUID, since: datetime | None) -> Select[date, float]:
    """CO2 per day, each run counted on the day it started."""
    day = utc_day(Run.started_at)
    recent = [Run.started_at >= since] if since is not None else []
    return (
        select(day.label("day"), func.sum(RunEnergyTotals.co2_kg).label("co2_kg"))
        .join(RunEnergyTotals, RunEnergyTotals.run_id == Run.id)
        .where(Run.project_id == project_id, *recent)
        .group_by(day)
        .order_by(day)
    )


def group_costs(project_id: uuid.UUID) -> Select[str | None, int, float, float]:
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


def group_best_results(
    project_id: uuid.UUID,
) -> Select[str | None, uuid.UUID, str | None, str | None, str | None, float, float]:
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


def metric_names(run_id: uuid.UUID) -> Select[str]:
    return select(RunMetricStats.name).where(RunMetricStats.run_id == run_id)
