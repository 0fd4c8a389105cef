"""Queries behind budgets and forecasts. Sums run in SQL, over the per-run running totals."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select

from ..models import Budget, EnergySample, MetricPoint, Project, Run, RunEnergyTotals


def budgets_of_project(project_id: uuid.UUID) -> Select[Budget]:
    return (
        select(Budget)
        .where(Budget.project_id == project_id)
        .order_by(Budget.group_name, Budget.period)
    )


def count_of_project(project_id: uuid.UUID) -> Select[int]:
    return select(func.count()).select_from(Budget).where(Budget.project_id == project_id)


def lock_project(project_id: uuid.UUID) -> Select[uuid.UUID]:
    """The project's row, locked until the transaction ends (PostgreSQL; SQLite ignores it)."""
    return select(Project.id).where(Project.id == project_id).with_for_update()


def budget_in_scope(project_id: uuid.UUID, group: str, period: str) -> Select[Budget]:
    return select(Budget).where(
        Budget.project_id == project_id, Budget.group_name == group, Budget.period == period
    )


def budgets_over_run(run: Run) -> Select[Budget]:
    """The project's budgets and its group's: those the run's spending counts against."""
    groups = [""] if run.group_name is None else ["", run.group_name]
    return (
        select(Budget)
        .where(Budget.project_id == run.project_id, Budget.group_name.in_(groups))
        .order_by(Budget.group_name, Budget.period)
    )


def _in_scope(
    project_id: uuid.UUID, group: str, start: datetime | None, end: datetime | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Run.project_id == project_id]
    if group:
        conditions.append(Run.group_name == group)
    if start is not None:
        conditions.append(Run.started_at >= start)
    if end is not None:
        conditions.append(Run.started_at < end)
    return conditions


def spent_in_scope(
    project_id: uuid.UUID, group: str, start: datetime | None, end: datetime | None
) -> Select[float, float, int]:
    """(kWh, kg CO2e, runs) of the runs in scope, from their running totals."""
    totals = RunEnergyTotals
    return (
        select(
            func.coalesce(func.sum(totals.cpu_kwh + totals.gpu_kwh + totals.ram_kwh), 0.0),
            func.coalesce(func.sum(totals.co2_kg), 0.0),
            func.count(Run.id),
        )
        .select_from(Run)
        .outerjoin(totals, totals.run_id == Run.id)
        .where(*_in_scope(project_id, group, start, end))
    )


def running_in_scope(
    project_id: uuid.UUID, group: str, start: datetime | None, end: datetime | None
) -> Select[Run]:
    return select(Run).where(*_in_scope(project_id, group, start, end), Run.status == "running")


def sample_progress(run_id: uuid.UUID) -> Select[int | None, float, float]:
    """Each sample's step, kWh and kg CO2e, in the order the samples ended (all ranks)."""
    sample = EnergySample
    kwh = (
        func.coalesce(sample.cpu_kwh, 0.0)
        + func.coalesce(sample.gpu_kwh, 0.0)
        + func.coalesce(sample.ram_kwh, 0.0)
    )
    return (
        select(sample.step, kwh, sample.co2_kg)
        .where(sample.run_id == run_id)
        .order_by(sample.t_end, sample.rank, sample.seq)
    )


def metric_values(run_id: uuid.UUID, name: str) -> Select[int, float]:
    return (
        select(MetricPoint.step, MetricPoint.value)
        .where(MetricPoint.run_id == run_id, MetricPoint.name == name)
        .order_by(MetricPoint.step)
    )
