"""The sections of the reports: each a list of blocks built from the service's answers.

No number is computed here: each is a value of an answer, printed by :func:`.blocks.number`.
The sections a run report and a group report share (how it was measured, the returns curve,
the cost of creating the model, the sources) are built by the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable

from greenaudit.schemas import MeasurementMethod
from greenaudit.schemas.analytics import ReturnsOut
from greenaudit.schemas.runs import CreationCostOut, RunOut
from greenaudit.units import SIGNIFICANT_DIGITS

from .blocks import (
    Block,
    Cell,
    Figure,
    Generated,
    Heading,
    Paragraph,
    Part,
    Table,
    Value,
    at,
    prose,
)
from .model import MISSING, Provenance

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
# Rows of the run table: label, then the field of the run's answer.
RUN_FIELDS = (
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
)


def _described(methods: Iterable[MeasurementMethod]) -> str:
    """What the methods mean for a reader, in words; empty for none."""
    return "; ".join(METHODS.get(m.value, "an unknown method") for m in methods)


def head(title: str, provenance: Provenance) -> list[Block]:
    """The report's title and its generation line."""
    return [Heading(1, title), Generated(provenance)]


def measured(parts: list[Part]) -> list[Block]:
    """How the numbers were measured, then how the returns curve and the rounding read."""
    return [
        Heading(2, "How this was measured"),
        Paragraph(parts),
        Paragraph([RETURNS_METHOD, " ", ROUNDING]),
    ]


def sources(provenance: Provenance) -> list[Block]:
    """The requests whose answers the report printed, in order."""
    return [
        Heading(2, "Sources"),
        # The service and version are on the generation line; here only what reproduces.
        Paragraph(["The service's answers to these requests, in this order, with a read key:"]),
        Table("sources", ["request"], [[request] for request in provenance.requests]),
    ]


def provenance_parts(run: RunOut, root: str) -> list[Part]:
    """How a run was measured, in words, with the API's methods, intensity and PUE."""
    parts: list[Part] = []
    for component, label in COMPONENTS:
        methods = run.totals.methods.get(component, [])
        if not methods:
            parts.append(f"{label} energy was not measured. ")
            continue
        parts += [
            f"{label} energy: ",
            at(run, root, f"totals.methods.{component}"),
            f" ({_described(methods)}). ",
        ]
    return parts + prose(
        run,
        root,
        "CO2e is that energy times the carbon intensity of the electricity, ",
        "carbon_intensity_g_per_kwh",
        " g CO2e/kWh (source: ",
        "carbon_intensity_source",
        "; country ",
        "country_iso",
        "), times the data centre's power usage effectiveness (PUE) of ",
        "pue",
        ".",
    )


def run_blocks(run: RunOut, root: str) -> list[Block]:
    """The run's description, hardware, energy by component and carbon accounting."""
    hardware = run.hardware
    known = [
        key for key in HARDWARE_LABELS if key in hardware and key not in ("node", "world_size")
    ]
    others = sorted(key for key in hardware if key not in HARDWARE_LABELS)
    energy_rows: list[list[Cell]] = [
        [
            label,
            at(run, root, f"totals.{component}_kwh"),
            at(run, root, f"totals.methods.{component}"),
            _described(run.totals.methods.get(component, [])) or "not measured",
        ]
        for component, label in COMPONENTS
    ]
    energy_rows.append(["total", at(run, root, "totals.energy_kwh"), "", ""])
    hardware_rows: list[list[Cell]] = [
        ["node", at(run, root, "node")],
        ["world size (processes)", at(run, root, "world_size")],
    ]
    hardware_rows += [[HARDWARE_LABELS[key], at(run, root, f"hardware.{key}")] for key in known]
    hardware_rows += [[key, at(run, root, f"hardware.{key}")] for key in others]
    return [
        Heading(2, "Run"),
        Table(
            f"{root}-run",
            ["field", "value"],
            [[label, at(run, root, key)] for label, key in RUN_FIELDS],
        ),
        Heading(2, "Hardware"),
        Table(f"{root}-hardware", ["field", "value"], hardware_rows),
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
                ["CO2e (kg)", at(run, root, "totals.co2_kg")],
                ["carbon intensity (g CO2e/kWh)", at(run, root, "carbon_intensity_g_per_kwh")],
                ["carbon intensity source", at(run, root, "carbon_intensity_source")],
                ["country (ISO 3166 alpha-3)", at(run, root, "country_iso")],
                ["PUE (ratio)", at(run, root, "pue")],
                ["GPU time (GPU-hours)", at(run, root, "totals.gpu_hours")],
                ["energy samples (count)", at(run, root, "totals.energy_samples")],
                ["energy per training sample (J)", at(run, root, "totals.j_per_sample")],
            ],
        ),
    ]


def _returns_summary(returns: ReturnsOut, root: str, best: Value | None) -> list[list[Cell]]:
    """The rows of the returns table: the metric, the run's totals, the plateau, the gain."""
    metric = returns.metric
    rows: list[list[Cell]] = [
        ["metric", at(returns, root, "metric")],
        ["better", at(returns, root, "direction")],
        ["points logged (count)", at(returns, root, "points_total")],
    ]
    if best is not None:
        rows.append([f"best {metric} (highest logged)", best])
    if returns.curve:
        last = f"curve.{len(returns.curve) - 1}"
        rows += [
            ["last step logged (step)", at(returns, root, f"{last}.step")],
            [f"{metric} at the last step", at(returns, root, f"{last}.value")],
        ]
    rows += [
        ["energy of the run (kWh)", at(returns, root, "total_energy_kwh")],
        ["CO2e of the run (kg)", at(returns, root, "total_co2_kg")],
    ]
    if returns.plateau is not None:
        p = f"{root}.plateau"
        plateau = returns.plateau
        rows += [
            ["plateau (step)", at(plateau, p, "step")],
            [f"{metric} at the plateau", at(plateau, p, "value")],
            [f"ε ({metric})", at(plateau, p, "epsilon")],
            ["energy up to the plateau (kWh)", at(plateau, p, "energy_kwh")],
            ["CO2e up to the plateau (kg)", at(plateau, p, "co2_kg")],
            ["energy after the plateau (kWh)", at(plateau, p, "energy_after_kwh")],
            ["CO2e after the plateau (kg)", at(plateau, p, "co2_after_kg")],
            [
                "share of the run's energy spent after the plateau (fraction)",
                at(plateau, p, "share_of_energy_after"),
            ],
            [f"{metric} gained after the plateau", at(plateau, p, "gain_after")],
            ["in words", at(plateau, p, "summary")],
        ]
    gain = returns.marginal_gain
    if gain is not None:
        g = f"{root}.marginal_gain"
        per = "kWh" if gain.axis == "energy_kwh" else "kg CO2e"
        rows += [
            ["fit behind the marginal gain", at(gain, g, "model")],
            [f"marginal gain at the end ({metric} per {per})", at(gain, g, "per_kwh")],
            [
                f"gain from 10% more energy ({metric})",
                at(gain, g, "per_extra_10_percent_energy"),
            ],
        ]
    return rows


def _fit_blocks(returns: ReturnsOut, root: str) -> list[Block]:
    """The fitted curves with their parameters, and which fit was chosen."""
    if not returns.fits:
        return [Paragraph(["No fit: ", at(returns, root, "best_fit_reason"), "."])]
    fits: list[list[Cell]] = []
    for i, fit in enumerate(returns.fits):
        f = f"{root}.fits.{i}"
        parameters: list[Part] = []
        for j, parameter in enumerate(fit.parameters):
            parameters += [
                f"{'; ' if j else ''}{parameter.name} = ",
                at(parameter, f"{f}.parameters.{j}", "value"),
                " ± ",
                at(parameter, f"{f}.parameters.{j}", "stderr"),
            ]
        fits.append(
            [
                at(fit, f, "model"),
                at(fit, f, "formula"),
                tuple(parameters),
                at(fit, f, "r_squared"),
                at(fit, f, "aicc"),
                at(fit, f, "n"),
            ]
        )
    return [
        Table(
            f"{root}-fits",
            ["fit", "formula", "parameters (± standard error)", "R²", "AICc", "points (count)"],
            fits,
        ),
        Paragraph(
            [
                "Best fit: ",
                at(returns, root, "best_fit"),
                " (",
                at(returns, root, "best_fit_reason"),
                ").",
            ]
        ),
    ]


def returns_blocks(returns: ReturnsOut, root: str, best: Value | None) -> list[Block]:
    """The returns curve, its plateau and fits, the figure and the curve's points."""
    metric = returns.metric
    blocks: list[Block] = [Heading(2, f"Returns: {metric} against cumulative {returns.axis.unit}")]
    if returns.status != "ok":
        reason = prose(returns, root, "There is no returns curve (", "status", "): ", "reason", ".")
        return [*blocks, Paragraph(reason)]
    blocks.append(
        Table(f"{root}-summary", ["quantity", "value"], _returns_summary(returns, root, best))
    )
    blocks += _fit_blocks(returns, root)
    blocks.append(Figure(returns, f"{root}-figure"))
    blocks.append(
        Table(
            f"{root}-curve",
            ["step", "cumulative energy (kWh)", "cumulative CO2e (kg)", metric],
            [
                [
                    at(point, f"{root}.curve.{i}", "step"),
                    at(point, f"{root}.curve.{i}", "energy_kwh"),
                    at(point, f"{root}.curve.{i}", "co2_kg"),
                    at(point, f"{root}.curve.{i}", "value"),
                ]
                for i, point in enumerate(returns.curve)
            ],
        )
    )
    return blocks


def cost_blocks(cost: CreationCostOut, root: str) -> list[Block]:
    """What creating the run's model cost: the run, its ancestors, its searches' trials."""
    return [
        Heading(2, "Cost of creating the model"),
        Paragraph(
            [
                "Creation counts the run, its ancestors through parent_run_id (pre-training) "
                "and every other run of the groups they belong to (search trials), each once. "
                "Creating the model took ",
                at(cost, root, "energy_ratio"),
                " times the energy and ",
                at(cost, root, "co2_ratio"),
                " times the CO2e of the run alone.",
            ]
        ),
        Table(
            f"{root}-totals",
            ["scope", "runs (count)", "energy (kWh)", "CO2e (kg)", "GPU time (GPU-hours)"],
            [
                [
                    label,
                    at(cost, root, f"{scope}.runs"),
                    at(cost, root, f"{scope}.energy_kwh"),
                    at(cost, root, f"{scope}.co2_kg"),
                    at(cost, root, f"{scope}.gpu_hours"),
                ]
                for label, scope in (("this run", "final"), ("creation", "creation"))
            ],
        ),
        Table(
            f"{root}-runs",
            ["relation", "run", "group", "energy (kWh)", "CO2e (kg)", "GPU time (GPU-hours)"],
            [
                [
                    at(entry, f"{root}.runs.{i}", "relation"),
                    (
                        at(entry, f"{root}.runs.{i}", "name"),
                        " (",
                        at(entry, f"{root}.runs.{i}", "id"),
                        ")",
                    ),
                    at(entry, f"{root}.runs.{i}", "group"),
                    at(entry, f"{root}.runs.{i}", "energy_kwh"),
                    at(entry, f"{root}.runs.{i}", "co2_kg"),
                    at(entry, f"{root}.runs.{i}", "gpu_hours"),
                ]
                for i, entry in enumerate(cost.runs)
            ],
        ),
    ]
