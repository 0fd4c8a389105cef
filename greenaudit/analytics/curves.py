"""Scaling curves across runs: score against a cost axis (ANALYTICS.md section 2).

Three models are fitted, each in the space where it is linear or natural:

* ``thompson``: error = 10^a · x^b, by ordinary least squares of log10(error) on log10(x)
  (Thompson et al., arXiv 2007.05558). Error is 1 − score for higher-is-better scores in
  [0, 1], and the score itself for lower-is-better ones.
* ``log-linear``: score = a + b·log10(x), by ordinary least squares (Sun et al., arXiv 1707.02968).
* ``saturating``: score = s_inf − c·x^(−d) (``+`` for lower-is-better scores), by bounded
  non-linear least squares (``scipy.optimize.curve_fit``); s_inf is the estimated ceiling.

R² is reported in each model's own fitting space. Models are compared by AICc computed on the
score scale, so the comparison is like for like: AICc = n·ln(RSS/n) + 2k + 2k(k+1)/(n−k−1) with
k = parameters + 1 (the residual variance), defined only when n > k + 1.

Everything here is a pure function of arrays.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from greenaudit.schemas.analytics import MarginalCostOut, ProjectionOut

DEFINITION_VERSION = "greenaudit-1"
CONFIDENCE = 0.95
MIN_RUNS = 3
THOMPSON, LOG_LINEAR, SATURATING = "thompson", "log-linear", "saturating"
FORMULAS = {
    THOMPSON: "error = 10^a * x^b",
    LOG_LINEAR: "score = a + b*log10(x)",
    SATURATING: "score = s_inf - c*x^(-d)",
}


class InsufficientData(ValueError):
    """The data cannot support the answer; ``reason`` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Parameter:
    """A fitted parameter with its standard error and 95% confidence interval."""

    name: str
    value: float
    stderr: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Fit:
    """One fitted model. ``predict`` and ``inverse`` work on the score scale and the x axis."""

    model: str
    formula: str
    parameters: tuple[Parameter, ...]
    r_squared: float
    r_squared_space: str
    rss: float
    aicc: float | None
    n: int
    higher_is_better: bool
    # Internal parametrisation and its covariance, for predictions and their intervals.
    _theta: tuple[float, ...] = field(repr=False, compare=False, default=())
    _cov: tuple[tuple[float, ...], ...] = field(repr=False, compare=False, default=())
    _x_ref: float = field(repr=False, compare=False, default=1.0)

    def param(self, name: str) -> float:
        """The value of parameter ``name``."""
        return next(p.value for p in self.parameters if p.name == name)

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        """The model's score at cost ``x``."""
        return _predict(
            self.model, self._theta, np.asarray(x, dtype=float), self._x_ref, self.higher_is_better
        )

    def inverse(self, score: float) -> float | None:
        """The cost at which the model reaches ``score``, or ``None`` where it never does."""
        return _inverse(self.model, self._theta, score, self._x_ref, self.higher_is_better)

    @property
    def cost_multiplier_to_halve_error(self) -> float | None:
        """Thompson only: 2^(−1/b), how many times more x halves the error."""
        if self.model != THOMPSON:
            return None
        slope = self.param("b")
        if slope >= 0:
            return None
        with np.errstate(over="ignore"):
            multiplier = float(np.power(2.0, -1 / slope))
        return multiplier if math.isfinite(multiplier) else None


# A projection and a marginal cost are answered as they are computed: their one definition is
# the wire model (as the plateau's is), so nothing copies them field by field.
Projection = ProjectionOut
MarginalCost = MarginalCostOut


@dataclass(frozen=True)
class FitReport:
    """Every model that converged, the best by AICc, and why the others did not fit."""

    fits: tuple[Fit, ...]
    best: str | None
    best_reason: str
    failures: dict[str, str]


def _as_arrays(x: ArrayLike, score: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    xs = np.asarray(x, dtype=float).ravel()
    ys = np.asarray(score, dtype=float).ravel()
    if xs.shape != ys.shape:
        raise ValueError("x and score must have the same length")
    return xs, ys


def pareto_frontier(
    cost: ArrayLike, score: ArrayLike, higher_is_better: bool = True
) -> NDArray[np.bool_]:
    """Mask of the runs that no other run beats on both cost and score.

    A run is dominated when another costs no more and scores at least as well, and is strictly
    better on one of the two. Identical runs do not dominate each other. The answer does not
    depend on the order of the rows.

    Example:
        >>> pareto_frontier([1, 2, 3, 4], [0.5, 0.4, 0.7, 0.7]).tolist()
        [True, False, True, False]
    """
    xs, ys = _as_arrays(cost, score)
    if not higher_is_better:
        ys = -ys
    mask = np.zeros(xs.shape, dtype=bool)
    if xs.size == 0:
        return mask
    # Cheapest first; among equal costs, best first. A cost group is on the frontier when its
    # best beats every cheaper group; all its runs that share that best are kept (ties).
    order = np.lexsort((-ys, xs))
    x_sorted, y_sorted = xs[order], ys[order]
    starts = np.flatnonzero(np.r_[True, x_sorted[1:] != x_sorted[:-1]])
    group_best = y_sorted[starts]
    cheaper_best = np.r_[-np.inf, np.maximum.accumulate(group_best)[:-1]]
    group_of = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, x_sorted.size]))
    keep = (group_best > cheaper_best)[group_of] & (y_sorted == group_best[group_of])
    mask[order[keep]] = True
    return mask


def _t_value(dof: int) -> float:
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof)) if dof > 0 else math.nan


def _aicc(rss: float, n: int, n_params: int) -> float | None:
    k = n_params + 1
    if n - k - 1 <= 0:
        return None
    rss = max(rss, 1e-300)  # an exact fit: keep the criterion finite
    return float(n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1))


def _predict(
    model: str, theta: Sequence[float], x: NDArray[np.float64], x_ref: float, higher: bool
) -> NDArray[np.float64]:
    sign = 1.0 if higher else -1.0
    if model == THOMPSON:
        a, b = theta
        error = 10**a * np.power(x, b)
        return 1.0 - error if higher else error
    if model == LOG_LINEAR:
        a, b = theta
        return a + b * np.log10(x)
    s_inf, c_scaled, d = theta
    return s_inf - sign * c_scaled * np.power(x / x_ref, -d)


def evaluate(
    model: str, parameters: dict[str, float], x: ArrayLike, higher_is_better: bool = True
) -> NDArray[np.float64]:
    """A fitted curve's score at ``x``, from its reported parameters (to draw it).

    Example:
        >>> evaluate("log-linear", {"a": 0.2, "b": 0.05}, [1e4, 1e8]).round(6).tolist()
        [0.4, 0.6]
    """
    names = {THOMPSON: ("a", "b"), LOG_LINEAR: ("a", "b"), SATURATING: ("s_inf", "c", "d")}
    theta = tuple(parameters[name] for name in names[model])
    return _predict(model, theta, np.asarray(x, dtype=float), 1.0, higher_is_better)


def _inverse(
    model: str,
    theta: Sequence[float] | NDArray[np.float64],
    score: float,
    x_ref: float,
    higher: bool,
) -> float | None:
    try:
        with np.errstate(all="ignore"):
            if model == THOMPSON:
                a, b = theta
                error = 1.0 - score if higher else score
                if error <= 0 or b == 0:
                    return None
                value = 10 ** ((math.log10(error) - a) / b)
            elif model == LOG_LINEAR:
                a, b = theta
                if b == 0:
                    return None
                value = 10 ** ((score - a) / b)
            else:
                s_inf, c_scaled, d = theta
                gap = (s_inf - score) if higher else (score - s_inf)
                if gap <= 0 or c_scaled <= 0 or d <= 0:
                    return None
                value = x_ref * (c_scaled / gap) ** (1 / d)
        return float(value) if math.isfinite(value) and value > 0 else None
    except (OverflowError, ZeroDivisionError, ValueError):
        return None  # beyond what a float can say: the curve does not get there


def _linear_fit(
    u: NDArray[np.float64], v: NDArray[np.float64]
) -> tuple[float, float, float, float, float, float]:
    """OLS of v on u: (a, b, se_a, se_b, cov_ab, r²)."""
    result = stats.linregress(u, v)
    b, a = float(result.slope), float(result.intercept)
    se_b, se_a = float(result.stderr), float(result.intercept_stderr)
    cov_ab = -float(np.mean(u)) * se_b**2
    return a, b, se_a, se_b, cov_ab, float(result.rvalue) ** 2


def _check_log_axis(xs: NDArray[np.float64]) -> None:
    if xs.size < MIN_RUNS:
        raise InsufficientData(
            f"need at least {MIN_RUNS} runs with a cost and a score, have {xs.size}"
        )
    if np.any(xs <= 0):
        raise InsufficientData("the x axis is logarithmic and some x are zero or negative")
    if np.all(xs == xs[0]):
        raise InsufficientData("all runs have the same x; a curve needs different costs")


def fit_thompson(x: ArrayLike, score: ArrayLike, higher_is_better: bool = True) -> Fit:
    """Fit error = 10^a·x^b by OLS of log10(error) on log10(x).

    For higher-is-better scores, error = 1 − score and scores must lie in [0, 1).

    Example:
        >>> fit = fit_thompson([1, 10, 100], [0.9, 0.99, 0.999])
        >>> round(fit.param("b"), 9), round(fit.param("a"), 9)
        (-1.0, -1.0)
    """
    xs, ys = _as_arrays(x, score)
    _check_log_axis(xs)
    error = 1.0 - ys if higher_is_better else ys
    if higher_is_better and (np.any(ys < 0) or np.any(ys > 1)):
        raise InsufficientData("the Thompson fit needs scores in [0, 1] (error = 1 − score)")
    if np.any(error <= 0):
        raise InsufficientData("the Thompson fit needs a positive error for every run")
    return _linear_model(
        THOMPSON,
        np.log10(xs),
        np.log10(error),
        xs,
        ys,
        higher_is_better,
        "log10(error) on log10(x)",
    )


def fit_log_linear(x: ArrayLike, score: ArrayLike, higher_is_better: bool = True) -> Fit:
    """Fit score = a + b·log10(x) by OLS (Sun et al.'s logarithmic data scaling)."""
    xs, ys = _as_arrays(x, score)
    _check_log_axis(xs)
    return _linear_model(
        LOG_LINEAR, np.log10(xs), ys, xs, ys, higher_is_better, "score on log10(x)"
    )


def _linear_model(
    model: str,
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    higher_is_better: bool,
    space: str,
) -> Fit:
    """A two-parameter model fitted as the OLS line v = a + b·u; RSS and AICc on the scores."""
    a, b, se_a, se_b, cov_ab, r2 = _linear_fit(u, v)
    n = xs.size
    t = _t_value(n - 2)
    theta = (a, b)
    rss = float(np.sum((ys - _predict(model, theta, xs, 1.0, higher_is_better)) ** 2))
    return Fit(
        model=model,
        formula=FORMULAS[model],
        parameters=(
            Parameter("a", a, se_a, a - t * se_a, a + t * se_a),
            Parameter("b", b, se_b, b - t * se_b, b + t * se_b),
        ),
        r_squared=r2,
        r_squared_space=space,
        rss=rss,
        aicc=_aicc(rss, n, 2),
        n=n,
        higher_is_better=higher_is_better,
        _theta=theta,
        _cov=((se_a**2, cov_ab), (cov_ab, se_b**2)),
    )


def fit_saturating(x: ArrayLike, score: ArrayLike, higher_is_better: bool = True) -> Fit:
    """Fit score = s_inf − c·x^(−d) with bounds c ≥ 0, 0 < d ≤ 10.

    For higher-is-better scores in [0, 1] the ceiling s_inf is bounded by 1. x is scaled by its
    geometric mean while fitting, so costs of any magnitude (FLOPs, kg) fit equally well.
    """
    xs, ys = _as_arrays(x, score)
    _check_log_axis(xs)
    n = xs.size
    if n < 4:
        raise InsufficientData("the saturating fit has 3 parameters and needs at least 4 runs")
    sign = 1.0 if higher_is_better else -1.0
    x_ref = float(np.exp(np.mean(np.log(xs))))
    span = float(ys.max() - ys.min()) or 1.0
    is_rate = bool(np.all((ys >= 0) & (ys <= 1)))
    if higher_is_better:
        start = min(ys.max() + 0.1 * span, 1.0) if is_rate else ys.max() + 0.1 * span
        lower = [float(ys.min()), 0.0, 1e-6]
        upper = [1.0 if is_rate else float(ys.max() + 100 * span), np.inf, 10.0]
    else:
        start = ys.min() - 0.1 * span
        lower = [-np.inf if not is_rate else 0.0, 0.0, 1e-6]
        upper = [float(ys.max()), np.inf, 10.0]
    start = float(np.clip(start, lower[0] + 1e-12, upper[0]))
    c0 = max(abs(start - float(np.median(ys))), 1e-6)

    def model(xv: NDArray[np.float64], s_inf: float, c: float, d: float) -> NDArray[np.float64]:
        return s_inf - sign * c * np.power(xv / x_ref, -d)

    try:
        with warnings.catch_warnings():
            # An unidentifiable fit warns and returns an infinite covariance, checked below.
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            theta_arr, cov_arr = optimize.curve_fit(
                model, xs, ys, p0=[start, c0, 0.5], bounds=(lower, upper), maxfev=20_000
            )
    except (RuntimeError, ValueError) as error:
        raise InsufficientData(f"the saturating fit did not converge: {error}") from error
    if not np.all(np.isfinite(cov_arr)):
        raise InsufficientData(
            "the saturating fit did not converge: its parameters are not "
            "identifiable from these runs"
        )
    s_inf, c_scaled, d = (float(v) for v in theta_arr)
    se = np.sqrt(np.clip(np.diag(cov_arr), 0, None))
    # Report c on the caller's x scale: c·x^(−d) = c_scaled·(x/x_ref)^(−d).
    c = c_scaled * x_ref**d
    grad_c = np.array([0.0, x_ref**d, c * math.log(x_ref)])
    se_c = float(math.sqrt(max(grad_c @ cov_arr @ grad_c, 0.0)))
    t = _t_value(n - 3)
    theta = (s_inf, c_scaled, d)
    predicted = model(xs, *theta)
    rss = float(np.sum((ys - predicted) ** 2))
    total = float(np.sum((ys - ys.mean()) ** 2))
    return Fit(
        model=SATURATING,
        formula=FORMULAS[SATURATING] if higher_is_better else "score = s_inf + c*x^(-d)",
        parameters=(
            Parameter("s_inf", s_inf, float(se[0]), s_inf - t * se[0], s_inf + t * se[0]),
            Parameter("c", c, se_c, c - t * se_c, c + t * se_c),
            Parameter("d", d, float(se[2]), d - t * se[2], d + t * se[2]),
        ),
        r_squared=1 - rss / total if total > 0 else 1.0,
        r_squared_space="score on x",
        rss=rss,
        aicc=_aicc(rss, n, 3),
        n=n,
        higher_is_better=higher_is_better,
        _theta=theta,
        _cov=tuple(tuple(float(v) for v in row) for row in cov_arr),
        _x_ref=x_ref,
    )


FITTERS: dict[str, Callable[[ArrayLike, ArrayLike, bool], Fit]] = {
    THOMPSON: fit_thompson,
    LOG_LINEAR: fit_log_linear,
    SATURATING: fit_saturating,
}


def fit_all(x: ArrayLike, score: ArrayLike, higher_is_better: bool = True) -> FitReport:
    """Fit every model; report those that converged and name the best by AICc."""
    fits, failures = [], {}
    for name, fitter in FITTERS.items():
        try:
            fits.append(fitter(x, score, higher_is_better))
        except InsufficientData as error:
            failures[name] = error.reason
    ranked = sorted((f for f in fits if f.aicc is not None), key=lambda f: f.aicc or 0.0)
    if ranked:
        return FitReport(tuple(fits), ranked[0].model, "lowest AICc on the score scale", failures)
    reason = (
        "no model converged"
        if not fits
        else "too few runs to compare models by AICc (2-parameter fits need 5, the saturating "
        "fit 6)"
    )
    return FitReport(tuple(fits), None, reason, failures)


def project(fit: Fit, target_score: float) -> Projection:
    """The x at which ``fit`` reaches ``target_score``, with a 95% interval.

    The interval comes from the parameter covariance by the delta method on log10(x*), with a
    t quantile on the fit's residual degrees of freedom.
    """
    method = "delta method on log10(x*), t distribution, 95%"

    def answer(
        x: float | None, low: float | None, high: float | None, reason: str | None
    ) -> Projection:
        return Projection(
            model=fit.model,
            target_score=target_score,
            x=x,
            x_low=low,
            x_high=high,
            method=method,
            reason=reason,
        )

    x_star = fit.inverse(target_score)
    if x_star is None:
        return answer(
            None,
            None,
            None,
            "the target is beyond the fitted ceiling"
            if fit.model == SATURATING
            else "the fitted curve never reaches the target",
        )
    theta = np.array(fit._theta)
    cov = np.array(fit._cov)

    def log_x(params: NDArray[np.float64]) -> float:
        value = _inverse(fit.model, params, target_score, fit._x_ref, fit.higher_is_better)
        return math.log10(value) if value else math.nan

    centre = math.log10(x_star)
    grad = np.zeros(theta.size)
    for i in range(theta.size):
        step = 1e-6 * max(abs(theta[i]), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        grad[i] = (log_x(up) - log_x(down)) / (2 * step)
    variance = float(grad @ cov @ grad)
    t = _t_value(fit.n - theta.size)
    if not (math.isfinite(variance) and math.isfinite(t)):
        return answer(x_star, None, None, "the interval is undefined for these runs")
    half = t * math.sqrt(max(variance, 0.0))
    return answer(x_star, 10 ** (centre - half), 10 ** (centre + half), None)


def point_size(score: ArrayLike) -> float:
    """One point of score: 0.01 for scores in [0, 1], else 1."""
    ys = np.asarray(score, dtype=float)
    return 0.01 if ys.size and np.all((ys >= 0) & (ys <= 1)) else 1.0


def marginal_cost(fit: Fit, best_x: float, point: float) -> MarginalCost:
    """Extra x for one more point of score, and for 1% less of the remaining error.

    Both start from the fit's own score at the best run's x, so they are differences along one
    curve rather than between the curve and a noisy run.
    """
    from_score = float(fit.predict(best_x))
    direction = 1.0 if fit.higher_is_better else -1.0
    next_x = fit.inverse(from_score + direction * point)
    per_point = next_x - best_x if next_x is not None else None
    per_error = None
    if point == 0.01:
        error = 1.0 - from_score if fit.higher_is_better else from_score
        target = 1.0 - 0.99 * error if fit.higher_is_better else 0.99 * error
        x_error = fit.inverse(target)
        per_error = x_error - best_x if x_error is not None else None
    reason = None if per_point is not None else "the fitted curve does not reach one more point"
    return MarginalCost(
        model=fit.model,
        from_x=best_x,
        from_score=from_score,
        point_size=point,
        extra_x_per_point=per_point,
        extra_x_per_percent_of_remaining_error=per_error,
        reason=reason,
    )
