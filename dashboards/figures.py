"""Plotly figure builders for the carbon dashboards: DataFrame in, ``go.Figure`` out, no I/O.

Every axis is labelled with its unit, and colours come from the Okabe–Ito palette, which stays
distinguishable with the common forms of colour blindness.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

# Okabe & Ito (2008), "Color Universal Design".
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
COMPONENT_COLOURS = {"cpu": "#0072B2", "gpu": "#E69F00", "ram": "#009E73"}


def _layout(figure: go.Figure, *, x_title: str, y_title: str, title: str) -> go.Figure:
    figure.update_layout(
        title={"text": title, "y": 0.98, "yanchor": "top"},
        colorway=PALETTE,
        template="plotly_white",
        autosize=True,
        margin={"l": 60, "r": 20, "t": 90, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    figure.update_xaxes(title_text=x_title, automargin=True)
    figure.update_yaxes(title_text=y_title, automargin=True)
    return figure


def co2_trend(daily: pd.DataFrame) -> go.Figure:
    """CO2 per day. Columns: ``day`` (date), ``co2_kg``."""
    figure = go.Figure(
        go.Bar(
            x=daily["day"], y=daily["co2_kg"] * 1000, name="CO2e per day", marker_color=PALETTE[0]
        )
    )
    return _layout(figure, x_title="day (UTC)", y_title="CO2e (g)", title="Emissions over time")


def top_by_co2(totals: pd.DataFrame, what: str) -> go.Figure:
    """The biggest emitters. Columns: ``key`` (model or dataset name), ``co2_kg``."""
    ordered = totals.sort_values("co2_kg")
    figure = go.Figure(
        go.Bar(
            x=ordered["co2_kg"] * 1000,
            y=ordered["key"].fillna("(none)"),
            orientation="h",
            name=f"CO2e by {what}",
            marker_color=PALETTE[5],
        )
    )
    return _layout(figure, x_title="CO2e (g)", y_title=what, title=f"CO2e by {what}")


def energy_by_component(totals: pd.DataFrame, what: str) -> go.Figure:
    """Stacked kWh per component. Columns: ``key``, ``cpu_kwh``, ``gpu_kwh``, ``ram_kwh``."""
    figure = go.Figure()
    for component in ("cpu", "gpu", "ram"):
        figure.add_bar(
            x=totals["key"].fillna("(none)"),
            y=totals[f"{component}_kwh"] * 1000,
            name=component.upper(),
            marker_color=COMPONENT_COLOURS[component],
        )
    figure.update_layout(barmode="stack")
    return _layout(figure, x_title=what, y_title="energy (Wh)", title="Energy by component")


def power_over_time(series: pd.DataFrame, *, downsampled: bool) -> go.Figure:
    """Power per component and rank.

    Columns: ``t`` (datetime), ``rank``, ``cpu_w``, ``gpu_w``, ``ram_w``; each row a sample,
    or the peak of a bucket of samples when ``downsampled``.
    """
    figure = go.Figure()
    ranks = sorted(series["rank"].unique()) if len(series) else []
    for component in ("cpu", "gpu", "ram"):
        for rank in ranks:
            part = series[(series["rank"] == rank) & series[f"{component}_w"].notna()]
            if part.empty:
                continue
            name = component.upper() + (f" rank {rank}" if len(ranks) > 1 else "")
            figure.add_scatter(
                x=part["t"],
                y=part[f"{component}_w"],
                mode="lines",
                name=name,
                line={
                    "color": COMPONENT_COLOURS[component],
                    "dash": ["solid", "dot", "dash", "dashdot"][int(rank) % 4],
                },
            )
    title = "Power over time" + (" (peak of each interval)" if downsampled else "")
    return _layout(figure, x_title="time (UTC)", y_title="mean power (W)", title=title)


def cumulative_energy(series: pd.DataFrame) -> go.Figure:
    """Energy spent so far. Columns: ``t`` (datetime), ``energy_kwh`` (cumulative)."""
    figure = go.Figure(
        go.Scatter(
            x=series["t"],
            y=series["energy_kwh"] * 1000,
            mode="lines",
            name="cumulative energy",
            line={"color": PALETTE[2]},
        )
    )
    return _layout(figure, x_title="time (UTC)", y_title="energy (Wh)", title="Energy spent")


def returns_curve(
    curve: pd.DataFrame,
    plateau: dict[str, Any] | None,
    metric: str,
    unit: str,
    axis: str = "energy_kwh",
) -> go.Figure:
    """The metric against cumulative energy (or CO2, ``axis="co2_kg"``), plateau marked.

    Columns: ``energy_kwh``, ``co2_kg``, ``value``. ``plateau`` has the same keys.
    """
    column, scale, x_title = (
        ("co2_kg", 1000, "cumulative CO2e (g)")
        if axis == "co2_kg"
        else ("energy_kwh", 1000, "cumulative energy (Wh)")
    )
    figure = go.Figure(
        go.Scatter(
            x=curve[column] * scale,
            y=curve["value"],
            mode="lines+markers",
            name=metric,
            line={"color": PALETTE[0]},
            marker={"size": 4},
        )
    )
    if plateau is not None:
        figure.add_scatter(
            x=[plateau[column] * scale],
            y=[plateau["value"]],
            mode="markers",
            name="plateau",
            marker={"color": PALETTE[5], "size": 12, "symbol": "diamond"},
        )
        end = float(curve[column].max()) * scale if len(curve) else plateau[column] * scale
        figure.add_vrect(
            x0=plateau[column] * scale, x1=end, fillcolor=PALETTE[5], opacity=0.08, line_width=0
        )
    spent = "CO2e" if axis == "co2_kg" else "energy"
    return _layout(
        figure,
        x_title=x_title,
        y_title=f"{metric} ({unit})",
        title=f"{metric} against {spent} spent",
    )


def scaling_scatter(
    runs: pd.DataFrame,
    fits: Sequence[dict[str, Any]],
    *,
    x_title: str,
    y_title: str,
    metric: str,
    projection: dict[str, Any] | None = None,
) -> go.Figure:
    """Runs on a cost axis with fitted curves and the Pareto frontier.

    ``runs`` columns: ``x``, ``score``, ``label``, ``frontier`` (bool), ``published`` (bool).
    ``fits``: dicts with ``model``, ``x`` and ``y`` (points along the curve).
    """
    figure = go.Figure()
    for published, name, colour in (
        (False, "your runs", PALETTE[0]),
        (True, "published results", PALETTE[3]),
    ):
        part = runs[runs["published"] == published]
        if part.empty:
            continue
        figure.add_scatter(
            x=part["x"],
            y=part["score"],
            mode="markers",
            name=name,
            text=part["label"],
            marker={"color": colour, "size": 8},
        )
    # As a boolean mask: an empty column has dtype object, and indexing by it would select
    # columns (none), not rows, leaving no "x" to sort by.
    frontier = runs[runs["frontier"].astype(bool)].sort_values("x")
    if not frontier.empty:
        figure.add_scatter(
            x=frontier["x"],
            y=frontier["score"],
            mode="lines",
            name="Pareto frontier",
            line={"color": "#000000", "dash": "dot"},
        )
    for index, fit in enumerate(fits):
        figure.add_scatter(
            x=fit["x"],
            y=fit["y"],
            mode="lines",
            name=f"{fit['model']} fit",
            line={"color": PALETTE[(index + 1) % len(PALETTE)]},
        )
    if projection is not None and projection.get("x") is not None:
        low, high = projection.get("x_low"), projection.get("x_high")
        error = (
            {
                "type": "data",
                "symmetric": False,
                "array": [high - projection["x"]],
                "arrayminus": [projection["x"] - low],
            }
            if low and high
            else None
        )
        figure.add_scatter(
            x=[projection["x"]],
            y=[projection["target_score"]],
            mode="markers",
            name=f"projection to {projection['target_score']:g}",
            error_x=error,
            marker={"symbol": "star", "size": 14, "color": PALETTE[5]},
        )
    figure.update_xaxes(type="log")
    return _layout(figure, x_title=x_title, y_title=y_title, title=f"{metric} against cost")


def nofade_leaderboard(table: pd.DataFrame) -> go.Figure:
    """Best NoFADE per model and dataset. Columns: ``model``, ``dataset``, ``nofade``, ``rho``."""
    best = (
        table.dropna(subset=["nofade"])
        .sort_values("nofade", ascending=False)
        .drop_duplicates(["model", "dataset"])
    )
    grid = best.pivot(index="model", columns="dataset", values="nofade")
    rho = best.pivot(index="model", columns="dataset", values="rho").reindex_like(grid)
    figure = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=list(grid.columns),
            y=list(grid.index),
            customdata=rho.values,
            colorscale="Cividis",
            zmin=0,
            zmax=1,
            name="NoFADE",
            colorbar={"title": {"text": "NoFADE (0 to 1)"}},
            hovertemplate="model %{y}<br>dataset %{x}<br>NoFADE %{z:.3f}<br>ρ %{customdata:.3f}"
            "<extra></extra>",
        )
    )
    return _layout(
        figure, x_title="dataset", y_title="model", title="NoFADE greenaudit-1 by model and dataset"
    )
