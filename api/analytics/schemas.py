"""Analytics queries' axes; the answers are the wire models of greenaudit.schemas.analytics."""

from __future__ import annotations

from enum import Enum

from greenaudit.schemas.analytics import (
    DEFAULT_DIRECTION,
    Axis,
    CurvePoint,
    DiminishingReturnsOut,
    Direction,
    FitOut,
    GroupBy,
    MarginalCostOut,
    MarginalGainOut,
    NofadeGroup,
    NofadeOut,
    NofadeRun,
    ParameterOut,
    PlateauOut,
    ProjectionOut,
    ReturnsOut,
    RunPoint,
    Thresholds,
)

__all__ = [
    "AXIS_UNITS",
    "DEFAULT_DIRECTION",
    "Axis",
    "CostAxis",
    "CurvePoint",
    "DiminishingReturnsOut",
    "Direction",
    "FitOut",
    "GroupBy",
    "MarginalCostOut",
    "MarginalGainOut",
    "NofadeAxis",
    "NofadeGroup",
    "NofadeOut",
    "NofadeRun",
    "ParameterOut",
    "PlateauOut",
    "ProjectionOut",
    "ReturnsAxis",
    "ReturnsOut",
    "RunPoint",
    "Thresholds",
]


class CostAxis(str, Enum):
    co2_kg = "co2_kg"
    energy_kwh = "energy_kwh"
    gpu_hours = "gpu_hours"
    flops = "flops"
    model_params = "model_params"
    dataset_size = "dataset_size"


class NofadeAxis(str, Enum):
    co2_kg = "co2_kg"
    energy_kwh = "energy_kwh"
    gpu_hours = "gpu_hours"
    flops = "flops"


class ReturnsAxis(str, Enum):
    energy_kwh = "energy_kwh"
    co2_kg = "co2_kg"


AXIS_UNITS = {
    "co2_kg": "kg CO2e",
    "energy_kwh": "kWh",
    "gpu_hours": "GPU-hours",
    "flops": "FLOPs",
    "model_params": "parameters",
    "dataset_size": "training samples",
}
