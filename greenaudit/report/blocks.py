"""The parts a report is made of, rendered alike to Markdown and HTML, and how values print.

A value keeps its path in the service's answers (``run.totals.co2_kg``) beside its exact JSON,
so the HTML can mark each one with ``data-field`` and ``data-value``; :func:`lookup` reads such
a path back in the answers' JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from greenaudit.schemas.analytics import ReturnsOut
from greenaudit.units import SIGNIFICANT_DIGITS, significant

from .model import MISSING, Provenance


@dataclass(frozen=True)
class Value:
    """A value of an API answer, as its JSON, and its path in the answers (``run.pue``)."""

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

    returns: ReturnsOut
    id: str


@dataclass(frozen=True)
class Generated:
    """The one line that differs between two reports of the same data."""

    provenance: Provenance


Block = Heading | Paragraph | Table | Figure | Generated
# Values that are their own JSON: most of a report's, so most skip the conversion.
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


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
        return significant(value, SIGNIFICANT_DIGITS)
    if isinstance(value, list):
        return ", ".join(number(v) for v in value) or MISSING
    return str(value)


def lookup(answers: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` in an answer's JSON; in a list, a key is an index or an item's id.

    This is how a ``data-field`` path of the HTML report reads: ``runs.<id>.totals.co2_kg`` is
    the ``co2_kg`` of the totals of the run with that id.

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


def at(answer: Any, root: str, path: str) -> Value:
    """The value at ``path`` (``totals.co2_kg``) of ``answer``, named ``root.path``.

    ``answer`` is a wire model (or a part of one): attributes, then dict keys and list indices,
    are followed. The value is kept as the JSON the service sent, so ``data-value`` is exact.
    """
    value = answer
    for key in path.split("."):
        if isinstance(value, dict):
            value = value[key]
        elif isinstance(value, list):
            value = value[int(key)]
        else:
            value = getattr(value, key)
    if type(value) not in _JSON_SCALARS:
        value = to_jsonable_python(value)
    return Value(value, f"{root}.{path}")


def prose(answer: Any, root: str, *pieces: str) -> list[Part]:
    """Text with values of ``answer`` in it: ``pieces`` alternate text and paths.

    ``prose(run, "run", "a PUE of ", "pue", ".")`` is the text, the run's ``pue`` as the value
    ``run.pue``, then the full stop.
    """
    return [at(answer, root, piece) if i % 2 else piece for i, piece in enumerate(pieces)]
