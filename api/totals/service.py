"""Totals per project, model or dataset, aggregated in SQL."""

from __future__ import annotations

from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.orm import Session

from greenaudit.units import J_PER_KWH, SECONDS_PER_HOUR

from ..auth import Principal
from ..models import Project, Run, RunEnergyTotals
from ..runs import repository as runs_repository
from ..runs.schemas import RunFilters
from ..runs.service import check_project_filter
from .schemas import TotalsBy, TotalsOut, TotalsRow


def totals(session: Session, caller: Principal, by: TotalsBy, filters: RunFilters) -> TotalsOut:
    check_project_filter(session, caller, filters)
    energy = RunEnergyTotals
    run_kwh = energy.cpu_kwh + energy.gpu_kwh + energy.ram_kwh
    reported = Run.samples_processed.is_not(None)
    key = {
        TotalsBy.project: Project.name,
        TotalsBy.model: Run.model,
        TotalsBy.dataset: Run.dataset,
    }[by]
    zero = 0.0
    query = (
        select(
            key.label("key"),
            func.count(Run.id).label("runs"),
            func.coalesce(func.sum(energy.cpu_kwh), zero).label("cpu_kwh"),
            func.coalesce(func.sum(energy.gpu_kwh), zero).label("gpu_kwh"),
            func.coalesce(func.sum(energy.ram_kwh), zero).label("ram_kwh"),
            func.coalesce(func.sum(energy.co2_kg), zero).label("co2_kg"),
            (func.coalesce(func.sum(energy.gpu_seconds), zero) / SECONDS_PER_HOUR).label(
                "gpu_hours"
            ),
            func.coalesce(func.sum(Run.duration_s), zero).label("duration_s"),
            func.sum(case((reported, run_kwh), else_=None)).label("reported_kwh"),
            # Summed as float: PostgreSQL sums BIGINT into NUMERIC, which arrives as Decimal.
            func.sum(cast(Run.samples_processed, Float)).label("samples_processed"),
        )
        .select_from(Run)
        .join(Project, Project.id == Run.project_id)
        .outerjoin(energy, energy.run_id == Run.id)
        .where(*runs_repository.filter_conditions(caller.project_id, filters))
        .group_by(key)
        .order_by(func.coalesce(func.sum(energy.co2_kg), zero).desc(), key)
    )
    rows = []
    for row in session.execute(query):
        rows.append(
            TotalsRow(
                key=row.key,
                runs=row.runs,
                energy_kwh=row.cpu_kwh + row.gpu_kwh + row.ram_kwh,
                cpu_kwh=row.cpu_kwh,
                gpu_kwh=row.gpu_kwh,
                ram_kwh=row.ram_kwh,
                co2_kg=row.co2_kg,
                gpu_hours=row.gpu_hours,
                duration_s=row.duration_s,
                j_per_sample=(
                    (row.reported_kwh or 0.0) * J_PER_KWH / row.samples_processed
                    if row.samples_processed
                    else None
                ),
            )
        )
    return TotalsOut(by=by, rows=rows)
