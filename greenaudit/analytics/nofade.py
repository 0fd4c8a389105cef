"""NoFADE ``greenaudit-1``: the entropy-normalised score ρ, the run score and saturation.

This is greenaudit's own definition (ANALYTICS.md section 3), built on the NoFADE abstract
(Fu et al., arXiv 2111.14059: "a novel entropy-based metric to quantify model–dataset–complexity
relationships"). It is not the paper's equation, which is not available to us.

* ρ: by Fano's inequality a classifier with error e leaves at most
  R = h2(e) + e·log2(K − 1) bits of label uncertainty, so it resolves at least
  I = clamp(H(D) − R, 0, H(D)) bits of the dataset's label entropy H(D); ρ = I / H(D).
* NoFADE = ρ / (1 + log10(1 + C / C0)) on a cost axis C with unit C0.
* Saturation of a dataset or task: ρ = α + β·log10(C) fitted on the runs' Pareto frontier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from .curves import pareto_frontier

DEFINITION_VERSION = "greenaudit-1"

#: Cost unit C0 of each axis, in the axis's own unit, and how it reads.
COST_UNITS: dict[str, tuple[float, str]] = {
    "co2_kg": (0.001, "1 g CO2e"),
    "energy_kwh": (0.001, "1 Wh"),
    "gpu_hours": (1 / 3600, "1 GPU-second"),
    "flops": (1e9, "1 GFLOP"),
}

# Metric names (lower-cased, without "-" or "_") that are rates of correct predictions.
EXACT_RATE_METRICS = frozenset(
    {
        "accuracy",
        "acc",
        "top1",
        "top1accuracy",
        "top1acc",
        "top5",
        "top5accuracy",
        "balancedaccuracy",
        "pixelaccuracy",
    }
)
# Rates in [0, 1] that are not accuracies: ρ is computed the same way and flagged approximate.
APPROXIMATE_RATE_METRICS = frozenset(
    {
        "miou",
        "iou",
        "map",
        "ap",
        "ap50",
        "ap75",
        "map50",
        "f1",
        "f1score",
        "dice",
        "recall",
        "precision",
        "auc",
    }
)


@dataclass(frozen=True)
class Rho:
    """ρ of one run, or the reason it is undefined."""

    value: float | None
    residual_bits: float | None
    resolved_bits: float | None
    approximate: bool
    reason: str | None = None


@dataclass(frozen=True)
class SaturationThresholds:
    """Where a dataset or task counts as saturated or saturating."""

    saturated_sigma: float = 0.98
    saturated_beta: float = 0.01
    saturating_beta: float = 0.05


@dataclass(frozen=True)
class Saturation:
    """How far the runs on a dataset or task have resolved its label entropy."""

    sigma: float | None
    alpha: float | None
    beta: float | None
    beta_stderr: float | None
    frontier_runs: int
    best_cost: float | None
    cost_for_next_rho_0_01: float | None
    status: str | None
    reason: str | None = None


def binary_entropy_bits(p: float) -> float:
    """h2(p) = −p·log2 p − (1 − p)·log2(1 − p), with h2(0) = h2(1) = 0."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def fano_residual_bits(accuracy: float, num_classes: int) -> float:
    """R(a) = h2(e) + e·log2(K − 1): the most label uncertainty an accuracy ``a`` leaves, bits."""
    if num_classes < 2:
        raise ValueError("Fano's bound needs at least 2 classes")
    error = 1.0 - accuracy
    return binary_entropy_bits(error) + error * math.log2(num_classes - 1)


def rho_values(scores: ArrayLike, entropy_bits: float, num_classes: int) -> NDArray[np.float64]:
    """ρ for many scores on one dataset at once (scores in [0, 1], K ≥ 2, H > 0).

    Example:
        >>> rho_values([0.1, 0.95, 1.0], math.log2(10), 10).round(4).tolist()
        [0.0, 0.8661, 1.0]
    """
    error = 1.0 - np.asarray(scores, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        h2 = -error * np.log2(error) - (1 - error) * np.log2(1 - error)
    h2 = np.where((error <= 0) | (error >= 1), 0.0, h2)
    residual = h2 + error * math.log2(num_classes - 1)
    return np.clip(entropy_bits - residual, 0.0, entropy_bits) / entropy_bits


def metric_kind(metric: str) -> str:
    """``exact`` for accuracies, ``approximate`` for other rates (mIoU, mAP, ...), else ``none``."""
    key = metric.lower().replace("-", "").replace("_", "").replace("@", "")
    if key in EXACT_RATE_METRICS:
        return "exact"
    if key in APPROXIMATE_RATE_METRICS:
        return "approximate"
    return "none"


def rho(score: float, entropy_bits: float, num_classes: int, metric: str = "accuracy") -> Rho:
    """The entropy-normalised score ρ = clamp(H − R(a), 0, H) / H, in [0, 1].

    Example:
        >>> round(rho(0.95, math.log2(10), 10).value, 4)
        0.8661
    """
    kind = metric_kind(metric)
    if kind == "none":
        return Rho(
            None,
            None,
            None,
            False,
            f"ρ is defined for rates such as accuracy, mIoU or mAP, not {metric!r}",
        )
    if not (0.0 <= score <= 1.0) or not math.isfinite(score):
        return Rho(
            None, None, None, kind == "approximate", f"{metric} = {score} is not a rate in [0, 1]"
        )
    if num_classes < 2 or entropy_bits <= 0:
        return Rho(
            None,
            None,
            None,
            kind == "approximate",
            "the dataset has a single class, so there is no label entropy to resolve",
        )
    value = float(rho_values([score], entropy_bits, num_classes)[0])
    residual = fano_residual_bits(score, num_classes)
    return Rho(value, residual, value * entropy_bits, kind == "approximate")


def nofade_values(rho_values: ArrayLike, costs: ArrayLike, cost_unit: float) -> NDArray[np.float64]:
    """NoFADE = ρ / (1 + log10(1 + C / C0)) for many runs at once; the one home of the formula.

    Costs are in the axis unit (kg CO2e, kWh, GPU-hours or FLOPs) and ``cost_unit`` C0 in the
    same unit; costs must be non-negative and C0 positive.

    Example:
        >>> nofade_values([0.8, 0.8, 0.5], [0.0, 0.009, 0.099], 0.001).round(4).tolist()
        [0.8, 0.4, 0.1667]
    """
    rho_arr = np.asarray(rho_values, dtype=float)
    cost_arr = np.asarray(costs, dtype=float)
    result: NDArray[np.float64] = rho_arr / (1.0 + np.log10(1.0 + cost_arr / cost_unit))
    return result


def nofade_score(rho_value: float, cost: float, cost_unit: float) -> float:
    """NoFADE = ρ / (1 + log10(1 + C / C0)) of one run; equals ρ at zero cost, in [0, 1]."""
    if cost < 0 or cost_unit <= 0:
        raise ValueError("cost must be non-negative and its unit positive")
    return float(nofade_values([rho_value], [cost], cost_unit)[0])


def _unfitted(reason: str, sigma: float | None = None, frontier_runs: int = 0) -> Saturation:
    """A saturation without a fit of the frontier, and why there is none."""
    return Saturation(sigma, None, None, None, frontier_runs, None, None, None, reason)


def saturation(
    cost: ArrayLike,
    rho_values: ArrayLike,
    thresholds: SaturationThresholds = SaturationThresholds(),
) -> Saturation:
    """Fit ρ = α + β·log10(C) on the Pareto frontier of (cost, ρ) and label the status.

    σ is the best ρ reached; the cost of the next +0.01 of ρ from the best run is
    C_best·(10^(0.01/β) − 1).
    """
    cs = np.asarray(cost, dtype=float).ravel()
    rs = np.asarray(rho_values, dtype=float).ravel()
    keep = np.isfinite(cs) & np.isfinite(rs)
    cs, rs = cs[keep], rs[keep]
    if rs.size < 3:
        return _unfitted(f"need at least 3 runs with ρ and a cost, have {rs.size}")
    sigma = float(rs.max())
    positive = cs > 0
    if positive.sum() < 3:
        return _unfitted(
            "the cost axis is logarithmic and fewer than 3 runs have a positive cost", sigma
        )
    cs, rs = cs[positive], rs[positive]
    on_frontier = pareto_frontier(cs, rs)
    fc, fr = cs[on_frontier], rs[on_frontier]
    if np.unique(fc).size < 2:
        return _unfitted(
            "the frontier has a single cost; β needs at least two", sigma, int(on_frontier.sum())
        )
    fit = stats.linregress(np.log10(fc), fr)
    alpha, beta = float(fit.intercept), float(fit.slope)
    beta_se = float(fit.stderr) if fc.size > 2 else None
    best_cost = float(fc[np.argmax(fr)])
    next_cost = best_cost * (10 ** (0.01 / beta) - 1) if beta > 0 else None
    if sigma >= thresholds.saturated_sigma or beta < thresholds.saturated_beta:
        status = "saturated"
    elif beta < thresholds.saturating_beta:
        status = "saturating"
    else:
        status = "open"
    return Saturation(
        sigma, alpha, beta, beta_se, int(on_frontier.sum()), best_cost, next_cost, status
    )
