"""Blocks to text: Markdown for a paper appendix, or one self-contained HTML page.

Pure: no I/O. The line starting ``_Generated`` (Markdown) or ``id="generated"`` (HTML) is the
only one that changes between two reports of the same data.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Sequence

from .blocks import Block, Cell, Figure, Generated, Heading, Paragraph, Part, Value, number
from .compose import blocks_of
from .model import Provenance, Report, ReportError


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
    if isinstance(cell, tuple):
        return _md_text(_md_parts(cell))
    return _md_text(cell if isinstance(cell, str) else number(cell.value))


def _markdown_lines(blocks: Sequence[Block]) -> Iterator[str]:
    for block in blocks:
        if isinstance(block, Heading):
            yield f"{'#' * block.level} {block.text}"
        elif isinstance(block, Generated):
            yield f"_{_generated_line(block.provenance)}_"
        elif isinstance(block, Paragraph):
            yield _md_parts(block.parts)
        elif isinstance(block, Figure):
            axis = block.returns.axis.unit
            yield (
                f"Figure: {block.returns.metric} against cumulative {axis} spent, with the "
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
    curve = pd.DataFrame(
        [point.model_dump() for point in returns.curve],
        columns=["step", "value", "energy_kwh", "co2_kg"],
    )
    # The same unit rule as the dashboards' run page: a point of a [0, 1] score is 0.01.
    unit = "fraction" if returns.point_size == 0.01 else "metric units"
    plateau = returns.plateau.model_dump() if returns.plateau else None
    drawn = returns_curve(curve, plateau, returns.metric, unit)
    body: str = drawn.to_html(
        full_html=False,
        # Inlined, so the report opens offline and from a file.
        include_plotlyjs=with_plotly_js,
        div_id=figure.id,
        config={"displaylogo": False, "responsive": True},
    )
    caption = (
        f"{returns.metric} against the cumulative energy spent, in Wh (the API's kWh × 1000), "
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
