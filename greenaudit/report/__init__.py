"""Carbon reports for a paper appendix: one run, or one group of runs, as Markdown or HTML.

:func:`gather` asks the service's REST API (all of its HTTP is :class:`.reader.ServiceReader`)
and keeps its answers, validated by the wire models of :mod:`greenaudit.schemas`; the renderers
(:func:`render_markdown`, :func:`render_html`) only format those answers. No number in a report
is computed here: each one is a value of an API answer, rounded to 4 significant digits by
:func:`greenaudit.units.significant` (counts and steps are printed exactly), so every figure can
be traced back to the request that produced it. The requests are listed at the end of each
report.

* :mod:`.gather`: the questions asked; :mod:`.model`: the answers a report holds.
* :mod:`.blocks`: headings, paragraphs, tables, values; :mod:`.sections` and :mod:`.compose`:
  the sections, shared by the run and the group report; :mod:`.render`: Markdown and HTML.

The HTML version carries the returns-curve figure (plotly, drawn by the dashboards' own figure
builder, with plotly.js inlined so the file opens offline) and marks every value with
``data-field="<answer>.<path>"`` and its exact JSON in ``data-value``, so a test or a reader can
check it against the API (:func:`lookup` reads such a path).

Example:
    >>> report = gather(  # doctest: +SKIP
    ...     "0b5b8f1e-6f3a-4c1e-9a55-3f1f2b2f7a10",
    ...     url="http://127.0.0.1:8000",
    ...     api_key="ga_...",
    ... )
    >>> print(render_markdown(report))  # doctest: +SKIP
"""

from . import model
from .blocks import Block, lookup, number
from .compose import blocks_of, group_report_blocks, run_report_blocks
from .gather import gather, is_run_id
from .model import *  # noqa: F403  (every name of model.__all__ is the package's too)
from .render import render_html, render_markdown

__all__ = [
    "Block",
    "blocks_of",
    "gather",
    "group_report_blocks",
    "is_run_id",
    "lookup",
    "number",
    "render_html",
    "render_markdown",
    "run_report_blocks",
]
__all__ += model.__all__

# doctest.testmod(greenaudit.report) looks only at this module's own objects; these are the
# package's examples.
__test__ = {"is_run_id": is_run_id, "lookup": lookup, "number": number}
