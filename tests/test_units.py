"""greenaudit.units.format_quantity: auto-scaled units and significant digits, worked by hand."""

from __future__ import annotations

import pytest

from greenaudit.units import CO2, ENERGY, TIME, WATER, format_quantity, money, significant


@pytest.mark.parametrize(
    ("kwh", "shown"),
    [
        (0.0000123, "12.3 mWh"),  # 1.23e-5 kWh x 1e6 mWh/kWh
        (0.055, "55 Wh"),
        (0.03025, "30.25 Wh"),
        (1.23456, "1.235 kWh"),
        (0.99996, "1 kWh"),  # 999.96 Wh rounds to 1000 Wh: one kWh, not "1000 Wh"
        (12346.0, "12.35 MWh"),
        (2.5e7, "25000 MWh"),  # past the largest unit: whole, not 2.5e+04
        (2e-10, "0.0002 mWh"),  # below the smallest unit: a fraction of it
        (-0.0015, "-1.5 Wh"),
        (0.0, "0 kWh"),
    ],
)
def test_energy_is_scaled_from_mwh_to_mwh(kwh: float, shown: str):
    assert format_quantity(kwh, ENERGY) == shown


@pytest.mark.parametrize(
    ("kg", "shown"),
    [
        (0.00495, "4.95 g CO2e"),  # the group report's 0.0825 kWh at 60 g/kWh
        (2e-7, "0.2 mg CO2e"),
        (3.3e-6, "3.3 mg CO2e"),
        (0.75, "750 g CO2e"),
        (1500.0, "1.5 t CO2e"),
    ],
)
def test_co2_is_scaled_from_mg_to_t(kg: float, shown: str):
    assert format_quantity(kg, CO2) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(45.0, "45 s"), (90.0, "1.5 min"), (5400.0, "1.5 h"), (59.99, "59.99 s"), (59.9999, "1 min")],
)
def test_time_is_scaled_from_s_to_h(seconds: float, shown: str):
    assert format_quantity(seconds, TIME) == shown


def test_water_and_money():
    assert format_quantity(0.25, WATER) == "250 mL"
    assert format_quantity(1500.0, WATER) == "1.5 m³"
    assert format_quantity(0.0123456, money("EUR")) == "0.01235 EUR"
    assert format_quantity(12.5, money("USD")) == "12.5 USD"
    assert format_quantity(1234.56, money("USD")) == "1.235 thousand USD"
    assert format_quantity(2.5e6, money("USD")) == "2.5 million USD"


def test_fixed_unit_and_digits():
    # The dashboards print a run's energy in Wh: 0.0033 kWh x 1000.
    assert format_quantity(0.0033, ENERGY, unit="Wh") == "3.3 Wh"
    assert format_quantity(12.0, ENERGY, unit="Wh") == "1.2e+04 Wh"
    assert format_quantity(1.23456, ENERGY, digits=3) == "1.23 kWh"
    assert format_quantity(5400.0, TIME, unit="s") == "5400 s"
    with pytest.raises(ValueError, match="'g' is not a unit of kWh"):
        format_quantity(1.0, ENERGY, unit="g")


def test_significant_digits_are_pythons_g():
    assert significant(0.030250000000000003) == "0.03025"
    assert significant(1234567.0) == "1.235e+06"
    assert significant(1 / 3) == "0.3333"
    assert significant(2 / 3, 3) == "0.667"
    assert significant(12) == "12"
