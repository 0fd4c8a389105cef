"""Forecasts while a run is going: its total energy, and where its metric will plateau.

**Energy.** Each energy sample carries the training step last logged when it ended (the steps
done, like a framework's ``global_step``), or NaN where none was known yet or the rank does not
log. A *step boundary* is the moment a new, higher step was first seen: the step was logged at
an unknown moment inside that sample, so its energy is taken as the energy before the sample
plus half of the sample's own (the middle of a uniform guess). The rate in kWh per step is the
ratio estimator ΣΔE/ΣΔs over the increments between consecutive boundaries, so the fixed cost
before the first step (imports, data loading, warm-up) does not enter it. The forecast total is

    forecast = E_last + r·R,    R = total_steps − s_last remaining steps,

never below what was already spent. The interval models the energy of a stretch of Δs steps
as r·Δs plus noise of variance σ²·Δs, so that, with S = ΣΔs steps behind and R ahead,

    Var(remaining) = σ²·(R + R²/S)

(the R²/S term is the uncertainty of r itself), with a Student-t quantile. σ² is estimated by
**batch means**: the m increments are summed into b = ⌊√m⌋ consecutive blocks (all m when
m < 4), σ² = Σ_k (ΔE_k − r·Δs_k)² / Δs_k / (b − 1), with b − 1 degrees of freedom. Estimating
it from single increments would assume them independent, and they are not: two neighbouring
boundaries share a sample's energy, which makes consecutive increments correlated
and their individual spread too small (a seeded simulation of 20%-noise steps, in the tests,
covers the truth 76% of the time with single increments and 94% with blocks at 95%), and a
rate that drifts correlates them further. √m blocks is the textbook batch-means choice, not a
tuned one. With one boundary only there is no increment: the rate is E/s at that boundary,
which includes the start-up cost and so overstates the rest, and the interval is that rate's
own range, from 0 to twice it; with one increment, the rate is known but its spread is not,
and the interval is as wide.

Two terms cover what that noise model misses, both seen in real runs (benchmarks/RESULTS.md).
A run's pace shifts for spells (another job on a shared machine, a slower data phase), and a
shift that lasts does not average out over the steps ahead: with three blocks or more, the
variance of the block rates beyond the step noise, σ²_shift = max(0, ½·mean((ρ_k+1 − ρ_k)²) −
σ²/mean(S_k)), is added as σ²_shift·R² (the successive-difference estimate, which a steady
trend does not inflate). And a shift that has not happened yet is in no estimate from the
past, so a floor, ``pace_drift`` = 5% relative sd of the rate ahead, adds (0.05·r·R)². On a
quiet machine, a CNN's forecasts were 2.8% high at the median with the noise model alone
covering the final value at 62% of checkpoints; with both terms, 99%. The floor makes the
interval conservative when the noise really is independent.

A step logged many times per sample is placed k/(k+1) of the way through the sample in which
k steps were completed (half-way for one step), assuming an even pace inside the sample.

Where this model is weak: it extrapolates the energy per step seen so far. A change of regime
later in the run (the machine slowed by another job, a data pipeline that stalls, evaluation
passes only at the end, a GPU that clocks down when hot) is not in the data yet, and neither
the point nor the interval can foresee it. The same holds at the start: a warm-up whose steps
are slower than the rest makes the first forecasts high (on a 1.7 s demo run, 57% high at 20%
progress; benchmarks/RESULTS.md). Where energy is estimated from time (CodeCarbon's
CPU estimate without RAPL), energy per step is time per step, and such slow-downs are exactly
what moves it. A step logged only every N steps makes boundaries coarser without biasing the
rate; the half-sample guess for when a step appeared shifts the level by at most one sample.

**Plateau.** The metric is fitted against the step with two saturating models of three
parameters each: the power law of ``curves.fit_saturating``, score = s_inf − c·step^(−d),
and an exponential approach, score = s_inf − c·exp(−(step − step_0)/τ), which describes many
learning curves against the step better. Both have the same number of parameters, so the one
with the smaller residual sum of squares is used (equivalent to the smaller AICc). The plateau
is the first step after which the forecast gain to the value at ``total_steps`` is below ε,
ε = ``epsilon_fraction`` × the range of the metric, observed and forecast (ANALYTICS.md
section 1, applied to the forecast curve). Points at step 0 or below are left out, since the
power law is not defined there.

**Over a long run** the service does not pass every sample: past 4,096 samples it passes the
run's energy blocks (``api/blocks.py``: the sums of 16, 256, 4,096 or 65,536 consecutive
samples of a rank, kept by ingestion), each as one sample whose step is the highest in it, so
a forecast reads at most 4,096 rows whatever the run's size. A block's boundary is placed by
the same k/(k+1) rule, so the point forecast moves by a fraction of one block's energy, and
the batch means have up to 64 blocks of increments instead of ⌊√m⌋ (on 2,048 samples reduced
to 128 blocks, the forecast moved by 0.01%; benchmarks/RESULTS.md has the 1M-sample run).
The plateau is fitted to at most 1,000 points evenly spaced by step.

Everything here is a pure function of arrays.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from .curves import InsufficientData, fit_saturating
from .returns import DEFAULT_EPSILON_FRACTION

# Relative sd assumed for a change of pace still to come (see the module docstring). Chosen
# before the held-out recording in benchmarks/RESULTS.md, not fitted to it.
PACE_DRIFT = 0.05
# Three parameters need at least one more point than parameters for a residual.
MIN_PLATEAU_POINTS = 4
POWER_LAW, EXPONENTIAL = "saturating power law", "saturating exponential"


@dataclass(frozen=True)
class EnergyForecast:
    """A run's total energy forecast from its progress, with an interval (kWh throughout)."""

    step: int
    total_steps: int
    progress: float
    spent_kwh: float
    forecast_kwh: float
    low_kwh: float
    high_kwh: float
    kwh_per_step: float
    confidence: float
    boundaries: int


@dataclass(frozen=True)
class PlateauForecast:
    """Where the fitted metric curve is forecast to stop gaining, and what comes after it."""

    step: int
    value: float
    final_value: float
    epsilon: float
    passed: bool
    steps_after: int
    energy_after_kwh: float
    model: str


def step_boundaries(
    sample_steps: ArrayLike, sample_kwh: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(steps, kWh): each new highest step and the cumulative energy when it was first seen.

    Samples are in time order; a NaN step is unknown and never makes a boundary. The energy is
    everything before the sample plus k/(k+1) of the sample's own, where k steps were
    completed in it (half for one step).

    Example:
        >>> steps, kwh = step_boundaries([math.nan, 1, 1, 3, 2], [2.0, 0.5, 0.5, 0.5, 0.5])
        >>> steps.tolist(), kwh.round(4).tolist()
        ([1.0, 3.0], [2.25, 3.3333])
    """
    steps = np.asarray(sample_steps, dtype=float).ravel()
    kwh = np.asarray(sample_kwh, dtype=float).ravel()
    if steps.shape != kwh.shape:
        raise ValueError("sample_steps and sample_kwh must have the same length")
    before = np.cumsum(kwh) - kwh
    known = np.where(np.isnan(steps), -np.inf, steps)
    # A step counts once, where it first exceeds every earlier one: a rank that reports an
    # older step, or a repeated one, adds no boundary.
    earlier_max = np.r_[-np.inf, np.maximum.accumulate(known)[:-1]]
    new = np.isfinite(known) & (known > earlier_max)
    # k steps completed inside the sample, at even pace, put the last of them k/(k+1) of the
    # way through it: half-way for one step, near the end for many. Before the first known
    # step, training is taken to have started at step 0.
    completed = known[new] - np.where(np.isfinite(earlier_max[new]), earlier_max[new], 0.0)
    completed = np.maximum(completed, 1.0)
    return steps[new], before[new] + kwh[new] * completed / (completed + 1)


def forecast_energy(
    sample_steps: ArrayLike,
    sample_kwh: ArrayLike,
    total_steps: int,
    *,
    confidence: float = 0.95,
    pace_drift: float = PACE_DRIFT,
) -> EnergyForecast:
    """Forecast a run's total energy (kWh) from its samples so far and its planned steps.

    ``sample_steps[i]`` is the step last logged when sample ``i`` ended (NaN if unknown) and
    ``sample_kwh[i]`` its energy in kWh, all ranks merged in time order. ``pace_drift`` is the
    relative sd assumed for changes of pace still to come (0 for the noise model alone).
    Raises ``InsufficientData`` when no step after step 0 is known yet, ``ValueError`` when
    ``total_steps < 1``.

    Example:
        >>> # 2 kWh before the first step, then 0.5 kWh a step; each step ends mid-sample.
        >>> f = forecast_energy([math.nan, 1, 2, 3, 4], [2.25, 0.5, 0.5, 0.5, 0.5], 10)
        >>> f.forecast_kwh, f.kwh_per_step, f.spent_kwh, f.progress
        (7.0, 0.5, 4.25, 0.4)
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, not {total_steps}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    kwh = np.asarray(sample_kwh, dtype=float).ravel()
    steps, energy = step_boundaries(sample_steps, kwh)
    spent = float(kwh.sum())
    if steps.size == 0:
        raise InsufficientData(
            "no training step has been logged yet, so the run's progress is unknown"
        )
    last_step, last_kwh = float(steps[-1]), float(energy[-1])
    progress = min(max(last_step / total_steps, 0.0), 1.0)
    remaining = max(total_steps - last_step, 0.0)

    def result(point: float, low: float, high: float, rate: float) -> EnergyForecast:
        point = max(point, spent)
        return EnergyForecast(
            step=int(last_step),
            total_steps=int(total_steps),
            progress=progress,
            spent_kwh=spent,
            forecast_kwh=point,
            low_kwh=min(max(low, spent), point),
            high_kwh=max(high, point),
            kwh_per_step=rate,
            confidence=confidence,
            boundaries=int(steps.size),
        )

    if steps.size == 1:
        if last_step <= 0:
            raise InsufficientData(
                "only step 0 has been logged: no step is complete yet, so there is no energy "
                "per step to forecast from"
            )
        rate = last_kwh / last_step
        if remaining == 0:
            return result(spent, spent, spent, rate)
        point = last_kwh + rate * remaining
        # The start-up cost is inside this rate, so the point is high; from one boundary no
        # spread can be estimated, so the range is the rate from nothing to twice itself.
        return result(point, last_kwh, last_kwh + 2 * rate * remaining, rate)

    delta_s, delta_e = np.diff(steps), np.diff(energy)
    total_s = float(delta_s.sum())
    rate = float(delta_e.sum()) / total_s
    if remaining == 0:
        return result(spent, spent, spent, rate)
    point = last_kwh + rate * remaining
    m = delta_s.size
    if m < 2:
        # One increment: the rate is known, its spread is not. Be as wide as one boundary.
        return result(point, last_kwh, last_kwh + 2 * rate * remaining, rate)
    # Batch means: consecutive increments are correlated (neighbouring boundaries share a
    # sample, and the rate drifts), so the spread is taken between blocks of them.
    blocks = math.isqrt(m) if m >= 4 else m
    edges = np.linspace(0, m, blocks + 1).round().astype(int)[:-1]
    block_s, block_e = np.add.reduceat(delta_s, edges), np.add.reduceat(delta_e, edges)
    sigma2 = float(np.sum((block_e - rate * block_s) ** 2 / block_s)) / (blocks - 1)
    variance = sigma2 * (remaining + remaining**2 / total_s)
    if blocks >= 3:
        # A run's pace also shifts for spells (another job on the machine, a slower data
        # phase): a shift of the rate that lasts does not average out over the steps ahead.
        # Its variance is what the spread of consecutive block rates shows beyond the
        # step-to-step noise (the half mean-square successive difference, which a steady
        # trend alone does not inflate), and the rest of the run is one more spell.
        block_rates = block_e / block_s
        successive = float(np.mean(np.diff(block_rates) ** 2)) / 2
        shift2 = max(successive - sigma2 / float(np.mean(block_s)), 0.0)
        variance += shift2 * remaining**2
    # And a shift that has not happened yet is in no estimate from the run's own past: a
    # floor of pace_drift (relative sd) on the rate of the steps ahead.
    variance += (pace_drift * rate * remaining) ** 2
    half = float(stats.t.ppf(0.5 + confidence / 2, blocks - 1)) * math.sqrt(variance)
    return result(point, point - half, point + half, rate)


def _fit_exponential(
    xs: NDArray[np.float64], ys: NDArray[np.float64], higher_is_better: bool
) -> tuple[Callable[[NDArray[np.float64]], NDArray[np.float64]], float]:
    """Fit score = s_inf − c·exp(−(x − x_0)/τ) (``+`` for lower-is-better): (predict, RSS)."""
    sign = 1.0 if higher_is_better else -1.0
    x0 = float(xs.min())
    x_span = float(xs.max() - x0) or 1.0
    span = float(ys.max() - ys.min()) or 1.0
    is_rate = bool(np.all((ys >= 0) & (ys <= 1)))
    if higher_is_better:
        lower_s, upper_s = float(ys.min()), (1.0 if is_rate else float(ys.max() + 100 * span))
        start = float(ys.max() + 0.1 * span)
    else:
        lower_s, upper_s = (0.0 if is_rate else -np.inf), float(ys.max())
        start = float(ys.min() - 0.1 * span)
    start = float(np.clip(start, lower_s + 1e-12, upper_s))
    # τ from a thousandth of the observed steps to a thousand times them: beyond that the
    # curve is a step or a straight line and the other model says it better.
    lower = [lower_s, 0.0, 1e-3 * x_span]
    upper = [upper_s, np.inf, 1e3 * x_span]
    c0 = max(abs(start - float(ys[np.argmin(xs)])), 1e-6)

    def model(x: NDArray[np.float64], s_inf: float, c: float, tau: float) -> NDArray[np.float64]:
        return s_inf - sign * c * np.exp(-(x - x0) / tau)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            theta, cov = optimize.curve_fit(
                model, xs, ys, p0=[start, c0, x_span / 3], bounds=(lower, upper), maxfev=20_000
            )
    except (RuntimeError, ValueError) as error:
        raise InsufficientData(f"the exponential fit did not converge: {error}") from error
    if not np.all(np.isfinite(cov)):
        raise InsufficientData("the exponential fit's parameters are not identifiable")
    s_inf, c, tau = (float(v) for v in theta)

    def predict(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return model(np.asarray(x, dtype=float), s_inf, c, tau)

    return predict, float(np.sum((ys - predict(xs)) ** 2))


def forecast_plateau(
    steps: ArrayLike,
    values: ArrayLike,
    total_steps: int,
    kwh_per_step: float,
    *,
    higher_is_better: bool = True,
    epsilon_fraction: float = DEFAULT_EPSILON_FRACTION,
) -> PlateauForecast:
    """Forecast the step where the metric plateaus, and the energy (kWh) the run spends after.

    ``steps`` and ``values`` are the metric's points so far; ``kwh_per_step`` is the rate of
    :func:`forecast_energy`. Raises ``InsufficientData`` with fewer than four points at a
    positive step, or when neither curve can be fitted.

    Example:
        >>> s = np.arange(10, 101, 10)
        >>> p = forecast_plateau(s, 0.9 - 0.5 * np.exp(-s / 20), 200, kwh_per_step=0.01)
        >>> p.model, p.step, p.steps_after, round(p.energy_after_kwh, 2), p.passed
        ('saturating exponential', 116, 84, 0.84, False)
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, not {total_steps}")
    xs = np.asarray(steps, dtype=float).ravel()
    ys = np.asarray(values, dtype=float).ravel()
    if xs.shape != ys.shape:
        raise ValueError("steps and values must have the same length")
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0)
    xs, ys = xs[keep], ys[keep]
    if xs.size < MIN_PLATEAU_POINTS:
        raise InsufficientData(
            f"need at least {MIN_PLATEAU_POINTS} metric points at a positive step to forecast "
            f"a plateau, have {xs.size}"
        )
    if np.all(xs == xs[0]):
        raise InsufficientData("every metric point is at the same step; a curve needs several")

    candidates: list[tuple[float, str, Callable[[NDArray[np.float64]], NDArray[np.float64]]]]
    candidates = []
    failures = []
    try:
        power = fit_saturating(xs, ys, higher_is_better)
        candidates.append((power.rss, POWER_LAW, power.predict))
    except InsufficientData as error:
        failures.append(error.reason)
    try:
        predict, rss = _fit_exponential(xs, ys, higher_is_better)
        candidates.append((rss, EXPONENTIAL, predict))
    except InsufficientData as error:
        failures.append(error.reason)
    if not candidates:
        raise InsufficientData("no saturating curve fits the metric: " + "; ".join(failures))
    _, model, predict = min(candidates, key=lambda c: c[0])

    first, latest = int(math.ceil(xs.min())), int(xs.max())
    end = max(int(total_steps), first)
    final = float(predict(np.array([end], dtype=float))[0])
    at_first = float(predict(np.array([first], dtype=float))[0])
    everything = np.r_[ys, final, at_first]
    epsilon = epsilon_fraction * float(everything.max() - everything.min())
    direction = 1.0 if higher_is_better else -1.0

    def settled(step: int) -> bool:
        gain = direction * (final - float(predict(np.array([step], dtype=float))[0]))
        return gain < epsilon

    # Both models are monotone in the step, so the remaining gain only shrinks: the first step
    # where it is below ε is found by bisection, whatever the number of steps planned.
    low, high = first, end
    while low < high:
        middle = (low + high) // 2
        if settled(middle):
            high = middle
        else:
            low = middle + 1
    value = float(predict(np.array([low], dtype=float))[0])
    steps_after = max(int(total_steps) - low, 0)
    return PlateauForecast(
        step=low,
        value=value,
        final_value=final,
        epsilon=epsilon,
        passed=latest >= low,
        steps_after=steps_after,
        energy_after_kwh=kwh_per_step * steps_after,
        model=model,
    )
