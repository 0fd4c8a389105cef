"""Analytics queries' axes; the answers are the wire models of greenaudit.schemas.analytics."""

from __future__ import annotations

from enum import Enum

# Re-exported for the services that pick a direction; the wire models live in
# greenaudit.schemas.analytics and are imported from there.
from greenaudit.schemas.analytics import DEFAULT_DIRECTION, Direction

__all__ = ["AXIS_UNITS", "DEFAULT_DIRECTION", "CostAxis", "Direction", "NofadeAxis", "ReturnsAxis"]


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
