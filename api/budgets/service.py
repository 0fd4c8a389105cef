"""Budgets (spent, forecast, remaining) and forecasts of running runs."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from greenaudit.analytics.curves import InsufficientData
from greenaudit.analytics.forecast import EnergyForecast, forecast_energy, forecast_plateau
from greenaudit.schemas import RunStatus
from greenaudit.units import G_PER_KG

from .. import blocks
from ..analytics.repository import last_point, sampled_points
from ..analytics.schemas import DEFAULT_DIRECTION, Direction
from ..auth import Principal
from ..errors import Conflict, NotFound
from ..idempotent import insert_if_absent
from ..models import Budget, Run, RunEnergyTotals, RunMetricStats, utcnow
from ..runs.service import get_run
from . import repository
from .schemas import (
    Amount,
    BudgetIn,
    BudgetOut,
    EnergyForecastOut,
    Period,
    PlateauForecastOut,
    RunForecastOut,
)

DEFAULT_CONFIDENCE = 0.95
# Budgets per project: one per scope and period, so 25 groups with all four periods each.
MAX_BUDGETS_PER_PROJECT = 100
# A forecast reads at most this many rows of a run's progress: its samples while it has no
# more, else its energy blocks of the narrowest width that fits (api/blocks.py). Its batch
# means then use up to 64 blocks of them; ANALYTICS.md and RESULTS.md say what that changes.
MAX_FORECAST_ROWS = 4096
# The plateau is fitted to at most this many points, evenly spaced by step (one index seek
# each): three parameters are pinned down long before that, and a fit over a million points
# took seconds.
MAX_FIT_POINTS = 1000
# Forecasts already worked out in one request or one alert pass, by run id.
ForecastCache = dict[uuid.UUID, tuple[EnergyForecastOut | None, str | None]]


def period_bounds(period: Period, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The current UTC calendar period holding ``now``: [start, end), or (None, None) for all."""
    if period is Period.all:
        return None, None
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.day:
        return midnight, midnight + timedelta(days=1)
    if period is Period.week:
        monday = midnight - timedelta(days=midnight.weekday())
        return monday, monday + timedelta(days=7)
    first = midnight.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


def _kg_per_kwh(run: Run, spent_kwh: float, spent_kg: float) -> float:
    """The run's own CO2 per kWh: measured where it has spent, else its intensity and PUE."""
    if spent_kwh > 0:
        return spent_kg / spent_kwh
    return run.carbon_intensity_g_per_kwh * run.pue / G_PER_KG


def forecast_of_run(
    session: Session, run: Run, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[EnergyForecastOut | None, str | None]:
    """The run's forecast total energy and CO2, or why there is none."""
    if run.status != RunStatus.running.value:
        return None, f"the run is {run.status}: its totals are final"
    if run.total_steps is None:
        return None, "the run has not reported its planned total_steps (run.set(total_steps=...))"
    if run.total_steps < 1:
        return None, f"the run's planned total_steps is {run.total_steps}; it must be at least 1"
    measured = session.get(RunEnergyTotals, run.id)
    width = blocks.width_for(measured.samples if measured else 0, MAX_FORECAST_ROWS)
    progress = (
        repository.sample_progress(run.id) if width is None else blocks.progress(run.id, width)
    )
    rows = session.execute(progress).all()
    if not rows:
        return None, "the run has no energy samples yet"
    steps = np.array([math.nan if r[0] is None else float(r[0]) for r in rows])
    kwh = np.array([float(r[1]) for r in rows])
    spent_kg = float(sum(float(r[2]) for r in rows))
    try:
        energy = forecast_energy(steps, kwh, int(run.total_steps), confidence=confidence)
    except InsufficientData as error:
        return None, error.reason
    return _energy_out(energy, _kg_per_kwh(run, energy.spent_kwh, spent_kg), spent_kg), None


def _energy_out(energy: EnergyForecast, kg_per_kwh: float, spent_kg: float) -> EnergyForecastOut:
    return EnergyForecastOut(
        step=energy.step,
        total_steps=energy.total_steps,
        progress=energy.progress,
        spent_kwh=energy.spent_kwh,
        spent_kg_co2=spent_kg,
        forecast_kwh=energy.forecast_kwh,
        low_kwh=energy.low_kwh,
        high_kwh=energy.high_kwh,
        forecast_kg_co2=energy.forecast_kwh * kg_per_kwh,
        low_kg_co2=energy.low_kwh * kg_per_kwh,
        high_kg_co2=energy.high_kwh * kg_per_kwh,
        kwh_per_step=energy.kwh_per_step,
        confidence=energy.confidence,
        boundaries=energy.boundaries,
    )


def plateau_of_run(
    session: Session,
    run: Run,
    energy: EnergyForecastOut | None,
    *,
    metric: str | None = None,
    direction: Direction = DEFAULT_DIRECTION,
    epsilon_fraction: float = 0.005,
) -> tuple[PlateauForecastOut | None, str | None]:
    """Where the run's metric is forecast to plateau, and what the steps after it will cost."""
    if energy is None:
        return None, "a plateau forecast needs the energy forecast"
    name = metric or run.primary_metric or "accuracy"
    stats = session.get(RunMetricStats, (run.id, name))
    stride = 1
    if stats is not None and stats.points > MAX_FIT_POINTS:
        stride = math.ceil((stats.last_step - stats.first_step) / (MAX_FIT_POINTS - 1))
    rows = list(
        session.execute(
            repository.metric_values(run.id, name)
            if stats is None or stride <= 1
            else sampled_points(run.id, name, stats.first_step, stats.last_step, stride)
        )
    )
    if stats is not None and stride > 1 and rows and rows[-1].step != stats.last_step:
        # The last point says whether the plateau is passed; keep it in the fit.
        rows.append(session.execute(last_point(run.id, name)).one())
    try:
        plateau = forecast_plateau(
            [r.step for r in rows],
            [r.value for r in rows],
            energy.total_steps,
            energy.kwh_per_step,
            higher_is_better=direction.higher_is_better,
            epsilon_fraction=epsilon_fraction,
        )
    except InsufficientData as error:
        return None, f"{name!r}: {error.reason}"
    kg_per_kwh = energy.forecast_kg_co2 / energy.forecast_kwh if energy.forecast_kwh > 0 else 0.0
    return (
        PlateauForecastOut(
            metric=name,
            step=plateau.step,
            value=plateau.value,
            final_value=plateau.final_value,
            epsilon=plateau.epsilon,
            passed=plateau.passed,
            steps_after=plateau.steps_after,
            energy_after_kwh=plateau.energy_after_kwh,
            co2_after_kg=plateau.energy_after_kwh * kg_per_kwh,
            model=plateau.model,
        ),
        None,
    )


def _cached_forecast(session: Session, run: Run, cache: ForecastCache) -> EnergyForecastOut | None:
    if run.id not in cache:
        cache[run.id] = forecast_of_run(session, run)
    return cache[run.id][0]


@dataclass
class Scope:
    """What a budget's scope holds in its current period: spending, and its running runs."""

    kwh: float = 0.0
    kg_co2: float = 0.0
    runs: int = 0
    running: list[Run] = field(default_factory=list)


def scopes_of(
    session: Session, budgets: Sequence[Budget], now: datetime, *, every: bool = False
) -> dict[uuid.UUID, Scope]:
    """The scope of each of ``budgets`` as of ``now``, by budget id, in two queries a period.

    ``every`` says ``budgets`` are all the budgets there are, so the queries need no list of
    ids. An alert pass over 1,000 budgets made 2,000 queries and spent 0.8 s of Python on them,
    holding the GIL the worker's requests need (issue 16, finding 9); a page of budgets made
    200.
    """
    scopes = {budget.id: Scope() for budget in budgets}
    by_period: dict[str, list[uuid.UUID]] = defaultdict(list)
    for budget in budgets:
        by_period[budget.period].append(budget.id)
    for period, ids in sorted(by_period.items()):
        start, end = period_bounds(Period(period), now)
        which = None if every else ids
        for budget_id, kwh, kg, runs in session.execute(
            repository.spent_of_budgets(which, period, start, end)
        ):
            scope = scopes[budget_id]
            scope.kwh, scope.kg_co2, scope.runs = float(kwh), float(kg), int(runs)
        for budget_id, run in session.execute(
            repository.running_of_budgets(which, period, start, end)
        ):
            scopes[budget_id].running.append(run)
    return scopes


def budget_state(
    session: Session,
    budget: Budget,
    now: datetime,
    cache: ForecastCache | None = None,
    scope: Scope | None = None,
) -> BudgetOut:
    """A budget with its scope's spending, forecast and remainder as of ``now``.

    ``scope`` is the budget's from :func:`scopes_of` when the caller has it already.
    """
    cache = {} if cache is None else cache
    period = Period(budget.period)
    start, end = period_bounds(period, now)
    if scope is None:
        scope = scopes_of(session, [budget], now)[budget.id]
    kwh, kg, runs, running = scope.kwh, scope.kg_co2, scope.runs, scope.running
    more = np.zeros(4)  # forecast kWh, kg, and the high ends, beyond what is spent
    without = 0
    for run in running:
        energy = _cached_forecast(session, run, cache)
        if energy is None:
            without += 1
            continue
        more += (
            energy.forecast_kwh - energy.spent_kwh,
            energy.forecast_kg_co2 - energy.spent_kg_co2,
            energy.high_kwh - energy.spent_kwh,
            energy.high_kg_co2 - energy.spent_kg_co2,
        )
    spent = Amount(kwh=float(kwh), kg_co2=float(kg))
    forecast = Amount(kwh=spent.kwh + more[0], kg_co2=spent.kg_co2 + more[1])

    def over(amount: Amount) -> bool:
        return (budget.limit_kwh is not None and amount.kwh > budget.limit_kwh) or (
            budget.limit_kg_co2 is not None and amount.kg_co2 > budget.limit_kg_co2
        )

    return BudgetOut(
        id=budget.id,
        group=budget.group_name or None,
        period=period,
        period_start=start,
        period_end=end,
        limit_kg_co2=budget.limit_kg_co2,
        limit_kwh=budget.limit_kwh,
        spent=spent,
        forecast=forecast,
        forecast_high=Amount(kwh=spent.kwh + more[2], kg_co2=spent.kg_co2 + more[3]),
        remaining_kg_co2=None
        if budget.limit_kg_co2 is None
        else budget.limit_kg_co2 - spent.kg_co2,
        remaining_kwh=None if budget.limit_kwh is None else budget.limit_kwh - spent.kwh,
        exceeded=over(spent),
        forecast_exceeded=over(forecast),
        runs=int(runs),
        running_runs=len(running),
        running_without_forecast=without,
        created_at=budget.created_at,
        updated_at=budget.updated_at,
    )


def _own_budget(session: Session, caller: Principal, budget_id: uuid.UUID) -> Budget:
    budget = session.get(Budget, budget_id)
    if budget is None or budget.project_id != caller.project_id:
        raise NotFound(f"budget {budget_id} not found")
    return budget


def set_budget(session: Session, caller: Principal, body: BudgetIn) -> tuple[BudgetOut, bool]:
    """Create the budget of a scope and period, or replace its limits. Returns (it, created)."""
    group = body.group or ""
    scope = {"project_id": caller.project_id, "group_name": group, "period": body.period.value}
    if (
        session.scalar(repository.budget_in_scope(caller.project_id, group, body.period.value))
        is None
    ):
        _check_room(session, caller.project_id)
    # Inserted unless present, so that budgets set at the same moment answer 201 once, then 200.
    created = insert_if_absent(
        session,
        Budget,
        {**scope, "limit_kg_co2": body.limit_kg_co2, "limit_kwh": body.limit_kwh},
        list(scope),
    )
    budget = session.scalars(
        repository.budget_in_scope(caller.project_id, group, body.period.value)
    ).one()
    budget.limit_kg_co2 = body.limit_kg_co2
    budget.limit_kwh = body.limit_kwh
    budget.updated_at = utcnow()
    session.flush()
    return budget_state(session, budget, utcnow()), created


def _check_room(session: Session, project_id: uuid.UUID) -> None:
    """Refuse a new budget past :data:`MAX_BUDGETS_PER_PROJECT`.

    Every alert pass works out every budget, so their number is the pass's cost. The
    project's row is locked first (PostgreSQL), so concurrent creates cannot pass the cap
    together; a SQLite writer holds the database already.
    """
    session.execute(repository.lock_project(project_id))
    count = session.scalar(repository.count_of_project(project_id)) or 0
    if count >= MAX_BUDGETS_PER_PROJECT:
        raise Conflict(
            f"the project has {count} budgets, the most it may have is "
            f"{MAX_BUDGETS_PER_PROJECT}; delete one (DELETE /api/v1/budgets/{{id}}) or change "
            "the limits of an existing one (POST the same group and period)",
            code="too_many_budgets",
        )


def list_budgets(
    session: Session, caller: Principal, limit: int = MAX_BUDGETS_PER_PROJECT, offset: int = 0
) -> tuple[list[BudgetOut], int]:
    """A page of the project's budgets, by group and period, and how many it has in all."""
    now = utcnow()
    cache: ForecastCache = {}
    query = repository.budgets_of_project(caller.project_id)
    total = session.scalar(repository.count_of_project(caller.project_id)) or 0
    budgets = session.scalars(query.limit(limit).offset(offset)).all()
    scopes = scopes_of(session, budgets, now)
    return [budget_state(session, b, now, cache, scopes[b.id]) for b in budgets], total


def get_budget(session: Session, caller: Principal, budget_id: uuid.UUID) -> BudgetOut:
    return budget_state(session, _own_budget(session, caller, budget_id), utcnow())


def delete_budget(session: Session, caller: Principal, budget_id: uuid.UUID) -> None:
    session.delete(_own_budget(session, caller, budget_id))


def budgets_of_run(
    session: Session, run: Run, now: datetime, cache: ForecastCache | None = None
) -> list[BudgetOut]:
    """The budgets a run's spending counts against, in the periods that hold its start."""
    counted = []
    for budget in session.scalars(repository.budgets_over_run(run)):
        start, end = period_bounds(Period(budget.period), now)
        if (start is None or run.started_at >= start) and (end is None or run.started_at < end):
            counted.append(budget)
    scopes = scopes_of(session, counted, now)
    return [budget_state(session, b, now, cache, scopes[b.id]) for b in counted]


def run_forecast(
    session: Session,
    caller: Principal,
    run_id: uuid.UUID,
    *,
    metric: str | None,
    direction: Direction,
    epsilon_fraction: float,
) -> RunForecastOut:
    """A run's forecast: its total, its plateau and the state of the budgets over it."""
    run = get_run(session, caller, run_id)
    cache: ForecastCache = {}
    energy = _cached_forecast(session, run, cache)
    energy_reason = cache[run.id][1]
    plateau, plateau_reason = plateau_of_run(
        session, run, energy, metric=metric, direction=direction, epsilon_fraction=epsilon_fraction
    )
    return RunForecastOut(
        run_id=run.id,
        status=RunStatus(run.status),
        energy=energy,
        energy_reason=energy_reason,
        plateau=plateau,
        plateau_reason=plateau_reason,
        budgets=budgets_of_run(session, run, utcnow(), cache),
    )
