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

from greenaudit.schemas.analytics import PlateauOut
from greenaudit.units import CO2, ENERGY, format_quantity, significant

from .curves import MIN_RUNS, Fit, FitReport, InsufficientData, fit_all, point_size

DEFAULT_EPSILON_FRACTION = 0.005


@dataclass(frozen=True)
class MarginalGain:
    """What the fitted curve says the last energy bought, at the end of the run."""

    model: str
    per_kwh: float
    per_extra_10_percent_energy: float
    axis: str


@dataclass(frozen=True)
class ReturnsCurve:
    """The within-run curve (the points given, or a sample of them) and what it says."""

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
    plateau: PlateauOut


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


def plateau_threshold(
    lowest: float,
    highest: float,
    higher_is_better: bool = True,
    epsilon_fraction: float = DEFAULT_EPSILON_FRACTION,
) -> tuple[float, float]:
    """(threshold, ε): the plateau is the first point whose value is beyond the threshold.

    With ε = fraction × range, the remaining gain after a point is below ε exactly when the
    running best there is within ε of the final best; a running best first gets there at a
    point whose own value is beyond ``best − ε``. So the plateau needs only the range and one
    comparison per point, which a database can answer from an index.
    """
    epsilon = epsilon_fraction * (highest - lowest)
    return (highest - epsilon, epsilon) if higher_is_better else (lowest + epsilon, epsilon)


def find_plateau(
    values: ArrayLike,
    higher_is_better: bool = True,
    epsilon_fraction: float = DEFAULT_EPSILON_FRACTION,
) -> tuple[int, float]:
    """Index of the first point after which the running best gains less than ε, and ε.

    Example:
        >>> index, epsilon = find_plateau([0.5, 0.8, 0.9, 0.9001, 0.9002])
        >>> index, round(epsilon, 6)
        (2, 0.002001)
    """
    ys = np.asarray(values, dtype=float)
    if ys.size == 0:
        raise InsufficientData("the run has no points of this metric")
    threshold, epsilon = plateau_threshold(
        float(ys.min()), float(ys.max()), higher_is_better, epsilon_fraction
    )
    if epsilon == 0:
        return 0, 0.0  # a constant metric never gains: it plateaus at once
    beyond = ys > threshold if higher_is_better else ys < threshold
    if not beyond.any():
        # ε is below float resolution at this magnitude: take where the best is first reached.
        beyond = ys >= ys.max() if higher_is_better else ys <= ys.min()
    return int(np.argmax(beyond)), epsilon


def summarize_returns(
    steps: ArrayLike,
    times: ArrayLike,
    values: ArrayLike,
    *,
    plateau_step: int,
    plateau_time: float,
    plateau_value: float,
    epsilon: float,
    final_best: float,
    point: float,
    sample_t_start: ArrayLike,
    sample_t_end: ArrayLike,
    sample_kwh: ArrayLike,
    sample_co2_kg: ArrayLike,
    sample_rank: ArrayLike | None = None,
    higher_is_better: bool = True,
    axis: str = "energy_kwh",
    max_fit_points: int | None = None,
) -> ReturnsCurve:
    """The returns of a run from its curve points (all, or a sample) and its plateau point.

    The fit and the marginal gain use the curve points given, or an even sample of
    ``max_fit_points`` of them when there are more; the plateau and the energy after it are
    exact, since the plateau point and the final best are passed in.
    """
    step_arr = np.asarray(steps, dtype=np.int64)
    ys = np.asarray(values, dtype=float)
    kwh = np.asarray(sample_kwh, dtype=float)
    co2 = np.asarray(sample_co2_kg, dtype=float)
    if kwh.size == 0:
        raise InsufficientData("the run has no energy samples")
    times_with_plateau = np.append(np.asarray(times, dtype=float), plateau_time)
    energy_all = cumulative_at(times_with_plateau, sample_t_start, sample_t_end, kwh, sample_rank)
    carbon_all = cumulative_at(times_with_plateau, sample_t_start, sample_t_end, co2, sample_rank)
    energy, carbon = energy_all[:-1], carbon_all[:-1]
    total_kwh, total_co2 = float(kwh.sum()), float(co2.sum())

    x = energy if axis == "energy_kwh" else carbon
    usable = x > 0
    fits: FitReport | None = None
    gain = None
    if usable.sum() < MIN_RUNS:
        fit_reason = (
            f"need at least {MIN_RUNS} metric points after energy was first "
            f"measured, have {int(usable.sum())}"
        )
    else:
        fit_x, fit_y = x[usable], ys[usable]
        if max_fit_points is not None and fit_x.size > max_fit_points:
            # Each model's fit costs in proportion to its points; a few thousand pin three
            # or four parameters down as well as ten thousand do.
            keep = np.unique(np.linspace(0, fit_x.size - 1, max_fit_points).round().astype(int))
            fit_x, fit_y = fit_x[keep], fit_y[keep]
        fits = fit_all(fit_x, fit_y, higher_is_better)
        fit_reason = fits.best_reason
        # Too few points for AICc: the curve still deserves a fit; take the first that converged.
        chosen: Fit | None = next(
            (f for f in fits.fits if f.model == fits.best), fits.fits[0] if fits.fits else None
        )
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

    plateau_kwh, plateau_co2 = float(energy_all[-1]), float(carbon_all[-1])
    after_kwh = max(total_kwh - plateau_kwh, 0.0)
    after_co2 = max(total_co2 - plateau_co2, 0.0)
    share = after_kwh / total_kwh if total_kwh > 0 else 0.0
    gained = abs(final_best - plateau_value)
    plateau = PlateauOut(
        step=int(plateau_step),
        value=float(plateau_value),
        energy_kwh=plateau_kwh,
        co2_kg=plateau_co2,
        epsilon=epsilon,
        energy_after_kwh=after_kwh,
        co2_after_kg=after_co2,
        share_of_energy_after=share,
        gain_after=gained,
        summary=(
            f"the last {share:.0%} of the energy "
            f"({format_quantity(after_kwh, ENERGY, unit='kWh')}, "
            f"{format_quantity(after_co2, CO2, unit='g CO2e')}) bought "
            f"{significant(gained / point, 2)} points"
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

    Takes every point of the metric, in step order. ``axis`` (``energy_kwh`` or ``co2_kg``) is
    the x of the fit and of the marginal gain.
    """
    ys = np.asarray(values, dtype=float)
    ts = np.asarray(times, dtype=float)
    step_arr = np.asarray(steps, dtype=np.int64)
    index, epsilon = find_plateau(ys, higher_is_better, epsilon_fraction)
    return summarize_returns(
        step_arr,
        ts,
        ys,
        plateau_step=int(step_arr[index]),
        plateau_time=float(ts[index]),
        plateau_value=float(ys[index]),
        epsilon=epsilon,
        final_best=float(ys.max() if higher_is_better else ys.min()),
        point=point_size(ys),
        sample_t_start=sample_t_start,
        sample_t_end=sample_t_end,
        sample_kwh=sample_kwh,
        sample_co2_kg=sample_co2_kg,
        sample_rank=sample_rank,
        higher_is_better=higher_is_better,
        axis=axis,
    )
