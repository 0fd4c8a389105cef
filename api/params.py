"""Query parameters and answer rules that several routes share, so that they read alike."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Query, Response

from greenaudit.schemas import MAX_NAME_LENGTH, NO_NUL

from .runs.schemas import RunFilters

T = TypeVar("T")

#: The run filters (model, dataset, task, group, status, kind, start) as query parameters.
Filters = Annotated[RunFilters, Query()]
#: An optional name to filter by.
OptionalName = Annotated[str | None, Query(max_length=MAX_NAME_LENGTH, pattern=NO_NUL)]
#: The plateau's tolerance ε, as a share of the metric's range.
EpsilonFraction = Annotated[
    float,
    Query(gt=0, le=0.5, allow_inf_nan=False, description="ε as a share of the metric's range"),
]


def run_metric(description: str) -> Any:
    """The query parameter naming one of a run's metrics (``None``: its primary metric)."""
    return Query(max_length=MAX_NAME_LENGTH, pattern=NO_NUL, description=description)


def created_or_stored(response: Response, answer: tuple[T, bool]) -> T:
    """The item a create answers: with the route's 201 when new, with 200 when it existed."""
    item, created = answer
    if not created:
        response.status_code = 200
    return item
