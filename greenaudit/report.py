"""Carbon reports for a paper appendix: one run, or one group of runs, as Markdown or HTML.

:func:`gather` asks the service's REST API and keeps its answers as they came; the renderers
(:func:`render_markdown`, :func:`render_html`) only format those answers. No number in a report
is computed here: each one is a value of an API answer, rounded to :data:`SIGNIFICANT_DIGITS`
significant digits (counts and steps are printed exactly), so every figure can be traced back
to the request that produced it. The requests are listed at the end of each report.

The HTML version carries the returns-curve figure (plotly, drawn by the dashboards' own figure
builder, with plotly.js inlined so the file opens offline) and marks every value with
``data-field="<answer>.<path>"`` and its exact JSON in ``data-value``, so a test or a reader can
check it against the API.

Example:
    >>> from datetime import datetime, timezone
    >>> report = gather(  # doctest: +SKIP
    ...     "0b5b8f1e-6f3a-4c1e-9a55-3f1f2b2f7a10",
    ...     url="http://127.0.0.1:8000",
    ...     api_key="ga_...",
    ... )
    >>> print(render_markdown(report))  # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from greenaudit._version import __version__
from greenaudit.schemas.analytics import DEFAULT_DIRECTION, Direction

#: Significant digits of every non-integer number in a report.
SIGNIFICANT_DIGITS = 4
#: Points of the returns curve asked of the API by default: enough for the figure, few enough
#: for a table in an appendix. The API samples the curve evenly and always keeps the plateau
#: and the last point.
DEFAULT_CURVE_POINTS = 50
#: Runs per page when listing a group (the API's largest page).
RUNS_PAGE = 500
#: Runs a NoFADE answer lists at most (the API's largest ``limit``).
NOFADE_LIMIT = 10_000
#: Printed for a value the API answered as null.
MISSING = "-"

# What each measurement method means for a reader: measured by a counter, or estimated.
METHODS = {
    "nvml-counter": "measured by the GPU's cumulative energy counter (NVML)",
    "nvml-power": "measured: NVML power readings integrated over time (no energy counter)",
    "rapl": "measured by the CPU's RAPL energy counters",
    "codecarbon": "estimated by CodeCarbon's load-based model",
    "tdp-estimate": "estimated from the CPU's rated TDP",
}
COMPONENTS = (("cpu", "CPU"), ("gpu", "GPU"), ("ram", "RAM"))
# Known hardware keys, in the order a reader expects them, with their units.
HARDWARE_LABELS = {
    "node": "node",
    "rank": "rank",
    "local_rank": "local rank",
    "world_size": "world size (processes)",
    "cpu_model": "CPU model",
    "cpu_count": "CPU cores (count)",
    "gpu_model": "GPU model",
    "gpu_count": "GPUs (count)",
    "ram_total_gb": "RAM (GB)",
}


class ReportFormat(str, Enum):
    """Output format of ``greenaudit report``."""

    md = "md"
    html = "html"


# NoFADE and a group's ranking by it are defined on a score where higher is better.
NOFADE_NEEDS_HIGHER = (
    "NoFADE is defined on a score where higher is better (an accuracy), and this report's "
    "metric is lower-is-better"
)


class ReportError(Exception):
    """The service could not be reached, or refused a request; the message says what to do."""


# The API's answers, as the report reads them. Field names are those of the service's schemas
# (api/runs/schemas.py, api/analytics/schemas.py, api/totals/schemas.py); keys the report does not
# use are dropped on validation, and a renamed field fails loudly instead of printing nothing.
class AxisAnswer(TypedDict):
    """A cost axis and its unit."""

    name: str
    unit: str


class RunTotalsAnswer(TypedDict):
    """``RunOut.totals``: kWh, kg CO2e and GPU-hours of one run, with the methods used."""

    energy_kwh: float
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    co2_kg: float
    gpu_hours: float
    energy_samples: int
    methods: dict[str, list[str]]
    j_per_sample: float | None


class RunAnswer(TypedDict):
    """``GET /api/v1/runs/{id}``."""

    id: str
    name: str | None
    kind: str
    status: str
    model: str | None
    model_params: int | None
    flops: float | None
    dataset: str | None
    dataset_version: str | None
    dataset_size: int | None
    task: str | None
    primary_metric: str | None
    parent_run_id: str | None
    group: str | None
    node: str | None
    world_size: int
    hardware: dict[str, Any]
    country_iso: str | None
    carbon_intensity_g_per_kwh: float
    carbon_intensity_source: str
    pue: float
    samples_processed: int | None
    total_steps: int | None
    duration_s: float | None
    started_at: str
    ended_at: str | None
    totals: RunTotalsAnswer


class ParameterAnswer(TypedDict):
    """A fitted parameter with its standard error and 95% interval."""

    name: str
    value: float
    stderr: float
    ci_low: float
    ci_high: float


class FitAnswer(TypedDict):
    """One fitted curve."""

    model: str
    formula: str
    parameters: list[ParameterAnswer]
    r_squared: float
    aicc: float | None
    n: int


class CurvePointAnswer(TypedDict):
    """A metric point with the cumulative energy (kWh) and CO2 (kg) spent up to it."""

    step: int
    value: float
    energy_kwh: float
    co2_kg: float


class PlateauAnswer(TypedDict):
    """The plateau of a run and what was spent after it."""

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


class MarginalGainAnswer(TypedDict):
    """What the fitted curve says the last energy bought."""

    model: str
    per_kwh: float
    per_extra_10_percent_energy: float
    axis: str


class ReturnsAnswer(TypedDict):
    """``GET /api/v1/runs/{id}/returns``."""

    status: str
    reason: str | None
    definition: str
    metric: str
    direction: str
    axis: AxisAnswer
    points_total: int
    curve: list[CurvePointAnswer]
    total_energy_kwh: float | None
    total_co2_kg: float | None
    point_size: float | None
    fits: list[FitAnswer]
    best_fit: str | None
    best_fit_reason: str | None
    marginal_gain: MarginalGainAnswer | None
    plateau: PlateauAnswer | None


class CostAnswer(TypedDict):
    """Energy (kWh), CO2 (kg) and GPU-hours of one or more runs."""

    energy_kwh: float
    co2_kg: float
    gpu_hours: float
    runs: int


class CostOfRunAnswer(TypedDict):
    """One run counted in a creation cost."""

    id: str
    name: str | None
    group: str | None
    relation: str
    energy_kwh: float
    co2_kg: float
    gpu_hours: float


class CreationCostAnswer(TypedDict):
    """``GET /api/v1/runs/{id}/cost``."""

    run_id: str
    final: CostAnswer
    creation: CostAnswer
    energy_ratio: float | None
    co2_ratio: float | None
    runs: list[CostOfRunAnswer]


class NofadeRunAnswer(TypedDict):
    """One run of ``GET /api/v1/analytics/nofade``: its score, ρ and NoFADE."""

    run_id: str
    model: str | None
    dataset: str | None
    score: float
    cost: float | None
    entropy_bits: float | None
    num_classes: int | None
    rho: float | None
    nofade: float | None
    approximate: bool
    reason: str | None


class NofadeGroupAnswer(TypedDict):
    """The saturation of one dataset (or task) in a NoFADE answer."""

    key: str | None
    runs_with_rho: int
    sigma: float | None
    alpha: float | None
    beta: float | None
    beta_stderr: float | None
    frontier_runs: int
    best_cost: float | None
    cost_for_next_rho_0_01: float | None
    status: str | None
    reason: str | None


class ThresholdsAnswer(TypedDict):
    """Where a dataset counts as saturated or saturating."""

    saturated_sigma: float
    saturated_beta: float
    saturating_beta: float


class NofadeAnswer(TypedDict):
    """``GET /api/v1/analytics/nofade``."""

    definition: str
    note: str
    metric: str
    axis: AxisAnswer
    c0: float
    c0_label: str
    group_by: str
    thresholds: ThresholdsAnswer
    runs_total: int
    runs: list[NofadeRunAnswer]
    groups: list[NofadeGroupAnswer]


class TotalsRowAnswer(TypedDict):
    """One row of ``GET /api/v1/totals``."""

    key: str | None
    runs: int
    energy_kwh: float
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    co2_kg: float
    gpu_hours: float
    duration_s: float
    j_per_sample: float | None


class TotalsAnswer(TypedDict):
    """``GET /api/v1/totals``."""

    by: str
    rows: list[TotalsRowAnswer]


class RunPageAnswer(TypedDict):
    """One page of ``GET /api/v1/runs``."""

    items: list[RunAnswer]
    total: int


@dataclass(frozen=True)
class Provenance:
    """Where and when a report's answers were asked for, and which requests gave them."""

    service_url: str
    generated_at: datetime
    version: str
    requests: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunNofade:
    """NoFADE of one run: the answer's definition and axis, the run's entry, its dataset's."""

    answer: NofadeAnswer
    run: NofadeRunAnswer | None
    dataset: NofadeGroupAnswer | None
    reason: str | None = None


@dataclass(frozen=True)
class RunReport:
    """Everything a report on one run prints, as the API answered it."""

    provenance: Provenance
    run: RunAnswer
    returns: ReturnsAnswer
    cost: CreationCostAnswer
    nofade: RunNofade


@dataclass(frozen=True)
class GroupReport:
    """Everything a report on a group of runs (a sweep, a search) prints."""

    provenance: Provenance
    group: str
    metric: str
    runs: list[RunAnswer]
    totals: TotalsRowAnswer | None
    scores: NofadeAnswer
    best: RunAnswer | None
    best_returns: ReturnsAnswer | None
    best_cost: CreationCostAnswer | None


Report = RunReport | GroupReport

Answer = TypeVar("Answer")


class _Api:
    """A read key on one service: GET requests whose answers are checked and remembered."""

    def __init__(self, client: httpx.Client, base: str, requests: list[str]) -> None:
        self._client = client
        self._base = base
        self.requests = requests

    def get(self, path: str, params: dict[str, Any], shape: TypeAdapter[Answer]) -> Answer:
        query = {k: v for k, v in params.items() if v is not None}
        request = self._client.build_request("GET", path, params=query)
        # The report lists each request so a reader can ask the service the same questions.
        self.requests.append(f"GET {request.url.raw_path.decode()}")
        try:
            response = self._client.send(request)
        except httpx.HTTPError as error:
            raise ReportError(f"cannot reach {self._base}: {error}") from error
        if response.status_code != 200:
            raise ReportError(_refusal(response))
        try:
            return shape.validate_python(response.json())
        except (ValueError, ValidationError) as error:
            raise ReportError(
                f"the service's answer to GET {path} is not what this greenaudit "
                f"({__version__}) expects: {error}"
            ) from error


def _refusal(response: httpx.Response) -> str:
    """A refused request, worded for a terminal."""
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code == 401:
        return (
            f"the service refused the key (HTTP 401 on {where}): set GREENAUDIT_API_KEY to a "
            f"read or write key of the project ({detail})"
        )
    if response.status_code == 404:
        return f"not found (HTTP 404 on {where}): {detail}"
    return f"HTTP {response.status_code} on {where}: {detail}"


_RUN = TypeAdapter(RunAnswer)
_RUNS = TypeAdapter(RunPageAnswer)
_RETURNS = TypeAdapter(ReturnsAnswer)
_COST = TypeAdapter(CreationCostAnswer)
_NOFADE = TypeAdapter(NofadeAnswer)
_TOTALS = TypeAdapter(TotalsAnswer)


def is_run_id(target: str) -> bool:
    """Whether ``target`` names a run (a UUID) rather than a group.

    Example:
        >>> is_run_id("0b5b8f1e-6f3a-4c1e-9a55-3f1f2b2f7a10"), is_run_id("sweep-a")
        (True, False)
    """
    try:
        uuid.UUID(target)
    except ValueError:
        return False
    return True


def gather(
    target: str,
    *,
    url: str,
    api_key: str,
    metric: str | None = None,
    direction: Direction = DEFAULT_DIRECTION,
    curve_points: int = DEFAULT_CURVE_POINTS,
    generated_at: datetime | None = None,
    timeout_s: float = 60.0,
) -> Report:
    """Ask the service everything a report on ``target`` prints.

    Args:
        target: A run id (UUID), or else the name of a group of runs.
        url: The service's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: A read (or write) key of the project.
        metric: The metric of the returns curve and NoFADE; default the run's primary metric
            (for a group, the primary metric most of its runs name).
        direction: Whether higher or lower values of the metric are better. With ``lower`` (a
            loss), the run's returns curve and plateau are taken that way and NoFADE, defined
            on higher-is-better scores, is left out; a group report, which ranks runs by
            NoFADE's score, refuses it.
        curve_points: Most points of the returns curve to ask for (10 to 100,000).
        generated_at: The time printed as the report's generation time (UTC); default now.
        timeout_s: Seconds to wait for each answer.

    Returns:
        A :class:`RunReport` or :class:`GroupReport` holding the answers.

    Raises:
        ReportError: The service could not be reached or refused a request (unknown run 404,
            bad key 401), a group has no runs, or a group was asked for with ``lower``.
    """
    base = url.rstrip("/")
    provenance = Provenance(
        service_url=base,
        generated_at=(generated_at or datetime.now(timezone.utc)).astimezone(timezone.utc),
        version=__version__,
    )
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout_s
    ) as client:
        api = _Api(client, base, provenance.requests)
        if is_run_id(target):
            return _gather_run(api, provenance, target, metric, direction, curve_points)
        if direction is Direction.LOWER:
            raise ReportError(
                "a group report ranks its runs by their highest score and NoFADE, which need a "
                "higher-is-better metric; report on one run with --direction lower instead"
            )
        return _gather_group(api, provenance, target, metric, curve_points)


def _gather_run(
    api: _Api,
    provenance: Provenance,
    run_id: str,
    metric: str | None,
    direction: Direction,
    curve_points: int,
) -> RunReport:
    run = api.get(f"/api/v1/runs/{run_id}", {}, _RUN)
    returns = api.get(
        f"/api/v1/runs/{run_id}/returns",
        {"metric": metric, "direction": direction.value, "max_points": curve_points},
        _RETURNS,
    )
    cost = api.get(f"/api/v1/runs/{run_id}/cost", {}, _COST)
    nofade = _nofade_of_run(api, run, returns)
    if direction is Direction.LOWER:
        # The answer's definition is still shown; the run's entry would rank a loss upside down.
        nofade = RunNofade(answer=nofade.answer, run=None, dataset=None, reason=NOFADE_NEEDS_HIGHER)
    return RunReport(
        provenance=provenance,
        run=run,
        returns=returns,
        cost=cost,
        nofade=nofade,
    )


def _nofade_of_run(api: _Api, run: RunAnswer, returns: ReturnsAnswer) -> RunNofade:
    """The run's entry in the NoFADE answer for its dataset, and its dataset's saturation.

    The API has no per-run NoFADE route: it lists runs by NoFADE, so the run is picked out of
    the answer for its dataset by id. Should the dataset have more runs than one answer lists,
    a second question narrowed to the run's model, task, group and kind finds it.
    """
    metric = returns["metric"]
    wide = {"metric": metric, "dataset": run["dataset"], "limit": NOFADE_LIMIT}
    answer = api.get("/api/v1/analytics/nofade", wide, _NOFADE)
    entry = _entry_of(answer, run["id"])
    if entry is None and answer["runs_total"] > len(answer["runs"]):
        narrow = {
            **wide,
            "model": run["model"],
            "task": run["task"],
            "group": run["group"],
            "kind": run["kind"],
        }
        entry = _entry_of(api.get("/api/v1/analytics/nofade", narrow, _NOFADE), run["id"])
    dataset = None
    if run["dataset"] is not None:
        dataset = next((g for g in answer["groups"] if g["key"] == run["dataset"]), None)
    reason = None
    if entry is None:
        reason = (
            f"the run has no points of {metric!r}"
            if returns["points_total"] == 0
            else "the run is not among the runs the NoFADE answer lists"
        )
    return RunNofade(answer=answer, run=entry, dataset=dataset, reason=reason)


def _entry_of(answer: NofadeAnswer, run_id: str) -> NofadeRunAnswer | None:
    return next((r for r in answer["runs"] if r["run_id"] == run_id), None)


def _gather_group(
    api: _Api, provenance: Provenance, group: str, metric: str | None, curve_points: int
) -> GroupReport:
    runs: list[RunAnswer] = []
    while True:
        page = api.get(
            "/api/v1/runs",
            {
                "group": group,
                "limit": RUNS_PAGE,
                "offset": len(runs),
                "sort": "started_at",
                "order": "asc",
            },
            _RUNS,
        )
        runs += page["items"]
        if not page["items"] or len(runs) >= page["total"]:
            break
    if not runs:
        raise ReportError(f"the group {group!r} has no runs in the key's project")
    # Started first, listed first; the id settles runs started at the same instant, so the
    # order is the same on every database.
    runs.sort(key=lambda r: (r["started_at"], r["id"]))
    named = Counter(r["primary_metric"] for r in runs if r["primary_metric"])
    chosen = metric or min(named, key=lambda m: (-named[m], m), default="accuracy")
    totals = api.get("/api/v1/totals", {"by": "project", "group": group}, _TOTALS)
    scores = api.get(
        "/api/v1/analytics/nofade",
        {"metric": chosen, "group": group, "limit": NOFADE_LIMIT},
        _NOFADE,
    )
    # The answer lists runs highest NoFADE first, so among equal scores the cheaper run wins.
    members = {r["id"] for r in runs}
    scored = [entry for entry in scores["runs"] if entry["run_id"] in members]
    best_entry = max(scored, key=lambda entry: entry["score"], default=None)
    best = next((r for r in runs if best_entry and r["id"] == best_entry["run_id"]), None)
    best_returns = best_cost = None
    if best is not None:
        best_returns = api.get(
            f"/api/v1/runs/{best['id']}/returns",
            {"metric": chosen, "max_points": curve_points},
            _RETURNS,
        )
        best_cost = api.get(f"/api/v1/runs/{best['id']}/cost", {}, _COST)
    return GroupReport(
        provenance=provenance,
        group=group,
        metric=chosen,
        runs=runs,
        totals=totals["rows"][0] if totals["rows"] else None,
        scores=scores,
        best=best,
        best_returns=best_returns,
        best_cost=best_cost,
    )


# A report is a list of blocks, rendered to Markdown or to HTML, so both carry the same tables.
@dataclass(frozen=True)
class Value:
    """A value of an API answer, and its path in the answers (``run.totals.co2_kg``)."""

    value: Any
    field: str


Part = str | Value
#: A table cell: one part, or several printed one after the other.
Cell = Part | tuple[Part, ...]


@dataclass(frozen=True)
class Heading:
    """A section title."""

    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    """Prose with values of the answers in it."""

    parts: list[Part]


@dataclass(frozen=True)
class Table:
    """A table; the id names it in HTML."""

    id: str
    headers: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class Figure:
    """The returns curve: a plotly figure in HTML, a pointer to it in Markdown."""

    returns: ReturnsAnswer
    id: str


@dataclass(frozen=True)
class Generated:
    """The one line that differs between two reports of the same data."""

    provenance: Provenance


Block = Heading | Paragraph | Table | Figure | Generated


def number(value: Any) -> str:
    """A value as a report prints it: 4 significant digits, integers exact, null as ``-``.

    Example:
        >>> number(0.030250000000000003), number(1234567.0), number(12), number(None)
        ('0.03025', '1.235e+06', '12', '-')
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{SIGNIFICANT_DIGITS}g}"
    if isinstance(value, list):
        return ", ".join(number(v) for v in value) or MISSING
    return str(value)


def lookup(answers: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` in an answer; in a list, a key is an index or an item's id.

    Example:
        >>> lookup({"runs": [{"run_id": "a", "rho": 0.5}]}, ["runs", "a", "rho"])
        0.5
    """
    value = answers
    for key in path:
        if isinstance(value, list):
            value = (
                value[int(key)]
                if key.isdigit()
                else next(v for v in value if key in (v.get("id"), v.get("run_id")))
            )
        else:
            value = value[key]
    return value


def _at(answer: Any, path: str) -> Value:
    """The value at ``path`` (``run.totals.co2_kg``); the first name says which answer it is."""
    return Value(lookup(answer, path.split(".")[1:]), path)


def _provenance_parts(run: RunAnswer, root: str) -> list[Part]:
    """How a run was measured, in words, with the API's methods, intensity and PUE."""
    parts: list[Part] = []
    for component, label in COMPONENTS:
        methods = run["totals"]["methods"].get(component, [])
        if not methods:
            parts.append(f"{label} energy was not measured. ")
            continue
        described = "; ".join(METHODS.get(m, "an unknown method") for m in methods)
        parts += [
            f"{label} energy: ",
            _at(run, f"{root}.totals.methods.{component}"),
            f" ({described}). ",
        ]
    parts += [
        "CO2e is that energy times the carbon intensity of the electricity, ",
        _at(run, f"{root}.carbon_intensity_g_per_kwh"),
        " g CO2e/kWh (source: ",
        _at(run, f"{root}.carbon_intensity_source"),
        "; country ",
        _at(run, f"{root}.country_iso"),
        "), times the data centre's power usage effectiveness (PUE) of ",
        _at(run, f"{root}.pue"),
        ".",
    ]
    return parts


ROUNDING = (
    "Every number is the service's answer to one of the requests listed under Sources, "
    f"rounded to {SIGNIFICANT_DIGITS} significant digits (counts and steps are exact); "
    f"'{MISSING}' marks a value the service does not have. Units are in each label: kWh, "
    "kg CO2e, g CO2e/kWh, GPU-hours, seconds."
)
RETURNS_METHOD = (
    "The returns curve joins each logged value of the metric to the energy and CO2e measured "
    "up to its time (samples are spread evenly over their interval, ranks summed). The plateau "
    "is the first point after which the best value so far gains less than ε; what was spent "
    "after it bought at most ε."
)


def _run_blocks(run: RunAnswer, root: str) -> list[Block]:
    """The run's description, hardware, energy by component and carbon accounting."""
    described = [
        ("run id", "id"),
        ("name", "name"),
        ("model", "model"),
        ("model parameters (count)", "model_params"),
        ("training compute (FLOPs)", "flops"),
        ("dataset", "dataset"),
        ("dataset version", "dataset_version"),
        ("dataset size (samples)", "dataset_size"),
        ("task", "task"),
        ("primary metric", "primary_metric"),
        ("kind", "kind"),
        ("status", "status"),
        ("group", "group"),
        ("parent run", "parent_run_id"),
        ("started (ISO 8601, UTC)", "started_at"),
        ("ended (ISO 8601, UTC)", "ended_at"),
        ("duration (s)", "duration_s"),
        ("training samples processed (count)", "samples_processed"),
        ("total steps (count)", "total_steps"),
    ]
    hardware = run["hardware"]
    known = [
        key for key in HARDWARE_LABELS if key in hardware and key not in ("node", "world_size")
    ]
    others = sorted(key for key in hardware if key not in HARDWARE_LABELS)
    energy_rows: list[list[Cell]] = []
    for component, label in COMPONENTS:
        methods = run["totals"]["methods"].get(component, [])
        energy_rows.append(
            [
                label,
                _at(run, f"{root}.totals.{component}_kwh"),
                _at(run, f"{root}.totals.methods.{component}"),
                "; ".join(METHODS.get(m, "an unknown method") for m in methods) or "not measured",
            ]
        )
    energy_rows.append(["total", _at(run, f"{root}.totals.energy_kwh"), "", ""])
    hardware_rows: list[list[Cell]] = [
        ["node", _at(run, f"{root}.node")],
        ["world size (processes)", _at(run, f"{root}.world_size")],
    ]
    hardware_rows += [[HARDWARE_LABELS[key], _at(run, f"{root}.hardware.{key}")] for key in known]
    hardware_rows += [[key, _at(run, f"{root}.hardware.{key}")] for key in others]
    return [
        Heading(2, "Run"),
        Table(
            f"{root}-run",
            ["field", "value"],
            [[label, _at(run, f"{root}.{key}")] for label, key in described],
        ),
        Heading(2, "Hardware"),
        Table(
            f"{root}-hardware",
            ["field", "value"],
            hardware_rows,
        ),
        Heading(2, "Energy by component"),
        Table(
            f"{root}-energy",
            ["component", "energy (kWh)", "method", "measured or estimated"],
            energy_rows,
        ),
        Heading(2, "Carbon"),
        Table(
            f"{root}-carbon",
            ["quantity", "value"],
            [
                ["CO2e (kg)", _at(run, f"{root}.totals.co2_kg")],
                ["carbon intensity (g CO2e/kWh)", _at(run, f"{root}.carbon_intensity_g_per_kwh")],
                ["carbon intensity source", _at(run, f"{root}.carbon_intensity_source")],
                ["country (ISO 3166 alpha-3)", _at(run, f"{root}.country_iso")],
                ["PUE (ratio)", _at(run, f"{root}.pue")],
                ["GPU time (GPU-hours)", _at(run, f"{root}.totals.gpu_hours")],
                ["energy samples (count)", _at(run, f"{root}.totals.energy_samples")],
                ["energy per training sample (J)", _at(run, f"{root}.totals.j_per_sample")],
            ],
        ),
    ]


def _returns_blocks(returns: ReturnsAnswer, root: str, best: Value | None) -> list[Block]:
    """The returns curve, its plateau and fits, the figure and the curve's points."""
    metric = returns["metric"]
    blocks: list[Block] = [
        Heading(2, f"Returns: {metric} against cumulative {returns['axis']['unit']}")
    ]
    if returns["status"] != "ok":
        blocks.append(
            Paragraph(
                [
                    "There is no returns curve (",
                    _at(returns, f"{root}.status"),
                    "): ",
                    _at(returns, f"{root}.reason"),
                    ".",
                ]
            )
        )
        return blocks
    rows: list[list[Cell]] = [
        ["metric", _at(returns, f"{root}.metric")],
        ["better", _at(returns, f"{root}.direction")],
        ["points logged (count)", _at(returns, f"{root}.points_total")],
    ]
    if best is not None:
        rows.append([f"best {metric} (highest logged)", best])
    if returns["curve"]:
        last = len(returns["curve"]) - 1
        rows += [
            ["last step logged (step)", _at(returns, f"{root}.curve.{last}.step")],
            [f"{metric} at the last step", _at(returns, f"{root}.curve.{last}.value")],
        ]
    rows += [
        ["energy of the run (kWh)", _at(returns, f"{root}.total_energy_kwh")],
        ["CO2e of the run (kg)", _at(returns, f"{root}.total_co2_kg")],
    ]
    if returns["plateau"] is not None:
        p = f"{root}.plateau"
        rows += [
            ["plateau (step)", _at(returns, f"{p}.step")],
            [f"{metric} at the plateau", _at(returns, f"{p}.value")],
            [f"ε ({metric})", _at(returns, f"{p}.epsilon")],
            ["energy up to the plateau (kWh)", _at(returns, f"{p}.energy_kwh")],
            ["CO2e up to the plateau (kg)", _at(returns, f"{p}.co2_kg")],
            ["energy after the plateau (kWh)", _at(returns, f"{p}.energy_after_kwh")],
            ["CO2e after the plateau (kg)", _at(returns, f"{p}.co2_after_kg")],
            [
                "share of the run's energy spent after the plateau (fraction)",
                _at(returns, f"{p}.share_of_energy_after"),
            ],
            [f"{metric} gained after the plateau", _at(returns, f"{p}.gain_after")],
            ["in words", _at(returns, f"{p}.summary")],
        ]
    gain = returns["marginal_gain"]
    if gain is not None:
        g = f"{root}.marginal_gain"
        per = "kWh" if gain["axis"] == "energy_kwh" else "kg CO2e"
        rows += [
            ["fit behind the marginal gain", _at(returns, f"{g}.model")],
            [f"marginal gain at the end ({metric} per {per})", _at(returns, f"{g}.per_kwh")],
            [
                f"gain from 10% more energy ({metric})",
                _at(returns, f"{g}.per_extra_10_percent_energy"),
            ],
        ]
    blocks.append(Table(f"{root}-summary", ["quantity", "value"], rows))
    if returns["fits"]:
        fits: list[list[Cell]] = []
        for i, fit in enumerate(returns["fits"]):
            f = f"{root}.fits.{i}"
            parameters: list[Part] = []
            for j, parameter in enumerate(fit["parameters"]):
                parameters += [
                    f"{'; ' if j else ''}{parameter['name']} = ",
                    _at(returns, f"{f}.parameters.{j}.value"),
                    " ± ",
                    _at(returns, f"{f}.parameters.{j}.stderr"),
                ]
            fits.append(
                [
                    _at(returns, f"{f}.model"),
                    _at(returns, f"{f}.formula"),
                    tuple(parameters),
                    _at(returns, f"{f}.r_squared"),
                    _at(returns, f"{f}.aicc"),
                    _at(returns, f"{f}.n"),
                ]
            )
        blocks.append(
            Table(
                f"{root}-fits",
                ["fit", "formula", "parameters (± standard error)", "R²", "AICc", "points (count)"],
                fits,
            )
        )
        blocks.append(
            Paragraph(
                [
                    "Best fit: ",
                    _at(returns, f"{root}.best_fit"),
                    " (",
                    _at(returns, f"{root}.best_fit_reason"),
                    ").",
                ]
            )
        )
    else:
        blocks.append(Paragraph(["No fit: ", _at(returns, f"{root}.best_fit_reason"), "."]))
    blocks.append(Figure(returns, f"{root}-figure"))
    blocks.append(
        Table(
            f"{root}-curve",
            ["step", "cumulative energy (kWh)", "cumulative CO2e (kg)", metric],
            [
                [
                    _at(returns, f"{root}.curve.{i}.step"),
                    _at(returns, f"{root}.curve.{i}.energy_kwh"),
                    _at(returns, f"{root}.curve.{i}.co2_kg"),
                    _at(returns, f"{root}.curve.{i}.value"),
                ]
                for i in range(len(returns["curve"]))
            ],
        )
    )
    return blocks


def _cost_blocks(cost: CreationCostAnswer, root: str) -> list[Block]:
    """What creating the run's model cost: the run, its ancestors, its searches' trials."""
    return [
        Heading(2, "Cost of creating the model"),
        Paragraph(
            [
                "Creation counts the run, its ancestors through parent_run_id (pre-training) "
                "and every other run of the groups they belong to (search trials), each once. "
                "Creating the model took ",
                _at(cost, f"{root}.energy_ratio"),
                " times the energy and ",
                _at(cost, f"{root}.co2_ratio"),
                " times the CO2e of the run alone.",
            ]
        ),
        Table(
            f"{root}-totals",
            ["scope", "runs (count)", "energy (kWh)", "CO2e (kg)", "GPU time (GPU-hours)"],
            [
                [
                    label,
                    _at(cost, f"{root}.{scope}.runs"),
                    _at(cost, f"{root}.{scope}.energy_kwh"),
                    _at(cost, f"{root}.{scope}.co2_kg"),
                    _at(cost, f"{root}.{scope}.gpu_hours"),
                ]
                for label, scope in (("this run", "final"), ("creation", "creation"))
            ],
        ),
        Table(
            f"{root}-runs",
            ["relation", "run", "group", "energy (kWh)", "CO2e (kg)", "GPU time (GPU-hours)"],
            [
                [
                    _at(cost, f"{root}.runs.{i}.relation"),
                    (
                        _at(cost, f"{root}.runs.{i}.name"),
                        " (",
                        _at(cost, f"{root}.runs.{i}.id"),
                        ")",
                    ),
                    _at(cost, f"{root}.runs.{i}.group"),
                    _at(cost, f"{root}.runs.{i}.energy_kwh"),
                    _at(cost, f"{root}.runs.{i}.co2_kg"),
                    _at(cost, f"{root}.runs.{i}.gpu_hours"),
                ]
                for i in range(len(cost["runs"]))
            ],
        ),
    ]


def _nofade_blocks(nofade: RunNofade) -> list[Block]:
    """ρ and NoFADE of the run, and the saturation of its dataset."""
    answer = nofade.answer
    unit = answer["axis"]["unit"]
    blocks: list[Block] = [
        Heading(2, f"ρ and NoFADE ({answer['definition']})"),
        Paragraph([_at(answer, "nofade.note")]),
    ]
    if nofade.run is None:
        blocks.append(Paragraph([f"The run has no NoFADE entry: {nofade.reason}."]))
    else:
        entry = nofade.run
        blocks.append(
            Table(
                "nofade-run",
                ["quantity", "value"],
                [
                    ["metric", _at(answer, "nofade.metric")],
                    [f"best {answer['metric']} (highest logged)", _at(entry, "nofade_run.score")],
                    ["cost axis", _at(answer, "nofade.axis.name")],
                    ["cost unit C0", _at(answer, "nofade.c0_label")],
                    [f"cost C ({unit})", _at(entry, "nofade_run.cost")],
                    ["dataset label entropy H (bits)", _at(entry, "nofade_run.entropy_bits")],
                    ["classes K (count)", _at(entry, "nofade_run.num_classes")],
                    [
                        "ρ, share of the label entropy resolved (fraction)",
                        _at(entry, "nofade_run.rho"),
                    ],
                    ["NoFADE = ρ / (1 + log10(1 + C/C0))", _at(entry, "nofade_run.nofade")],
                    [
                        "approximate (metric is not an accuracy)",
                        _at(entry, "nofade_run.approximate"),
                    ],
                    ["note", _at(entry, "nofade_run.reason")],
                ],
            )
        )
    if nofade.dataset is not None:
        d = nofade.dataset
        blocks.append(
            Table(
                "nofade-dataset",
                ["saturation of the dataset", "value"],
                [
                    ["dataset", _at(d, "nofade_dataset.key")],
                    ["runs with ρ (count)", _at(d, "nofade_dataset.runs_with_rho")],
                    ["σ, best ρ reached (fraction)", _at(d, "nofade_dataset.sigma")],
                    ["β, ρ gained per tenfold cost", _at(d, "nofade_dataset.beta")],
                    ["standard error of β", _at(d, "nofade_dataset.beta_stderr")],
                    ["α, ρ at C = 1 cost unit", _at(d, "nofade_dataset.alpha")],
                    ["frontier runs (count)", _at(d, "nofade_dataset.frontier_runs")],
                    [f"cost of the best run ({unit})", _at(d, "nofade_dataset.best_cost")],
                    [
                        f"cost of the next +0.01 of ρ ({unit})",
                        _at(d, "nofade_dataset.cost_for_next_rho_0_01"),
                    ],
                    ["status", _at(d, "nofade_dataset.status")],
                    ["note", _at(d, "nofade_dataset.reason")],
                    [
                        "thresholds",
                        (
                            "saturated when σ ≥ ",
                            _at(answer, "nofade.thresholds.saturated_sigma"),
                            " or β < ",
                            _at(answer, "nofade.thresholds.saturated_beta"),
                            "; saturating when β < ",
                            _at(answer, "nofade.thresholds.saturating_beta"),
                        ),
                    ],
                ],
            )
        )
    return blocks


def _sources(provenance: Provenance) -> list[Block]:
    return [
        Heading(2, "Sources"),
        # The service and version are on the generation line; here only what reproduces.
        Paragraph(["The service's answers to these requests, in this order, with a read key:"]),
        Table("sources", ["request"], [[request] for request in provenance.requests]),
    ]


def run_report_blocks(report: RunReport) -> list[Block]:
    """The blocks of a report on one run, in order."""
    run = report.run
    best = _at(report.nofade.run, "nofade_run.score") if report.nofade.run else None
    return [
        Heading(1, f"Carbon report: run {run['name'] or run['id']}"),
        Generated(report.provenance),
        Paragraph(
            [
                "Run ",
                _at(run, "run.id"),
                ": model ",
                _at(run, "run.model"),
                " on dataset ",
                _at(run, "run.dataset"),
                " (task ",
                _at(run, "run.task"),
                "), a ",
                _at(run, "run.kind"),
                " run that is ",
                _at(run, "run.status"),
                ".",
            ]
        ),
        Heading(2, "How this was measured"),
        Paragraph(_provenance_parts(run, "run")),
        Paragraph([RETURNS_METHOD, " ", ROUNDING]),
        *_run_blocks(run, "run"),
        *_returns_blocks(report.returns, "returns", best),
        *_cost_blocks(report.cost, "cost"),
        *_nofade_blocks(report.nofade),
        *_sources(report.provenance),
    ]


def group_report_blocks(report: GroupReport) -> list[Block]:
    """The blocks of a report on a group of runs, in order."""
    metric = report.metric
    methods = {
        component: sorted(
            {m for r in report.runs for m in r["totals"]["methods"].get(component, [])}
        )
        for component, _ in COMPONENTS
    }
    measured: list[Part] = []
    for component, label in COMPONENTS:
        used = methods[component]
        measured.append(
            f"{label} energy: "
            + (
                "; ".join(f"{m} ({METHODS.get(m, 'an unknown method')})" for m in used)
                if used
                else "not measured"
            )
            + ". "
        )
    measured.append(
        "CO2e is energy times the carbon intensity of the electricity times the data centre's "
        "PUE; each run's intensity, its source and PUE are in the table of provenance below."
    )
    blocks: list[Block] = [
        Heading(1, f"Carbon report: group {report.group}"),
        Generated(report.provenance),
        Heading(2, "How this was measured"),
        Paragraph(measured),
        Paragraph([RETURNS_METHOD, " ", ROUNDING]),
        Heading(2, "Totals of the group"),
    ]
    if report.totals is None:
        blocks.append(Paragraph(["The service has no totals for this group."]))
    else:
        t = report.totals
        blocks.append(
            Table(
                "group-totals",
                ["quantity", "value"],
                [
                    ["runs (count)", _at(t, "totals.runs")],
                    ["energy (kWh)", _at(t, "totals.energy_kwh")],
                    ["CPU energy (kWh)", _at(t, "totals.cpu_kwh")],
                    ["GPU energy (kWh)", _at(t, "totals.gpu_kwh")],
                    ["RAM energy (kWh)", _at(t, "totals.ram_kwh")],
                    ["CO2e (kg)", _at(t, "totals.co2_kg")],
                    ["GPU time (GPU-hours)", _at(t, "totals.gpu_hours")],
                    ["duration of the runs that ended (s)", _at(t, "totals.duration_s")],
                    ["energy per training sample (J)", _at(t, "totals.j_per_sample")],
                ],
            )
        )
    scored = {entry["run_id"] for entry in report.scores["runs"]}

    def score(run_id: str, key: str) -> Cell:
        return _at(report.scores, f"scores.runs.{run_id}.{key}") if run_id in scored else MISSING

    blocks += [
        Heading(2, "Runs"),
        Table(
            "group-runs",
            [
                "run",
                "id",
                "kind",
                "status",
                "parent run",
                "energy (kWh)",
                "CO2e (kg)",
                "GPU time (GPU-hours)",
                f"best {metric}",
                "ρ (fraction)",
                f"NoFADE ({report.scores['c0_label']} cost unit)",
            ],
            [
                [
                    _at(report.runs, f"runs.{r['id']}.name"),
                    _at(report.runs, f"runs.{r['id']}.id"),
                    _at(report.runs, f"runs.{r['id']}.kind"),
                    _at(report.runs, f"runs.{r['id']}.status"),
                    _at(report.runs, f"runs.{r['id']}.parent_run_id"),
                    _at(report.runs, f"runs.{r['id']}.totals.energy_kwh"),
                    _at(report.runs, f"runs.{r['id']}.totals.co2_kg"),
                    _at(report.runs, f"runs.{r['id']}.totals.gpu_hours"),
                    score(r["id"], "score"),
                    score(r["id"], "rho"),
                    score(r["id"], "nofade"),
                ]
                for r in report.runs
            ],
        ),
        Table(
            "group-provenance",
            [
                "run",
                "CPU method",
                "GPU method",
                "RAM method",
                "carbon intensity (g CO2e/kWh)",
                "carbon intensity source",
                "PUE (ratio)",
                "hardware",
            ],
            [
                [
                    _at(report.runs, f"runs.{r['id']}.name"),
                    _at(report.runs, f"runs.{r['id']}.totals.methods.cpu"),
                    _at(report.runs, f"runs.{r['id']}.totals.methods.gpu"),
                    _at(report.runs, f"runs.{r['id']}.totals.methods.ram"),
                    _at(report.runs, f"runs.{r['id']}.carbon_intensity_g_per_kwh"),
                    _at(report.runs, f"runs.{r['id']}.carbon_intensity_source"),
                    _at(report.runs, f"runs.{r['id']}.pue"),
                    (
                        _at(report.runs, f"runs.{r['id']}.hardware.gpu_count"),
                        " × ",
                        _at(report.runs, f"runs.{r['id']}.hardware.gpu_model"),
                    ),
                ]
                for r in report.runs
            ],
        ),
        Paragraph(
            [
                f"ρ and NoFADE are {report.scores['definition']} on the cost axis ",
                _at(report.scores, "scores.axis.name"),
                " (",
                _at(report.scores, "scores.axis.unit"),
                "): ",
                _at(report.scores, "scores.note"),
            ]
        ),
    ]
    if report.best is None or report.best_returns is None:
        blocks.append(Paragraph([f"No run of the group logged {metric!r}."]))
    else:
        best = report.best
        blocks += [
            Heading(2, f"Best run: {best['name'] or best['id']}"),
            Paragraph(
                [
                    f"The run with the highest best {metric} is ",
                    _at(report.runs, f"runs.{best['id']}.id"),
                    ", with ",
                    _at(report.scores, f"scores.runs.{best['id']}.score"),
                    ". Its returns curve and what creating its model cost follow.",
                ]
            ),
            *[
                block
                for block in _returns_blocks(
                    report.best_returns,
                    "best_returns",
                    _at(report.scores, f"scores.runs.{best['id']}.score"),
                )
                if not (isinstance(block, Heading) and block.level == 2)
            ],
        ]
        if report.best_cost is not None:
            blocks += _cost_blocks(report.best_cost, "best_cost")
    return blocks + _sources(report.provenance)


def blocks_of(report: Report) -> list[Block]:
    """The blocks of any report."""
    if isinstance(report, RunReport):
        return run_report_blocks(report)
    return group_report_blocks(report)


def _generated_line(provenance: Provenance) -> str:
    when = provenance.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"Generated {when} by greenaudit {provenance.version} from {provenance.service_url} "
        "(this line alone changes between reports of the same data)."
    )


def _md_text(text: str) -> str:
    # A pipe would end a table cell, and a newline the row.
    return text.replace("|", "\\|").replace("\n", " ")


def _md_parts(parts: Sequence[Part]) -> str:
    return "".join(part if isinstance(part, str) else number(part.value) for part in parts)


def _md_cell(cell: Cell) -> str:
    return _md_text(_md_parts(cell if isinstance(cell, tuple) else (cell,)))


def _markdown_lines(blocks: Sequence[Block]) -> Iterator[str]:
    for block in blocks:
        if isinstance(block, Heading):
            yield f"{'#' * block.level} {block.text}"
        elif isinstance(block, Generated):
            yield f"_{_generated_line(block.provenance)}_"
        elif isinstance(block, Paragraph):
            yield _md_parts(block.parts)
        elif isinstance(block, Figure):
            axis = block.returns["axis"]["unit"]
            yield (
                f"Figure: {block.returns['metric']} against cumulative {axis} spent, with the "
                "plateau marked, is in the HTML version of this report (`--format html`); the "
                "points it draws are in the table below."
            )
        else:
            yield "| " + " | ".join(_md_text(h) for h in block.headers) + " |"
            yield "|" + "|".join(" --- " for _ in block.headers) + "|"
            for row in block.rows:
                yield "| " + " | ".join(_md_cell(cell) for cell in row) + " |"
        yield ""


def render_markdown(report: Report) -> str:
    """The report as Markdown, for a paper appendix.

    Pure: no I/O. The figure is only in the HTML version; the Markdown has its points as a
    table. The line starting ``_Generated`` is the only one that changes between two reports of
    the same data.
    """
    return "\n".join(_markdown_lines(blocks_of(report))).rstrip("\n") + "\n"


def _html_value(part: Value) -> str:
    shown = html.escape(number(part.value))
    exact = html.escape(json.dumps(part.value, ensure_ascii=False), quote=True)
    path = html.escape(part.field, quote=True)
    return f'<span data-field="{path}" data-value="{exact}">{shown}</span>'


def _html_parts(parts: Sequence[Part]) -> str:
    return "".join(
        html.escape(part) if isinstance(part, str) else _html_value(part) for part in parts
    )


def _figure_html(figure: Figure, with_plotly_js: bool) -> str:
    try:
        import pandas as pd

        from greenaudit.dashboards.figures import returns_curve
    except ImportError as error:
        raise ReportError(
            f"HTML reports draw their figure with plotly and pandas ({error}): "
            "pip install 'greenaudit[server]'"
        ) from error
    returns = figure.returns
    curve = pd.DataFrame(returns["curve"], columns=["step", "value", "energy_kwh", "co2_kg"])
    # The same unit rule as the dashboards' run page: a point of a [0, 1] score is 0.01.
    unit = "fraction" if returns["point_size"] == 0.01 else "metric units"
    drawn = returns_curve(
        curve, dict(returns["plateau"]) if returns["plateau"] else None, returns["metric"], unit
    )
    body: str = drawn.to_html(
        full_html=False,
        # Inlined, so the report opens offline and from a file.
        include_plotlyjs=with_plotly_js,
        div_id=figure.id,
        config={"displaylogo": False, "responsive": True},
    )
    caption = (
        f"{returns['metric']} against the cumulative energy spent, in Wh (the API's kWh × 1000), "
        "with the plateau marked and what was spent after it shaded."
    )
    return f'<figure class="plot">{body}<figcaption>{html.escape(caption)}</figcaption></figure>'


STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1a1a1a; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f2f2f2; }
#generated { color: #555; font-style: italic; }
figure.plot { margin: 0 0 1rem; }
figcaption { color: #555; font-size: 0.9em; }
"""


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page, figure included, that opens offline.

    Pure: no I/O. Every value is in an element with ``data-field`` (its path in the API's
    answers, e.g. ``run.totals.co2_kg``) and ``data-value`` (its exact JSON).

    Raises:
        ReportError: plotly or pandas is missing (they come with ``greenaudit[server]``).
    """
    blocks = blocks_of(report)
    title = next(block.text for block in blocks if isinstance(block, Heading))
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
    ]
    plotly_included = False
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Generated):
            out.append(f'<p id="generated">{html.escape(_generated_line(block.provenance))}</p>')
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_html_parts(block.parts)}</p>")
        elif isinstance(block, Figure):
            out.append(_figure_html(block, with_plotly_js=not plotly_included))
            plotly_included = True
        else:
            out.append(f'<table id="{html.escape(block.id, quote=True)}">')
            out.append(
                "<thead><tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
                + "</tr></thead><tbody>"
            )
            for row in block.rows:
                cells = (_html_parts(cell if isinstance(cell, tuple) else (cell,)) for cell in row)
                out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
            out.append("</tbody></table>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
