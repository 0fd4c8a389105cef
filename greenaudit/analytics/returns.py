"""Returns within one run: the metric against the energy spent so far (ANALYTICS.md section 1).

Each metric point is joined to the cumulative energy (and CO2) measured up to its time. Energy
samples are intervals; a point that falls inside one gets the share of it that had elapsed
(linear interpolation), and the ranks of a distributed run are summed.

The **plateau** is the first point after which the remaining gain in the running best is below
ε, by default 0.5% of the metric's range over the run. Everything spent after it, to the end of
the run, is reported as spent after the plateau.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .curves import MIN_RUNS, Fit, FitReport, InsufficientData, fit_all, point_size

DEFAULT_EPSILON_FRACTION = 0.005


@dataclass(frozen=True)
class Plateau:
    """The first point after which the metric gains less than ε."""

    index: int
    step: int
    value: float
    energy_kwh: float
    co2_kg: float
    epsilon: float
    energy_after_kwh: float
    co2_after_kg: float
    share_of_energy_after: float
    gain_after: float
    summary: str


@dataclass(frozen=True)
class MarginalGain:
    """What the fitted curve says the last energy bought, at the end of the run."""

    model: str
    per_kwh: float
    per_extra_10_percent_energy: float
    axis: str


@dataclass(frozen=True)
class ReturnsCurve:
    """The within-run curve and what it says."""

    steps: NDArray[np.int64]
    values: NDArray[np.float64]
    energy_kwh: NDArray[np.float64]
    co2_kg: NDArray[np.float64]
    total_energy_kwh: float
    total_co2_kg: float
    point_size: float
    fits: FitReport | None
    fit_reason: str | None
    marginal_gain: MarginalGain | None
    plateau: Plateau


def cumulative_at(
    times: ArrayLike,
    t_start: ArrayLike,
    t_end: ArrayLike,
    amount: ArrayLike,
    rank: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """How much of ``amount`` (kWh or kg) had been spent at each of ``times``.

    Times are seconds on any common clock. Each sample spreads its amount evenly over
    [t_start, t_end]; ranks are accumulated separately, then summed.

    Example:
        >>> cumulative_at([5, 15, 30], [0, 10], [10, 20], [1.0, 3.0]).tolist()
        [0.5, 2.5, 4.0]
    """
    ts = np.asarray(times, dtype=float)
    starts = np.asarray(t_start, dtype=float)
    ends = np.asarray(t_end, dtype=float)
    amounts = np.asarray(amount, dtype=float)
    ranks = np.zeros(starts.shape, dtype=int) if rank is None else np.asarray(rank)
    total = np.zeros(ts.shape, dtype=float)
    for r in np.unique(ranks):
        mine = ranks == r
        order = np.argsort(starts[mine], kind="stable")
        s, e, a = starts[mine][order], ends[mine][order], amounts[mine][order]
        # Knots at each start and end; amounts accrue between them, nothing in gaps.
        knots_t = np.empty(2 * s.size)
        knots_t[0::2], knots_t[1::2] = s, e
        knots_v = np.empty(2 * s.size)
        running = np.cumsum(a)
        knots_v[0::2] = running - a
        knots_v[1::2] = running
        total += np.interp(ts, knots_t, knots_v, left=0.0, right=float(running[-1]))
    return total


def find_plateau(
    values: ArrayLike,
    higher_is_better: bool = True,
    epsilon_fraction: float = DEFAULT_EPSILON_FRACTION,
) -> tuple[int, float]:
    """Index of the first point after which the running best gains less than ε, and ε."""
    ys = np.asarray(values, dtype=float)
    if ys.size == 0:
        raise InsufficientData("the run has no points of this metric")
    best = np.maximum.accumulate(ys) if higher_is_better else np.minimum.accumulate(ys)
    epsilon = epsilon_fraction * float(ys.max() - ys.min())
    remaining = np.abs(best[-1] - best)
    below = np.nonzero(remaining < epsilon)[0] if epsilon > 0 else np.array([0])
    return int(below[0]), epsilon


def returns_curve(
    steps: ArrayLike,
    times: ArrayLike,
    values: ArrayLike,
    sample_t_start: ArrayLike,
    sample_t_end: ArrayLike,
    sample_kwh: ArrayLike,
    sample_co2_kg: ArrayLike,
    sample_rank: ArrayLike | None = None,
    *,
    higher_is_better: bool = True,
    axis: str = "energy_kwh",
    epsilon_fraction: float = DEFAULT_EPSILON_FRACTION,
) -> ReturnsCurve:
    """The metric against cumulative energy and CO2, its fitted model and its plateau.

    Metric points must be in time order. ``axis`` (``energy_kwh`` or ``co2_kg``) is the x of the
    fit and of the marginal gain.
    """
    step_arr = np.asarray(steps, dtype=np.int64)
    time_arr = np.asarray(times, dtype=float)
    ys = np.asarray(values, dtype=float)
    kwh = np.asarray(sample_kwh, dtype=float)
    co2 = np.asarray(sample_co2_kg, dtype=float)
    if ys.size == 0:
        raise InsufficientData("the run has no points of this metric")
    if kwh.size == 0:
        raise InsufficientData("the run has no energy samples")
    energy = cumulative_at(time_arr, sample_t_start, sample_t_end, kwh, sample_rank)
    carbon = cumulative_at(time_arr, sample_t_start, sample_t_end, co2, sample_rank)
    total_kwh, total_co2 = float(kwh.sum()), float(co2.sum())
    point = point_size(ys)

    x = energy if axis == "energy_kwh" else carbon
    usable = x > 0
    fits: FitReport | None = None
    fit_reason = None
    gain = None
    if usable.sum() < MIN_RUNS:
        fit_reason = (
            f"need at least {MIN_RUNS} metric points after energy was first "
            f"measured, have {int(usable.sum())}"
        )
    else:
        fits = fit_all(x[usable], ys[usable], higher_is_better)
        # Too few points for AICc: the curve still deserves a fit; take the first that converged.
        chosen: Fit | None = next(
            (f for f in fits.fits if f.model == fits.best), fits.fits[0] if fits.fits else None
        )
        fit_reason = fits.best_reason
        x_end = total_kwh if axis == "energy_kwh" else total_co2
        if chosen is not None and x_end > 0:
            at_end = float(chosen.predict(x_end))
            nudge = float(chosen.predict(x_end * 1.001))
            gain = MarginalGain(
                model=chosen.model,
                per_kwh=(nudge - at_end) / (0.001 * x_end),
                per_extra_10_percent_energy=float(chosen.predict(x_end * 1.1)) - at_end,
                axis=axis,
            )

    index, epsilon = find_plateau(ys, higher_is_better, epsilon_fraction)
    best = np.maximum.accumulate(ys) if higher_is_better else np.minimum.accumulate(ys)
    after_kwh = max(total_kwh - float(energy[index]), 0.0)
    after_co2 = max(total_co2 - float(carbon[index]), 0.0)
    share = after_kwh / total_kwh if total_kwh > 0 else 0.0
    gained = float(abs(best[-1] - best[index]))
    plateau = Plateau(
        index=index,
        step=int(step_arr[index]),
        value=float(ys[index]),
        energy_kwh=float(energy[index]),
        co2_kg=float(carbon[index]),
        epsilon=epsilon,
        energy_after_kwh=after_kwh,
        co2_after_kg=after_co2,
        share_of_energy_after=share,
        gain_after=gained,
        summary=(
            f"the last {share:.0%} of the energy ({after_kwh:.4g} kWh, "
            f"{after_co2 * 1000:.4g} g CO2e) bought {gained / point:.2g} points"
        ),
    )
    return ReturnsCurve(
        steps=step_arr,
        values=ys,
        energy_kwh=energy,
        co2_kg=carbon,
        total_energy_kwh=total_kwh,
        total_co2_kg=total_co2,
        point_size=point,
        fits=fits,
        fit_reason=fit_reason,
        marginal_gain=gain,
        plateau=plateau,
    )
