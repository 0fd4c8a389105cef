"""What a report holds: the service's answers, validated by the wire models, and their origin."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from greenaudit.errors import GreenauditError
from greenaudit.schemas.analytics import NofadeGroup, NofadeOut, NofadeRun, ReturnsOut
from greenaudit.schemas.runs import CreationCostOut, RunOut
from greenaudit.schemas.totals import TotalsRow

# MISSING stays out: it is the renderers' placeholder, not part of the package's API.
__all__ = [
    "DEFAULT_CURVE_POINTS",
    "NOFADE_NEEDS_HIGHER",
    "GroupReport",
    "Provenance",
    "Report",
    "ReportError",
    "ReportFormat",
    "RunNofade",
    "RunReport",
]

#: Points of the returns curve asked of the API by default: enough for the figure, few enough
#: for a table in an appendix. The API samples the curve evenly and always keeps the plateau
#: and the last point.
DEFAULT_CURVE_POINTS = 50
#: Printed for a value the API answered as null.
MISSING = "-"

# NoFADE and a group's ranking by it are defined on a score where higher is better.
NOFADE_NEEDS_HIGHER = (
    "NoFADE is defined on a score where higher is better (an accuracy), and this report's "
    "metric is lower-is-better"
)


class ReportFormat(str, Enum):
    """Output format of ``greenaudit report``."""

    md = "md"
    html = "html"


class ReportError(GreenauditError):
    """The service could not be reached, or refused a request; the message says what to do."""


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

    answer: NofadeOut
    run: NofadeRun | None
    dataset: NofadeGroup | None
    reason: str | None = None


@dataclass(frozen=True)
class RunReport:
    """Everything a report on one run prints, as the API answered it."""

    provenance: Provenance
    run: RunOut
    returns: ReturnsOut
    cost: CreationCostOut
    nofade: RunNofade


@dataclass(frozen=True)
class GroupReport:
    """Everything a report on a group of runs (a sweep, a search) prints.

    ``runs`` are in the order printed (started first); ``scores`` is the NoFADE answer for the
    group, whose entries the tables find by run id.
    """

    provenance: Provenance
    group: str
    metric: str
    runs: list[RunOut]
    totals: TotalsRow | None
    scores: NofadeOut
    best: RunOut | None
    best_returns: ReturnsOut | None
    best_cost: CreationCostOut | None


Report = RunReport | GroupReport
