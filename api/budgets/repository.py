"""Queries behind budgets and forecasts. Sums run in SQL, over the per-run running totals."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

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


def _budget_scope(start: datetime | None, end: datetime | None) -> ColumnElement[bool]:
    """Joins each budget to the runs in its scope; every budget joined has this period."""
    conditions: list[ColumnElement[bool]] = [
        Run.project_id == Budget.project_id,
        or_(Budget.group_name == "", Run.group_name == Budget.group_name),
    ]
    if start is not None:
        conditions.append(Run.started_at >= start)
    if end is not None:
        conditions.append(Run.started_at < end)
    return and_(*conditions)


def _of_period(budget_ids: Sequence[uuid.UUID] | None, period: str) -> list[ColumnElement[bool]]:
    conditions = [Budget.period == period]
    if budget_ids is not None:
        conditions.append(Budget.id.in_(budget_ids))
    return conditions


def spent_of_budgets(
    budget_ids: Sequence[uuid.UUID] | None,
    period: str,
    start: datetime | None,
    end: datetime | None,
) -> Select[uuid.UUID, float, float, int]:
    """(budget id, kWh, kg CO2e, runs) of each budget of ``period`` (of ``budget_ids``, or all).

    Sums of the runs' running totals, for many budgets in one grouped query: a period's bounds
    are the same for all its budgets.
    """
    totals = RunEnergyTotals
    return (
        select(
            Budget.id,
            func.coalesce(func.sum(totals.cpu_kwh + totals.gpu_kwh + totals.ram_kwh), 0.0),
            func.coalesce(func.sum(totals.co2_kg), 0.0),
            func.count(Run.id),
        )
        .select_from(Budget)
        .outerjoin(Run, _budget_scope(start, end))
        .outerjoin(totals, totals.run_id == Run.id)
        .where(*_of_period(budget_ids, period))
        .group_by(Budget.id)
    )


def running_of_budgets(
    budget_ids: Sequence[uuid.UUID] | None,
    period: str,
    start: datetime | None,
    end: datetime | None,
) -> Select[uuid.UUID, Run]:
    """(budget id, run) for each running run in the scope of a budget of ``period``."""
    return (
        select(Budget.id, Run)
        .join(Run, _budget_scope(start, end))
        .where(*_of_period(budget_ids, period), Run.status == "running")
    )


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
