"""Budgets over the wire: what a client sends; the answers are greenaudit.schemas.budgets."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from greenaudit.schemas import Name, WireModel
from greenaudit.schemas.budgets import (
    Amount,
    BudgetOut,
    EnergyForecastOut,
    Period,
    PlateauForecastOut,
    RunForecastOut,
)

__all__ = [
    "Amount",
    "BudgetIn",
    "BudgetOut",
    "EnergyForecastOut",
    "Limit",
    "Period",
    "PlateauForecastOut",
    "RunForecastOut",
]

Limit = Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]


class BudgetIn(WireModel):
    """A budget for the project (no ``group``) or for one group of its runs."""

    group: Name | None = Field(
        default=None, description="a sweep, search or federated round; none: the whole project"
    )
    period: Period = Field(
        default=Period.all,
        description="'all': the scope's whole life; 'day', 'week' (from Monday), 'month': the "
        "current UTC calendar period. A run counts in the period in which it started.",
    )
    limit_kg_co2: Limit | None = Field(default=None, description="kg CO2e")
    limit_kwh: Limit | None = Field(default=None, description="kWh")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"group": "nas-2026-12", "period": "all", "limit_kg_co2": 25.0}]
        },
    )

    @model_validator(mode="after")
    def _has_a_limit(self) -> BudgetIn:
        if self.limit_kg_co2 is None and self.limit_kwh is None:
            raise ValueError("give limit_kg_co2, limit_kwh or both")
        return self
