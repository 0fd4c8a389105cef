"""Analytics as the service answers them: diminishing returns, NoFADE, a run's returns curve."""

from __future__ import annotations

import uuid
from enum import Enum

from pydantic import BaseModel, Field


# Which way a metric improves: accuracy-like (higher) or loss-like (lower). No docstring: the
# OpenAPI document takes a model's or enum's docstring as its description.
class Direction(str, Enum):
    # Upper-case members: a member named ``lower`` would shadow ``str.lower``.
    HIGHER = "higher"
    LOWER = "lower"

    @property
    def higher_is_better(self) -> bool:
        """Whether higher values of the metric are better (what the analytics functions take)."""
        return self is Direction.HIGHER


#: The direction of every query, command and report that does not name one: accuracy-like.
DEFAULT_DIRECTION = Direction.HIGHER


class GroupBy(str, Enum):
    dataset = "dataset"
    task = "task"


class Axis(BaseModel):
    name: str
    unit: str


class RunPoint(BaseModel):
    run_id: uuid.UUID
    name: str | None
    model: str | None
    dataset: str | None
    x: float
    score: float
    frontier: bool
    published: bool = Field(description="a run of the published-results catalog")


class ParameterOut(BaseModel):
    name: str
    value: float
    stderr: float
    ci_low: float
    ci_high: float


class FitOut(BaseModel):
    model: str
    formula: str
    parameters: list[ParameterOut]
    r_squared: float
    r_squared_space: str
    aicc: float | None = Field(description="on the score scale; null when n is too small")
    n: int
    cost_multiplier_to_halve_error: float | None


class ProjectionOut(BaseModel):
    model: str
    target_score: float
    x: float | None
    x_low: float | None
    x_high: float | None
    method: str
    reason: str | None


class MarginalCostOut(BaseModel):
    model: str
    from_x: float
    from_score: float = Field(description="the fit's score at the best run's x")
    point_size: float
    extra_x_per_point: float | None
    extra_x_per_percent_of_remaining_error: float | None
    reason: str | None


class DiminishingReturnsOut(BaseModel):
    status: str = Field(description="ok or insufficient_data")
    reason: str | None
    definition: str
    method: str
    x: Axis
    metric: str
    direction: Direction
    score: str = Field(description="how each run's score is taken from its metric points")
    point_size: float
    runs_used: int
    excluded: dict[str, int] = Field(description="runs left out, by reason")
    frontier_only: bool
    fits: list[FitOut]
    best_fit: str | None
    best_fit_reason: str | None
    failures: dict[str, str]
    frontier: list[RunPoint]
    projections: list[ProjectionOut]
    marginal_cost: MarginalCostOut | None
    runs: list[RunPoint] | None = Field(description="every run used, when include_runs=true")


class NofadeRun(BaseModel):
    run_id: uuid.UUID
    model: str | None
    dataset: str | None
    task: str | None
    score: float
    cost: float | None
    entropy_bits: float | None
    num_classes: int | None
    rho: float | None
    nofade: float | None
    approximate: bool
    reason: str | None
    published: bool


class Thresholds(BaseModel):
    saturated_sigma: float
    saturated_beta: float
    saturating_beta: float


class NofadeGroup(BaseModel):
    key: str | None
    runs_with_rho: int
    sigma: float | None = Field(description="best ρ reached")
    alpha: float | None
    beta: float | None = Field(description="ρ gained per tenfold cost, on the frontier")
    beta_stderr: float | None
    frontier_runs: int
    best_cost: float | None
    cost_for_next_rho_0_01: float | None
    status: str | None = Field(description="saturated, saturating or open")
    reason: str | None


class NofadeOut(BaseModel):
    definition: str
    note: str
    metric: str
    axis: Axis
    c0: float = Field(description="cost unit C0, in the axis unit")
    c0_label: str
    group_by: GroupBy
    thresholds: Thresholds
    runs_total: int
    runs: list[NofadeRun] = Field(description="highest NoFADE first, up to limit")
    groups: list[NofadeGroup]


class PlateauOut(BaseModel):
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


class MarginalGainOut(BaseModel):
    model: str
    per_kwh: float = Field(description="metric units per kWh (or per kg CO2e on that axis)")
    per_extra_10_percent_energy: float
    axis: str


class CurvePoint(BaseModel):
    step: int
    value: float
    energy_kwh: float
    co2_kg: float


class ReturnsOut(BaseModel):
    status: str
    reason: str | None
    definition: str
    run_id: uuid.UUID
    metric: str
    direction: Direction
    axis: Axis
    points_total: int
    curve: list[CurvePoint] = Field(
        description="an even sample of at most max_points steps, plus the plateau and last point"
    )
    total_energy_kwh: float | None
    total_co2_kg: float | None
    point_size: float | None
    fits: list[FitOut]
    best_fit: str | None
    best_fit_reason: str | None
    marginal_gain: MarginalGainOut | None
    plateau: PlateauOut | None
