"""Totals per project, model or dataset, as the service answers them."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class TotalsBy(str, Enum):
    project = "project"
    model = "model"
    dataset = "dataset"


class TotalsRow(BaseModel):
    """What one project, model or dataset has cost, over the runs that match the filters."""

    key: str | None = Field(description="project name, model or dataset; null when unset")
    runs: int
    energy_kwh: float
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    co2_kg: float
    gpu_hours: float
    duration_s: float = Field(description="summed wall-clock time of the runs that ended")
    j_per_sample: float | None = Field(
        description="joules per processed sample over the runs that reported samples_processed"
    )


class TotalsOut(BaseModel):
    by: TotalsBy
    rows: list[TotalsRow]
