"""Budgets and forecasts as the service answers them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum

from pydantic import BaseModel, Field

from .base import RunStatus


class Period(str, Enum):
    """What a budget covers: the scope's whole life, or the current UTC calendar period."""

    all = "all"
    day = "day"
    week = "week"
    month = "month"


class Amount(BaseModel):
    """Energy and CO2 together."""

    kwh: float
    kg_co2: float


class BudgetOut(BaseModel):
    """A budget with what its scope has spent, what it is forecast to spend, and what is left.

    ``forecast`` is ``spent`` plus the forecast remainder of the scope's running runs that
    report their planned ``total_steps``; a running run without one counts with what it has
    spent so far (``running_without_forecast`` says how many).
    """

    id: uuid.UUID
    group: str | None
    period: Period
    period_start: datetime | None
    period_end: datetime | None
    limit_kg_co2: float | None
    limit_kwh: float | None
    spent: Amount
    forecast: Amount
    forecast_high: Amount = Field(description="the upper ends of the running runs' intervals")
    remaining_kg_co2: float | None = Field(description="limit - spent; negative once exceeded")
    remaining_kwh: float | None
    exceeded: bool = Field(description="spent has crossed a limit")
    forecast_exceeded: bool = Field(description="the forecast crosses a limit")
    runs: int
    running_runs: int
    running_without_forecast: int
    created_at: datetime
    updated_at: datetime


class EnergyForecastOut(BaseModel):
    """A running run's total, forecast from its progress (``run.set(total_steps=...)``)."""

    step: int = Field(description="steps done at the latest step boundary")
    total_steps: int
    progress: float = Field(description="step / total_steps")
    spent_kwh: float
    spent_kg_co2: float
    forecast_kwh: float
    low_kwh: float
    high_kwh: float
    forecast_kg_co2: float
    low_kg_co2: float
    high_kg_co2: float
    kwh_per_step: float
    confidence: float = Field(description="of the interval [low, high]")
    boundaries: int = Field(description="step boundaries the rate was estimated from")


class PlateauForecastOut(BaseModel):
    """Where the metric is forecast to stop gaining more than ε, and what comes after it."""

    metric: str
    step: int
    value: float
    final_value: float = Field(description="the forecast value at total_steps")
    epsilon: float
    passed: bool = Field(description="the run is at or past the forecast plateau")
    steps_after: int
    energy_after_kwh: float = Field(description="forecast energy from the plateau to the end")
    co2_after_kg: float
    model: str = Field(description="the curve fitted to the metric against the step")


class RunForecastOut(BaseModel):
    """A run's forecast total, its forecast plateau and the budgets it counts against."""

    run_id: uuid.UUID
    status: RunStatus
    energy: EnergyForecastOut | None
    energy_reason: str | None = Field(description="why there is no energy forecast")
    plateau: PlateauForecastOut | None
    plateau_reason: str | None = Field(description="why there is no plateau forecast")
    budgets: list[BudgetOut]
