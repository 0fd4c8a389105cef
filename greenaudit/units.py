"""Units: the one home of greenaudit's conversion constants.

Every stored and reported quantity carries its unit in its name (`energy_kwh`, `co2_kg`,
`duration_s`, `gpu_hours`); these constants convert between them. Nothing else in the code base
defines them.
"""

from __future__ import annotations

G_PER_KG = 1000.0
"""Grams in a kilogram (carbon intensities are in g CO2e/kWh, emissions in kg)."""

J_PER_KWH = 3.6e6
"""Joules in a kilowatt-hour (1 kW x 3600 s)."""

MJ_PER_KWH = 3.6e9
"""Millijoules in a kilowatt-hour (NVML's energy counter counts millijoules)."""

WH_PER_KWH = 1000.0
"""Watt-hours in a kilowatt-hour."""

SECONDS_PER_HOUR = 3600.0
"""Seconds in an hour (GPU-seconds to GPU-hours)."""
