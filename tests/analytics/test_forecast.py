"""Forecasts during a run: total energy from progress, and the step where the metric plateaus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greenaudit.analytics.curves import InsufficientData
from greenaudit.analytics.forecast import (
    EXPONENTIAL,
    POWER_LAW,
    forecast_energy,
    forecast_plateau,
    step_boundaries,
)

NAN = math.nan


def overhead_then_half_kwh_a_step():
    """2 kWh before step 1, then 0.5 kWh a step; each step is logged in the middle of a sample.

    Sample 0 holds the 2 kWh overhead and the first half of step 1 (2.25 kWh, no step yet);
    sample k holds the second half of step k and the first half of step k + 1 (0.5 kWh) and
    ends with step k logged. Energy when step k is done: 2 + 0.5k.
    """
    return [NAN, 1, 2, 3, 4], [2.25, 0.5, 0.5, 0.5, 0.5]


def test_boundaries_are_the_energy_in_the_middle_of_the_sample_a_new_step_appears_in():
    steps, kwh = step_boundaries(*overhead_then_half_kwh_a_step())
    # Step 1: 2.25 before its sample + 0.25 = 2.5; then 3.0, 3.5, 4.0, that is 2 + 0.5k.
    assert steps.tolist() == [1, 2, 3, 4]
    assert kwh.tolist() == [2.5, 3.0, 3.5, 4.0]


def test_overhead_then_a_constant_rate_forecasts_overhead_plus_rate_times_total():
    steps, kwh = overhead_then_half_kwh_a_step()
    f = forecast_energy(steps, kwh, total_steps=10, pace_drift=0.0)
    # Rate (4.0 − 2.5)/(4 − 1) = 0.5: the 2 kWh overhead is not in it. Forecast at step 4:
    # 4.0 + 0.5 × 6 = 7.0 = 2 + 0.5 × 10. Every increment is exactly 0.5: no spread at all.
    assert f.kwh_per_step == 0.5
    assert f.forecast_kwh == 7.0
    assert f.low_kwh == f.high_kwh == 7.0
    # The default floor for a change of pace to come: 5% of the rate ahead, 0.05 × 0.5 × 6 =
    # 0.15 kWh of sd, times t(0.975, 2 dof) = 4.3027 (3 increments, 3 blocks): ±0.6454.
    floored = forecast_energy(steps, kwh, total_steps=10)
    assert floored.forecast_kwh == 7.0
    assert floored.high_kwh == pytest.approx(7.0 + 0.64540, abs=1e-5)
    assert floored.low_kwh == pytest.approx(7.0 - 0.64540, abs=1e-5)
    assert f.spent_kwh == 4.25 and f.step == 4 and f.total_steps == 10
    assert f.progress == 0.4 and f.boundaries == 4 and f.confidence == 0.95
    # The same run planned for 100 steps: 2 + 0.5 × 100 = 52.
    assert forecast_energy(steps, kwh, total_steps=100).forecast_kwh == 52.0


def test_samples_of_other_ranks_count_as_spent_and_in_the_rate_but_make_no_boundary():
    # The run above (rank 0) plus a rank that never logs (NaN steps), 0.1 kWh a sample, each
    # sample ending just after one of rank 0's. A step now costs 0.5 + 0.1 = 0.6 kWh.
    steps = [NAN, NAN, 1, NAN, 2, NAN, 3, NAN, 4, NAN]
    kwh = [2.25, 0.1, 0.5, 0.1, 0.5, 0.1, 0.5, 0.1, 0.5, 0.1]
    f = forecast_energy(steps, kwh, total_steps=10, pace_drift=0.0)
    # Boundaries: step 1 at 2.25 + 0.1 + 0.25 = 2.6, then 3.2, 3.8, 4.4; rate 1.8/3 = 0.6.
    # Forecast 4.4 + 0.6 × 6 = 8.0; spent 2.25 + 4 × 0.5 + 5 × 0.1 = 4.75.
    assert f.boundaries == 4
    assert f.kwh_per_step == pytest.approx(0.6, rel=1e-12)
    assert f.forecast_kwh == pytest.approx(8.0, rel=1e-12)
    assert f.spent_kwh == pytest.approx(4.75, rel=1e-12)
    assert f.high_kwh - f.low_kwh == pytest.approx(0.0, abs=1e-9)


def test_a_rank_reporting_an_older_step_adds_no_boundary():
    steps, kwh = step_boundaries([1, 2, 1, 2, 3], [1.0, 1.0, 1.0, 1.0, 1.0])
    # New highest steps at samples 0, 1 and 4: 0.5, 1.5 and 4.5 kWh.
    assert steps.tolist() == [1, 2, 3] and kwh.tolist() == [0.5, 1.5, 4.5]


def step_energies_to_samples(overhead, per_step):
    """Samples of a run whose step k costs per_step[k-1], each step logged mid-sample.

    Sample 0: overhead + half of step 1; sample k: the second half of step k and the first
    half of step k + 1, step k logged; the last sample: the second half of the last step.
    """
    halves = np.asarray(per_step) / 2
    kwh = np.r_[overhead + halves[0], halves[:-1] + halves[1:], halves[-1]]
    steps = np.r_[NAN, np.arange(1, len(per_step) + 1)]
    return steps, kwh


def test_a_noisy_run_has_its_final_energy_inside_the_interval():
    rng = np.random.default_rng(8)
    total = 200
    per_step = 0.5 + rng.normal(0, 0.1, total)  # 0.5 kWh a step, 20% noise
    steps, kwh = step_energies_to_samples(2.0, per_step)
    truth = float(kwh.sum())  # 2 + Σ per_step, about 102 kWh
    f = forecast_energy(steps[:61], kwh[:61], total, pace_drift=0.0)  # at step 60, 30% done
    assert f.step == 60 and f.progress == pytest.approx(0.3)
    assert f.low_kwh < truth < f.high_kwh
    # Remaining 140 steps after 59 increments (7 blocks, t quantile 2.447 on 6 degrees of
    # freedom): the true σ = 0.1 a step would give 2.447 × 0.1 × √(140 + 140²/59) ≈ 5.3 kWh of
    # half-width, on a forecast of about 102 kWh; σ from 7 blocks is itself uncertain.
    assert 2.0 < (f.high_kwh - f.low_kwh) / 2 < 9.0
    assert abs(f.forecast_kwh - truth) / truth < 0.05


def test_the_spread_is_taken_between_blocks_of_increments():
    # Samples 0.4, 0.4, 0.8, 0.4, 1.2 kWh with steps 1 to 5 after 2 kWh: boundaries 2.2, 2.6,
    # 3.2, 3.8, 4.6, increments 0.4, 0.6, 0.6, 0.8 kWh of one step each. Rate 2.4/4 = 0.6.
    f = forecast_energy(
        [NAN, 1, 2, 3, 4, 5], [2.0, 0.4, 0.4, 0.8, 0.4, 1.2], total_steps=10, pace_drift=0.0
    )
    # 4 increments make ⌊√4⌋ = 2 blocks: 1.0 and 1.4 kWh over 2 steps each, residuals ∓0.2,
    # σ² = (0.04/2 + 0.04/2)/(2 − 1) = 0.04. R = 5, S = 4: Var = 0.04 × (5 + 25/4) = 0.45.
    # t(0.975, 1 dof) = 12.7062, half-width 12.7062 × √0.45 = 8.5236 around 4.6 + 0.6 × 5 = 7.6.
    assert f.forecast_kwh == pytest.approx(7.6, rel=1e-12)
    assert f.high_kwh == pytest.approx(7.6 + 8.5236, abs=1e-4)
    assert f.low_kwh == pytest.approx(5.2, rel=1e-12)  # 7.6 − 8.52 < 0: the spent 5.2 instead


def test_the_interval_covers_the_truth_about_as_often_as_it_says():
    rng = np.random.default_rng(11)
    total, covered, trials = 100, 0, 2000
    for _ in range(trials):
        per_step = 0.5 * rng.gamma(25, 1 / 25, total)  # mean 0.5, 20% noise, positive
        steps, kwh = step_energies_to_samples(2.0, per_step)
        f = forecast_energy(steps[:31], kwh[:31], total, pace_drift=0.0)
        covered += f.low_kwh <= kwh.sum() <= f.high_kwh
    # Nominal 95%. Adjacent increments share a sample, so they are correlated; the spread is
    # taken between blocks of them (batch means), and this seeded simulation gives 94.4%
    # (seeds 12 and 13: 93.3%, 94.4%). From single increments it was 76%.
    assert 0.92 <= covered / trials <= 0.98


def test_one_boundary_takes_the_rate_from_the_start_with_a_wide_interval():
    # 2.25 kWh with no step, then a sample of 0.5 kWh in which step 1 appears.
    f = forecast_energy([NAN, 1], [2.25, 0.5], total_steps=10)
    # Boundary: step 1 at 2.25 + 0.25 = 2.5 kWh; rate 2.5 kWh a step (overhead included).
    # Forecast 2.5 + 2.5 × 9 = 25; interval from the spent 2.75 to 2.5 + 2 × 2.5 × 9 = 47.5.
    assert f.boundaries == 1 and f.kwh_per_step == 2.5
    assert f.forecast_kwh == 25.0
    assert f.low_kwh == 2.75 and f.high_kwh == 47.5


def test_two_boundaries_give_the_rate_without_a_spread():
    f = forecast_energy([NAN, 1, 2], [2.25, 0.5, 0.5], total_steps=10)
    # Boundaries 2.5 and 3.0: rate 0.5; forecast 3.0 + 0.5 × 8 = 7; from 3.0 (spent 3.25)
    # to 3.0 + 2 × 0.5 × 8 = 11.
    assert f.forecast_kwh == 7.0 and f.low_kwh == 3.25 and f.high_kwh == 11.0


def test_no_step_yet_is_insufficient_data():
    with pytest.raises(InsufficientData, match="no training step"):
        forecast_energy([NAN, NAN], [1.0, 1.0], total_steps=10)
    with pytest.raises(InsufficientData):
        forecast_energy([], [], total_steps=10)
    # A first run.log defaults to step 0: nothing is complete, so there is no rate yet (not an
    # infinite upper end and a NaN rate, which JSON cannot carry).
    with pytest.raises(InsufficientData, match="only step 0"):
        forecast_energy([0, 0, 0], [1.0, 1.0, 1.0], total_steps=10)
    assert forecast_energy([0, 0, 2], [1.0, 1.0, 1.0], total_steps=10).kwh_per_step > 0


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="total_steps"):
        forecast_energy([1], [1.0], total_steps=0)
    with pytest.raises(ValueError, match="same length"):
        forecast_energy([1, 2], [1.0], total_steps=10)
    with pytest.raises(ValueError, match="confidence"):
        forecast_energy([1], [1.0], total_steps=10, confidence=1.0)


def test_at_or_past_the_planned_steps_the_forecast_is_what_was_spent():
    steps, kwh = overhead_then_half_kwh_a_step()
    for total in (4, 3):
        f = forecast_energy(steps, kwh, total_steps=total)
        # Step 4 of 4 (or of 3): done. Spent 2.25 + 4 × 0.5 = 4.25.
        assert f.forecast_kwh == f.low_kwh == f.high_kwh == 4.25
        assert f.progress == 1.0
    one = forecast_energy([NAN, 5], [2.25, 0.5], total_steps=5)
    assert one.forecast_kwh == one.low_kwh == one.high_kwh == 2.75


def test_the_forecast_is_never_below_what_was_spent():
    # Step 9 of 10 at 5.5 kWh, then a sample of 3 kWh still at step 9 (an evaluation pass).
    f = forecast_energy([NAN, 8, 9, 9], [4.5, 1.0, 1.0, 3.0], total_steps=10)
    # Boundaries 5.0 and 6.0: rate 1; 6.0 + 1 × 1 = 7.0 < spent 9.5.
    assert f.forecast_kwh == 9.5 and f.low_kwh == 9.5 and f.high_kwh >= 9.5


def saturating(step):
    return 0.9 - 0.5 * np.exp(-np.asarray(step, dtype=float) / 20)


def test_plateau_of_an_exponential_learning_curve():
    steps = np.arange(5, 61, 5)
    p = forecast_plateau(steps, saturating(steps), 200, kwh_per_step=0.02)
    # Observed from s(5) = 0.9 − 0.5·e^(−0.25) = 0.510600; forecast s(200) = 0.9 − 0.5·e^(−10)
    # = 0.899977. Range 0.389378, ε = 0.005 × range = 0.0019469. The gain left after step k is
    # 0.5·(e^(−k/20) − e^(−10)) < ε when e^(−k/20) < 2ε + e^(−10) = 0.0039392, that is
    # k > −20·ln(0.0039392) = 110.74: the plateau is step 111, s(111) = 0.898056.
    assert p.model == EXPONENTIAL
    assert p.step == 111
    assert p.epsilon == pytest.approx(0.0019469, rel=1e-4)
    assert p.value == pytest.approx(0.898056, abs=1e-5)
    assert p.final_value == pytest.approx(0.899977, abs=1e-5)
    # 200 − 111 = 89 steps after it, at 0.02 kWh a step: 1.78 kWh. Latest step 60: not yet.
    assert p.steps_after == 89 and p.energy_after_kwh == pytest.approx(1.78)
    assert not p.passed


def test_a_plateau_already_behind_the_run_is_passed():
    steps = np.arange(5, 151, 5)
    p = forecast_plateau(steps, saturating(steps), 200, kwh_per_step=0.02)
    # Observed from s(5) as before; the range and ε are the same, so is the plateau step.
    assert p.step == 111 and p.passed


def test_plateau_of_a_power_law_curve():
    steps = np.arange(4, 101, 4)
    values = 0.95 - 0.4 * steps**-0.5
    p = forecast_plateau(steps, values, 1000, kwh_per_step=1.0)
    # s(4) = 0.75, s(1000) = 0.937351: ε = 0.005 × 0.187351 = 0.00093675. The gain left after
    # k is 0.4·(k^(−1/2) − 1000^(−1/2)) < ε when k^(−1/2) < 0.0339647, k > 866.85: step 867.
    assert p.model == POWER_LAW
    assert p.step == 867 and p.steps_after == 133
    assert p.energy_after_kwh == pytest.approx(133.0)


def test_plateau_of_a_falling_loss():
    steps = np.arange(10, 91, 10)
    losses = 0.2 + 1.5 * np.exp(-steps / 30)
    p = forecast_plateau(steps, losses, 300, kwh_per_step=0.5, higher_is_better=False)
    # From l(10) = 1.274797 down to l(300) = 0.200068: ε = 0.005 × 1.074729 = 0.0053736. The
    # fall left after k is 1.5·(e^(−k/30) − e^(−10)) < ε when k > 168.57: step 169.
    assert p.model == EXPONENTIAL
    assert p.step == 169 and p.steps_after == 131
    assert p.energy_after_kwh == pytest.approx(65.5)


def test_plateau_needs_four_points_at_positive_steps():
    with pytest.raises(InsufficientData, match="at least 4"):
        forecast_plateau([0, 10, 20, 30], [0.1, 0.5, 0.7, 0.8], 100, kwh_per_step=1.0)
    with pytest.raises(InsufficientData, match="same step"):
        forecast_plateau([5, 5, 5, 5], [0.1, 0.5, 0.7, 0.8], 100, kwh_per_step=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        forecast_plateau([1, 2, 3, 4], [0.1, 0.5, 0.7, 0.8], 0, kwh_per_step=1.0)


def test_many_steps_in_one_sample_put_the_last_near_its_end():
    # 3 steps completed in the second sample: the third is 3/4 of the way through it.
    steps, kwh = step_boundaries([1, 4], [1.0, 2.0])
    # Step 1: the first known step, counted from step 0, so k = 1: 0 + 1.0 / 2 = 0.5.
    # Step 4: k = 3 after step 1: 1.0 + 2.0 × 3/4 = 2.5.
    assert steps.tolist() == [1, 4] and kwh.tolist() == [0.5, 2.5]


def test_spells_of_another_pace_widen_the_interval_beyond_the_step_noise():
    # One step per sample, 17 steps: spells of four samples at 1 kWh and at 2 kWh.
    kwh = [1.0] * 4 + [2.0] * 4 + [1.0] * 4 + [2.0] * 4 + [1.0]
    f = forecast_energy(list(range(1, 18)), kwh, total_steps=64, pace_drift=0.0)
    # Increments (k_j + k_j+1)/2; 16 of them in 4 blocks of 4 steps: 4.5, 7.5, 4.5, 7.5 kWh.
    # Rate 24/16 = 1.5. Point: 24 + 0.5 at step 17, + 1.5 × 47 = 95.0.
    assert f.kwh_per_step == 1.5 and f.forecast_kwh == pytest.approx(95.0)
    # σ² = 4 × 1.5²/4 / 3 = 0.75. Block rates 1.125, 1.875, ...: successive differences of
    # 0.75, ½ × 0.5625 = 0.28125, of which σ²/4 = 0.1875 is step noise: 0.09375 lasts.
    # Var = 0.75 × (47 + 47²/16) + 0.09375 × 47² = 138.796875 + 207.09375 = 345.890625;
    # half-width t(0.975, 3) = 3.182446 × 18.59813 = 59.1875 (37.49 from the noise alone).
    assert f.high_kwh - f.forecast_kwh == pytest.approx(59.1875, abs=1e-3)
    assert f.forecast_kwh - f.low_kwh == pytest.approx(59.1875, abs=1e-3)
