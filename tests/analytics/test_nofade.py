"""NoFADE greenaudit-1: the properties ANALYTICS.md asks tests to pin, with hand-checked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greenaudit.analytics.entropy import label_entropy_bits, uniform_entropy_bits
from greenaudit.analytics.nofade import (
    SaturationThresholds,
    fano_residual_bits,
    metric_kind,
    nofade_score,
    rho,
    saturation,
)


@pytest.mark.parametrize("k", [2, 3, 10, 100, 1000])
def test_entropy_of_a_uniform_distribution_is_log2_k(k: int):
    assert uniform_entropy_bits(k) == pytest.approx(math.log2(k), abs=1e-12)
    assert label_entropy_bits([7] * k) == pytest.approx(math.log2(k), abs=1e-12)


@pytest.mark.parametrize("k", [2, 3, 10, 21, 1000])
def test_rho_is_zero_at_chance_and_one_at_perfect_accuracy(k: int):
    h = math.log2(k)
    at_chance = rho(1 / k, h, k)
    assert at_chance.value == pytest.approx(0.0, abs=1e-12)
    assert fano_residual_bits(1 / k, k) == pytest.approx(h, abs=1e-12)
    assert rho(1.0, h, k).value == 1.0


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_rho_is_non_decreasing_above_chance(k: int):
    h = math.log2(k)
    accuracies = np.linspace(1 / k, 1.0, 2001)
    values = np.array([rho(float(a), h, k).value for a in accuracies])
    assert np.all(np.diff(values) >= -1e-12)
    assert values[0] == pytest.approx(0, abs=1e-12) and values[-1] == 1.0


def by_hand(accuracy: float, k: int) -> tuple[float, float]:
    """R and ρ straight from the formulas, for a uniform dataset of K classes."""
    e = 1 - accuracy
    h2 = -e * math.log2(e) - (1 - e) * math.log2(1 - e)
    residual = h2 + e * math.log2(k - 1)
    h = math.log2(k)
    return residual, (h - residual) / h


def test_hand_checked_values():
    # K = 10, a = 0.95: h2(0.05) = 0.05·4.3219 + 0.95·0.0740 = 0.2864;
    # 0.05·log2 9 = 0.1585; R = 0.4449 bits; ρ = (3.3219 − 0.4449) / 3.3219 = 0.8661.
    residual, expected = by_hand(0.95, 10)
    assert round(residual, 4) == 0.4449 and round(expected, 4) == 0.8661
    ten = rho(0.95, math.log2(10), 10)
    assert round(ten.residual_bits, 4) == 0.4449 and round(ten.value, 4) == 0.8661
    # K = 1000, a = 0.76: ρ = 0.6803, so 76% on 1000 classes sits below 95% on 10.
    _, expected = by_hand(0.76, 1000)
    assert round(expected, 4) == 0.6803
    assert round(rho(0.76, math.log2(1000), 1000).value, 4) == 0.6803


def test_rho_on_an_imbalanced_dataset_is_clamped():
    # p = (0.9, 0.1): H = 0.4690 bits. At a = 0.9 (always guessing the majority class) Fano
    # allows R = h2(0.1) = 0.4690 bits, so nothing is provably resolved: ρ = 0.
    h = label_entropy_bits([90, 10])
    assert h == pytest.approx(0.468996, abs=1e-6)
    assert rho(0.9, h, 2).value == pytest.approx(0.0, abs=1e-12)
    assert rho(0.5, h, 2).value == 0.0  # R > H is clamped, never negative
    assert rho(1.0, h, 2).value == 1.0


def test_which_metrics_have_rho():
    assert metric_kind("accuracy") == "exact" and metric_kind("top-1") == "exact"
    assert metric_kind("mIoU") == "approximate" and metric_kind("AP") == "approximate"
    approx = rho(0.5, 1.0, 2, metric="mIoU")
    assert approx.approximate and approx.value == pytest.approx(0.0, abs=1e-12)
    loss = rho(0.3, 1.0, 2, metric="loss")
    assert loss.value is None and "loss" in (loss.reason or "")
    percent = rho(76.0, 1.0, 2, metric="accuracy")
    assert percent.value is None and "not a rate in [0, 1]" in (percent.reason or "")
    single = rho(1.0, 0.0, 1)
    assert single.value is None and "single class" in (single.reason or "")


def test_nofade_score():
    # No cost: NoFADE = ρ. 9 g at C0 = 1 g: 0.8 / (1 + log10 10) = 0.4.
    assert nofade_score(0.8, 0.0, 0.001) == 0.8
    assert nofade_score(0.8, 0.009, 0.001) == pytest.approx(0.4, rel=1e-12)
    # 99 g: 0.8 / (1 + log10 100) = 0.8 / 3.
    assert nofade_score(0.8, 0.099, 0.001) == pytest.approx(0.8 / 3, rel=1e-12)
    costs = np.logspace(-4, 3, 50)
    scores = [nofade_score(0.9, float(c), 0.001) for c in costs]
    assert all(0 <= s <= 0.9 for s in scores) and np.all(np.diff(scores) < 0)


def test_saturation_on_a_known_line():
    # Frontier exactly on ρ = 0.5 + 0.1·log10(C): β = 0.1, σ = 0.8 at C = 1000,
    # next +0.01 of ρ costs 1000·(10^(0.01/0.1) − 1) = 258.93.
    costs = [1.0, 10.0, 100.0, 1000.0, 50.0]
    values = [0.5, 0.6, 0.7, 0.8, 0.55]  # the last run is dominated
    result = saturation(costs, values)
    assert result.frontier_runs == 4
    assert (result.alpha, result.beta) == (pytest.approx(0.5), pytest.approx(0.1))
    assert result.sigma == 0.8 and result.best_cost == 1000.0
    assert result.cost_for_next_rho_0_01 == pytest.approx(1000 * (10**0.1 - 1), rel=1e-9)
    assert result.status == "open"


def test_saturation_status_thresholds():
    flat = saturation([1, 10, 100], [0.70, 0.72, 0.74])  # β = 0.02
    assert flat.beta == pytest.approx(0.02) and flat.status == "saturating"
    nearly_done = saturation([1, 10, 100], [0.90, 0.95, 0.985])
    assert nearly_done.status == "saturated"  # σ ≥ 0.98
    stuck = saturation([1, 10, 100], [0.60, 0.605, 0.61])
    assert stuck.status == "saturated"  # β = 0.005 < 0.01
    strict = saturation(
        [1, 10, 100], [0.70, 0.72, 0.74], SaturationThresholds(saturating_beta=0.01)
    )
    assert strict.status == "open"
    too_few = saturation([1, 10], [0.5, 0.6])
    assert too_few.status is None and "at least 3" in (too_few.reason or "")
