"""Scaling curves across runs: exact recovery, interval coverage, frontier and model choice."""

from __future__ import annotations

import time

import numpy as np
import pytest

from greenaudit.analytics.curves import (
    InsufficientData,
    fit_all,
    fit_log_linear,
    fit_saturating,
    fit_thompson,
    marginal_cost,
    pareto_frontier,
    point_size,
    project,
)


def test_thompson_recovers_exact_parameters():
    a, b = -0.3, -0.25
    x = np.logspace(3, 12, 25)
    score = 1 - 10**a * x**b
    fit = fit_thompson(x, score)
    assert abs(fit.param("a") - a) < 1e-9 and abs(fit.param("b") - b) < 1e-9
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12)
    assert fit.cost_multiplier_to_halve_error == pytest.approx(2**4, rel=1e-9)
    # Projection to an error of 1e-3: x* = 10^((−3 − a)/b) = 10^10.8.
    projection = project(fit, 1 - 1e-3)
    assert projection.x == pytest.approx(10**10.8, rel=1e-9)


def test_thompson_interval_covers_the_true_slope_95_percent_of_the_time():
    rng = np.random.default_rng(20201001)
    a, b, trials, covered, covered_a = -0.2, -0.15, 1000, 0, 0
    for _ in range(trials):
        x = 10 ** rng.uniform(2, 8, 12)
        log_error = a + b * np.log10(x) + rng.normal(0, 0.05, x.size)
        fit = fit_thompson(x, 1 - 10**log_error)
        slope = next(p for p in fit.parameters if p.name == "b")
        intercept = next(p for p in fit.parameters if p.name == "a")
        covered += slope.ci_low <= b <= slope.ci_high
        covered_a += intercept.ci_low <= a <= intercept.ci_high
    assert 0.93 <= covered / trials <= 0.97
    assert 0.93 <= covered_a / trials <= 0.97


def test_log_linear_fit_and_projection():
    # Sun et al.: score = a + b·log10(N). With a = 0.2 and b = 0.05, 0.6 needs N = 10^8.
    n = np.array([1e4, 1e5, 1e6, 1e7])
    fit = fit_log_linear(n, 0.2 + 0.05 * np.log10(n))
    assert (fit.param("a"), fit.param("b")) == (pytest.approx(0.2), pytest.approx(0.05))
    assert project(fit, 0.6).x == pytest.approx(1e8, rel=1e-9)


def test_saturating_fit_finds_the_ceiling():
    x = np.logspace(0, 6, 30)
    score = 0.9 - 0.5 * x**-0.3
    fit = fit_saturating(x, score)
    assert fit.param("s_inf") == pytest.approx(0.9, abs=1e-6)
    assert fit.param("c") == pytest.approx(0.5, rel=1e-5)
    assert fit.param("d") == pytest.approx(0.3, rel=1e-5)
    beyond = project(fit, 0.95)
    assert beyond.x is None and "ceiling" in (beyond.reason or "")


def test_model_choice_by_aicc():
    rng = np.random.default_rng(7)
    x = np.logspace(0, 6, 40)
    score = 0.9 - 0.5 * x**-0.3 + rng.normal(0, 0.002, x.size)
    report = fit_all(x, score)
    assert {f.model for f in report.fits} == {"thompson", "log-linear", "saturating"}
    assert report.best == "saturating"
    aicc = {f.model: f.aicc for f in report.fits}
    assert aicc["saturating"] < aicc["thompson"] and aicc["saturating"] < aicc["log-linear"]


def test_fits_say_why_they_cannot_answer():
    with pytest.raises(InsufficientData, match="at least 3 runs"):
        fit_thompson([1, 2], [0.5, 0.6])
    with pytest.raises(InsufficientData, match="same x"):
        fit_thompson([5, 5, 5], [0.5, 0.6, 0.7])
    with pytest.raises(InsufficientData, match="zero or negative"):
        fit_log_linear([0, 1, 2], [0.5, 0.6, 0.7])
    small = fit_all([1, 10, 100], [0.5, 0.6, 0.7])
    assert small.best is None and "AICc" in small.best_reason
    assert "at least 4 runs" in small.failures["saturating"]


def test_marginal_cost_of_the_next_point():
    # error = x^-0.5 (a = 0, b = −0.5). At x = 100 the score is 0.9; 0.91 needs
    # x = (0.09)^-2 = 123.457, so 23.457 more. 1% less of the remaining error
    # (0.099) needs x = 0.099^-2 = 102.03.
    x = np.array([1.0, 4.0, 25.0, 100.0])
    fit = fit_thompson(x, 1 - x**-0.5)
    cost = marginal_cost(fit, 100.0, point_size([0.5, 0.9]))
    assert cost.from_score == pytest.approx(0.9)
    assert cost.extra_x_per_point == pytest.approx(0.09**-2 - 100, rel=1e-9)
    assert cost.extra_x_per_percent_of_remaining_error == pytest.approx(0.099**-2 - 100, rel=1e-9)


def test_pareto_frontier_by_hand():
    cost = [1, 2, 3, 4, 4, 5]
    score = [0.5, 0.4, 0.7, 0.7, 0.8, 0.8]
    # (2, 0.4) is beaten by (1, 0.5); (4, 0.7) by (3, 0.7); (5, 0.8) by (4, 0.8).
    assert pareto_frontier(cost, score).tolist() == [True, False, True, False, True, False]
    # Lower is better: the best run is the one with the smallest score.
    assert pareto_frontier([1, 2, 3], [0.3, 0.2, 0.25], higher_is_better=False).tolist() == [
        True,
        True,
        False,
    ]


def test_pareto_frontier_is_invariant_to_row_order():
    rng = np.random.default_rng(3)
    cost = rng.integers(1, 30, 400).astype(float)  # many ties on purpose
    score = rng.integers(0, 40, 400) / 40
    reference = pareto_frontier(cost, score)
    keyed = {(c, s, i) for i, (c, s) in enumerate(zip(cost, score, strict=True)) if reference[i]}
    for _ in range(20):
        order = rng.permutation(cost.size)
        shuffled = pareto_frontier(cost[order], score[order])
        assert {
            (cost[order][i], score[order][i], order[i]) for i in np.nonzero(shuffled)[0]
        } == keyed


def test_fits_on_100000_runs_take_well_under_a_second():
    rng = np.random.default_rng(11)
    x = 10 ** rng.uniform(0, 9, 100_000)
    score = 1 - 10 ** (0.1 - 0.1 * np.log10(x) + rng.normal(0, 0.05, x.size))
    # ANALYTICS.md pins this property. The best of three tries is what the code costs; the
    # others measure whatever else the machine (or a parallel CI job) was doing.
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        report = fit_all(x, score)
        frontier = pareto_frontier(x, score)
        timings.append(time.perf_counter() - started)
    assert report.best is not None and frontier.any()
    assert min(timings) < 1.0, f"{min(timings):.2f} s"
