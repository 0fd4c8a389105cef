"""Units: the one home of greenaudit's conversion constants and of its number formatter.

Every stored and reported quantity carries its unit in its name (`energy_kwh`, `co2_kg`,
`duration_s`, `gpu_hours`); these constants convert between them, and :func:`format_quantity`
prints them for people (the report, the CLI, the dashboards). Nothing else in the code base
defines them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

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

#: Significant digits of a printed number, unless a caller asks for others.
SIGNIFICANT_DIGITS = 4


class Unit(NamedTuple):
    """A unit of a quantity: one base unit is ``per_base / of_base`` of it (1 kWh = 1000 Wh).

    Two exact integers rather than one float factor, so that 0.0033 kWh in Wh is computed as
    ``0.0033 * 1000``, as everyone writes it, and prints the same digits.
    """

    symbol: str
    per_base: int
    of_base: int


class Quantity(NamedTuple):
    """A kind of quantity: its base unit (the one stored, first) and its units, smallest first."""

    base: str
    units: tuple[Unit, ...]


ENERGY = Quantity(
    "kWh", (Unit("mWh", 1_000_000, 1), Unit("Wh", 1000, 1), Unit("kWh", 1, 1), Unit("MWh", 1, 1000))
)
"""Energy, stored in kWh."""
CO2 = Quantity(
    "kg CO2e",
    (
        Unit("mg CO2e", 1_000_000, 1),
        Unit("g CO2e", 1000, 1),
        Unit("kg CO2e", 1, 1),
        Unit("t CO2e", 1, 1000),
    ),
)
"""Emissions, stored in kg CO2e."""
WATER = Quantity("L", (Unit("mL", 1000, 1), Unit("L", 1, 1), Unit("m³", 1, 1000)))
"""Water, stored in litres."""
TIME = Quantity("s", (Unit("s", 1, 1), Unit("min", 1, 60), Unit("h", 1, 3600)))
"""Time, stored in seconds."""


def money(currency: str) -> Quantity:
    """Money in ``currency`` (an ISO 4217 code such as ``EUR``), scaled to thousands, millions."""
    return Quantity(
        currency,
        (
            Unit(currency, 1, 1),
            Unit(f"thousand {currency}", 1, 1000),
            Unit(f"million {currency}", 1, 1_000_000),
        ),
    )


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> str:
    """``value`` to ``digits`` significant digits, trailing zeros dropped (Python's ``g``).

    Example:
        >>> significant(0.030250000000000003), significant(1234567.0), significant(2 / 3, 3)
        ('0.03025', '1.235e+06', '0.667')
    """
    return f"{value:.{digits}g}"


def format_quantity(
    value: float,
    quantity: Quantity,
    *,
    unit: str | None = None,
    digits: int = SIGNIFICANT_DIGITS,
) -> str:
    """``value`` (in the quantity's base unit) with its unit, to ``digits`` significant digits.

    Without ``unit``, the unit is the largest in which the rounded value is at least 1
    (12.3 mWh, 30.25 Wh, 1.235 kWh; 4.95 g CO2e; 1.5 min), so a number shows 1 to 999 before
    its unit; below the smallest unit it is a fraction of it, and beyond the largest it is
    printed whole (25000 MWh). With ``unit`` (a symbol of the quantity), the value is shown in
    that unit. Zero is shown in the base unit.

    Example:
        >>> format_quantity(0.03025, ENERGY), format_quantity(0.0033, CO2, unit="g CO2e")
        ('30.25 Wh', '3.3 g CO2e')
        >>> format_quantity(5400, TIME), format_quantity(1234.56, money("EUR"))
        ('1.5 h', '1.235 thousand EUR')

    Raises:
        ValueError: ``unit`` is not a unit of ``quantity``.
    """
    if unit is not None:
        chosen = next((u for u in quantity.units if u.symbol == unit), None)
        if chosen is None:
            known = ", ".join(u.symbol for u in quantity.units)
            raise ValueError(f"{unit!r} is not a unit of {quantity.base} (one of {known})")
    elif value == 0 or not math.isfinite(value):
        chosen = next(u for u in quantity.units if u.symbol == quantity.base)
    else:
        # Largest first: the first unit in which the value, rounded, is at least one of it.
        chosen = next(
            (
                u
                for u in reversed(quantity.units)
                if abs(float(significant(value * u.per_base / u.of_base, digits))) >= 1
            ),
            quantity.units[0],
        )
    shown = value * chosen.per_base / chosen.of_base
    if unit is None and chosen is quantity.units[-1] and abs(shown) >= 10**digits:
        return f"{shown:.0f} {chosen.symbol}"
    return f"{significant(shown, digits)} {chosen.symbol}"
