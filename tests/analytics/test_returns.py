"""Returns within one run: cumulative energy at each point, the plateau, the energy after it."""

from __future__ import annotations

import numpy as np
import pytest

from greenaudit.analytics.curves import InsufficientData
from greenaudit.analytics.returns import cumulative_at, find_plateau, returns_curve


def test_cumulative_energy_interpolates_within_samples_and_sums_ranks():
    # Rank 0: 1 kWh over [0, 10] s and 3 kWh over [10, 20] s; rank 1: 2 kWh over [0, 20] s.
    starts, ends = [0, 10, 0], [10, 20, 20]
    kwh, ranks = [1.0, 3.0, 2.0], [0, 0, 1]
    at = cumulative_at([0, 5, 10, 15, 25], starts, ends, kwh, ranks)
    # t=5: 0.5 + 0.5; t=10: 1 + 1; t=15: 2.5 + 1.5; t=25: 4 + 2.
    assert at.tolist() == pytest.approx([0.0, 1.0, 2.0, 4.0, 6.0])


def test_gaps_between_samples_add_nothing():
    at = cumulative_at([12, 15, 18], [0, 20], [10, 30], [1.0, 1.0])
    assert at.tolist() == pytest.approx([1.0, 1.0, 1.0])


def synthetic_run(epochs: int = 20, plateau_epoch: int = 8):
    """Accuracy rises by 0.05 an epoch to epoch 8, then by 0.0001; 1 kWh and 0.5 kg an epoch."""
    values = []
    accuracy = 0.5
    for epoch in range(epochs):
        accuracy += 0.05 if epoch < plateau_epoch else 0.0001
        values.append(accuracy)
    times = np.arange(1, epochs + 1) * 60.0  # a point at the end of each epoch
    starts, ends = np.arange(epochs) * 60.0, np.arange(1, epochs + 1) * 60.0
    return (
        np.arange(1, epochs + 1),
        times,
        np.array(values),
        starts,
        ends,
        np.ones(epochs),
        np.full(epochs, 0.5),
    )


def test_a_known_plateau_and_the_energy_spent_after_it():
    steps, times, values, starts, ends, kwh, co2 = synthetic_run()
    curve = returns_curve(steps, times, values, starts, ends, kwh, co2)
    # Values run from 0.55 to 0.9012: range 0.3512, ε = 0.001756. After epoch 8 (index 7) the
    # rest gains 12 × 0.0001 = 0.0012 < ε; after epoch 7 it would still gain 0.05 more.
    plateau = curve.plateau
    assert plateau.step == 8 and plateau.value == pytest.approx(0.9)
    assert plateau.epsilon == pytest.approx(0.005 * 0.3512, rel=1e-9)
    assert plateau.energy_kwh == pytest.approx(8.0)
    assert plateau.energy_after_kwh == pytest.approx(12.0)
    assert plateau.co2_after_kg == pytest.approx(6.0)
    assert plateau.share_of_energy_after == pytest.approx(0.6)
    assert plateau.gain_after == pytest.approx(0.0012)
    assert plateau.summary.startswith(
        "the last 60% of the energy (12 kWh, 6000 g CO2e) bought 0.12"
    )
    assert curve.total_energy_kwh == 20.0 and curve.energy_kwh.tolist()[:3] == [1.0, 2.0, 3.0]
    assert curve.fits is not None and curve.fits.best is not None
    assert curve.marginal_gain is not None and curve.marginal_gain.per_kwh >= 0


def test_plateau_for_lower_is_better_metrics():
    losses = [2.0, 1.0, 0.5, 0.49, 0.489, 0.4889]
    index, epsilon = find_plateau(losses, higher_is_better=False)
    # ε = 0.005 × 1.5111 = 0.00756; after index 2 the loss falls 0.0111 more, after 3 only 0.0011.
    assert epsilon == pytest.approx(0.005 * (2.0 - 0.4889))
    assert index == 3


def test_a_constant_metric_plateaus_at_once():
    assert find_plateau([0.7, 0.7, 0.7]) == (0, 0.0)


def test_the_plateau_is_the_first_point_within_epsilon_of_the_final_best():
    rng = np.random.default_rng(5)
    for _ in range(200):
        values = np.cumsum(rng.normal(0.01, 0.05, 50))
        index, epsilon = find_plateau(values)
        best = np.maximum.accumulate(values)
        remaining = best[-1] - best
        # By the definition: the remaining gain is below ε from here on, and not just before.
        assert np.all(remaining[index:] < epsilon)
        assert index == 0 or remaining[index - 1] >= epsilon


def test_runs_without_points_or_energy_say_so():
    with pytest.raises(InsufficientData, match="no points"):
        returns_curve([], [], [], [0], [1], [1.0], [1.0])
    with pytest.raises(InsufficientData, match="no energy"):
        returns_curve([1], [1.0], [0.5], [], [], [], [])
