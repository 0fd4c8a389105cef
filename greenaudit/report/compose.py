"""A whole report as blocks: a run report, a group report, from the sections they share."""

from __future__ import annotations

import uuid

from greenaudit.schemas.analytics import NofadeRun
from greenaudit.schemas.runs import RunOut

from .blocks import Block, Cell, Heading, Paragraph, Part, Table, at, prose
from .model import MISSING, GroupReport, Report, RunNofade, RunReport
from .sections import (
    COMPONENTS,
    METHODS,
    cost_blocks,
    head,
    measured,
    provenance_parts,
    returns_blocks,
    run_blocks,
    sources,
)


def _nofade_blocks(nofade: RunNofade) -> list[Block]:
    """ρ and NoFADE of the run, and the saturation of its dataset."""
    answer = nofade.answer
    unit = answer.axis.unit
    blocks: list[Block] = [
        Heading(2, f"ρ and NoFADE ({answer.definition})"),
        Paragraph([at(answer, "nofade", "note")]),
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
                    ["metric", at(answer, "nofade", "metric")],
                    [f"best {answer.metric} (highest logged)", at(entry, "nofade_run", "score")],
                    ["cost axis", at(answer, "nofade", "axis.name")],
                    ["cost unit C0", at(answer, "nofade", "c0_label")],
                    [f"cost C ({unit})", at(entry, "nofade_run", "cost")],
                    ["dataset label entropy H (bits)", at(entry, "nofade_run", "entropy_bits")],
                    ["classes K (count)", at(entry, "nofade_run", "num_classes")],
                    [
                        "ρ, share of the label entropy resolved (fraction)",
                        at(entry, "nofade_run", "rho"),
                    ],
                    ["NoFADE = ρ / (1 + log10(1 + C/C0))", at(entry, "nofade_run", "nofade")],
                    [
                        "approximate (metric is not an accuracy)",
                        at(entry, "nofade_run", "approximate"),
                    ],
                    ["note", at(entry, "nofade_run", "reason")],
                ],
            )
        )
    if nofade.dataset is not None:
        d, root = nofade.dataset, "nofade_dataset"
        blocks.append(
            Table(
                "nofade-dataset",
                ["saturation of the dataset", "value"],
                [
                    ["dataset", at(d, root, "key")],
                    ["runs with ρ (count)", at(d, root, "runs_with_rho")],
                    ["σ, best ρ reached (fraction)", at(d, root, "sigma")],
                    ["β, ρ gained per tenfold cost", at(d, root, "beta")],
                    ["standard error of β", at(d, root, "beta_stderr")],
                    ["α, ρ at C = 1 cost unit", at(d, root, "alpha")],
                    ["frontier runs (count)", at(d, root, "frontier_runs")],
                    [f"cost of the best run ({unit})", at(d, root, "best_cost")],
                    [
                        f"cost of the next +0.01 of ρ ({unit})",
                        at(d, root, "cost_for_next_rho_0_01"),
                    ],
                    ["status", at(d, root, "status")],
                    ["note", at(d, root, "reason")],
                    [
                        "thresholds",
                        (
                            "saturated when σ ≥ ",
                            at(answer, "nofade", "thresholds.saturated_sigma"),
                            " or β < ",
                            at(answer, "nofade", "thresholds.saturated_beta"),
                            "; saturating when β < ",
                            at(answer, "nofade", "thresholds.saturating_beta"),
                        ),
                    ],
                ],
            )
        )
    return blocks


def run_report_blocks(report: RunReport) -> list[Block]:
    """The blocks of a report on one run, in order."""
    run = report.run
    best = at(report.nofade.run, "nofade_run", "score") if report.nofade.run else None
    return [
        *head(f"Carbon report: run {run.name or run.id}", report.provenance),
        Paragraph(
            prose(
                run,
                "run",
                *("Run ", "id", ": model ", "model", " on dataset ", "dataset", " (task "),
                *("task", "), a ", "kind", " run that is ", "status", "."),
            )
        ),
        *measured(provenance_parts(run, "run")),
        *run_blocks(run, "run"),
        *returns_blocks(report.returns, "returns", best),
        *cost_blocks(report.cost, "cost"),
        *_nofade_blocks(report.nofade),
        *sources(report.provenance),
    ]


def _group_measured(runs: list[RunOut]) -> list[Part]:
    """The measurement methods the group's runs used, per component, in words."""
    parts: list[Part] = []
    for component, label in COMPONENTS:
        used = sorted({m.value for r in runs for m in r.totals.methods.get(component, [])})
        parts.append(
            f"{label} energy: "
            + (
                "; ".join(f"{m} ({METHODS.get(m, 'an unknown method')})" for m in used)
                if used
                else "not measured"
            )
            + ". "
        )
    parts.append(
        "CO2e is energy times the carbon intensity of the electricity times the data centre's "
        "PUE; each run's intensity, its source and PUE are in the table of provenance below."
    )
    return parts


def _group_totals(report: GroupReport) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Totals of the group")]
    if report.totals is None:
        return [*blocks, Paragraph(["The service has no totals for this group."])]
    t = report.totals
    rows = [
        ("runs (count)", "runs"),
        ("energy (kWh)", "energy_kwh"),
        ("CPU energy (kWh)", "cpu_kwh"),
        ("GPU energy (kWh)", "gpu_kwh"),
        ("RAM energy (kWh)", "ram_kwh"),
        ("CO2e (kg)", "co2_kg"),
        ("GPU time (GPU-hours)", "gpu_hours"),
        ("duration of the runs that ended (s)", "duration_s"),
        ("energy per training sample (J)", "j_per_sample"),
    ]
    table: list[list[Cell]] = [[label, at(t, "totals", key)] for label, key in rows]
    return [*blocks, Table("group-totals", ["quantity", "value"], table)]


# The group's tables, a row per run: header, then the field of the run's answer.
GROUP_RUN_COLUMNS = (
    ("run", "name"),
    ("id", "id"),
    ("kind", "kind"),
    ("status", "status"),
    ("parent run", "parent_run_id"),
    ("energy (kWh)", "totals.energy_kwh"),
    ("CO2e (kg)", "totals.co2_kg"),
    ("GPU time (GPU-hours)", "totals.gpu_hours"),
)
GROUP_PROVENANCE_COLUMNS = (
    ("run", "name"),
    ("CPU method", "totals.methods.cpu"),
    ("GPU method", "totals.methods.gpu"),
    ("RAM method", "totals.methods.ram"),
    ("carbon intensity (g CO2e/kWh)", "carbon_intensity_g_per_kwh"),
    ("carbon intensity source", "carbon_intensity_source"),
    ("PUE (ratio)", "pue"),
)


def _group_runs(report: GroupReport) -> list[Block]:
    """One row per run: what it cost and scored; then where its numbers came from."""
    # The NoFADE answer lists each run once; its first entry is the one printed.
    scores: dict[uuid.UUID, NofadeRun] = {}
    for listed in report.scores.runs:
        scores.setdefault(listed.run_id, listed)
    runs: list[list[Cell]] = []
    provenance: list[list[Cell]] = []
    for r in report.runs:
        root = f"runs.{r.id}"
        entry = scores.get(r.id)
        scored: list[Cell] = [
            at(entry, f"scores.runs.{r.id}", key) if entry is not None else MISSING
            for key in ("score", "rho", "nofade")
        ]
        runs.append([*(at(r, root, path) for _, path in GROUP_RUN_COLUMNS), *scored])
        hardware = (at(r, root, "hardware.gpu_count"), " × ", at(r, root, "hardware.gpu_model"))
        provenance.append([*(at(r, root, path) for _, path in GROUP_PROVENANCE_COLUMNS), hardware])
    return [
        Heading(2, "Runs"),
        Table(
            "group-runs",
            [
                *(header for header, _ in GROUP_RUN_COLUMNS),
                f"best {report.metric}",
                "ρ (fraction)",
                f"NoFADE ({report.scores.c0_label} cost unit)",
            ],
            runs,
        ),
        Table(
            "group-provenance",
            [*(header for header, _ in GROUP_PROVENANCE_COLUMNS), "hardware"],
            provenance,
        ),
        Paragraph(
            [
                f"ρ and NoFADE are {report.scores.definition} on the cost axis ",
                at(report.scores, "scores", "axis.name"),
                " (",
                at(report.scores, "scores", "axis.unit"),
                "): ",
                at(report.scores, "scores", "note"),
            ]
        ),
    ]


def _best_run(report: GroupReport) -> list[Block]:
    """The group's best run: its returns curve and what creating its model cost."""
    metric, best = report.metric, report.best
    if best is None or report.best_returns is None:
        return [Paragraph([f"No run of the group logged {metric!r}."])]
    entry = next(e for e in report.scores.runs if e.run_id == best.id)
    score = at(entry, f"scores.runs.{best.id}", "score")
    blocks: list[Block] = [
        Heading(2, f"Best run: {best.name or best.id}"),
        Paragraph(
            [
                f"The run with the highest best {metric} is ",
                at(best, f"runs.{best.id}", "id"),
                ", with ",
                score,
                ". Its returns curve and what creating its model cost follow.",
            ]
        ),
        *[
            block
            for block in returns_blocks(report.best_returns, "best_returns", score)
            if not (isinstance(block, Heading) and block.level == 2)
        ],
    ]
    if report.best_cost is not None:
        blocks += cost_blocks(report.best_cost, "best_cost")
    return blocks


def group_report_blocks(report: GroupReport) -> list[Block]:
    """The blocks of a report on a group of runs, in order."""
    return [
        *head(f"Carbon report: group {report.group}", report.provenance),
        *measured(_group_measured(report.runs)),
        *_group_totals(report),
        *_group_runs(report),
        *_best_run(report),
        *sources(report.provenance),
    ]


def blocks_of(report: Report) -> list[Block]:
    """The blocks of any report."""
    if isinstance(report, RunReport):
        return run_report_blocks(report)
    return group_report_blocks(report)
