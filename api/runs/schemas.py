"""Run queries; the answers are the wire models of greenaudit.schemas.runs."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field

from greenaudit.schemas import Name, RunKind, RunStatus, UtcDatetime
from greenaudit.schemas.runs import (
    Cost,
    CostOfRun,
    CreationCostOut,
    EnergySampleOut,
    MetricPointOut,
    RunOut,
    RunTotals,
)

__all__ = [
    "Cost",
    "CostOfRun",
    "CreationCostOut",
    "EnergySampleOut",
    "MetricPointOut",
    "RunFilters",
    "RunOut",
    "RunSort",
    "RunTotals",
    "SortOrder",
]


class RunSort(str, Enum):
    started_at = "started_at"
    co2_kg = "co2_kg"
    energy_kwh = "energy_kwh"
    model = "model"
    dataset = "dataset"
    name = "name"
    status = "status"


class SortOrder(str, Enum):
    asc = "asc"
    desc = "desc"


class RunFilters(BaseModel):
    """Filters shared by run lists and totals. Every filter is an exact match."""

    project: Name | None = Field(default=None, description="project id or name (the key's own)")
    model: Name | None = None
    dataset: Name | None = None
    task: Name | None = None
    status: RunStatus | None = None
    group: Name | None = None
    kind: RunKind | None = None
    started_after: UtcDatetime | None = Field(
        default=None, description="inclusive, ISO 8601 with a timezone"
    )
    started_before: UtcDatetime | None = Field(
        default=None, description="exclusive, ISO 8601 with a timezone"
    )
