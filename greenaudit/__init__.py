"""greenaudit: what did this accuracy cost, and is the next point worth it.

Measure a training function with ``@greenaudit.track`` (or ``with greenaudit.run(...)``), log
metrics with ``greenaudit.current_run().log(...)``, and query energy, CO2 and returns curves from
the greenaudit service.
"""

from greenaudit._version import __version__
from greenaudit.client.policy import BudgetExceeded, PlateauPassed
from greenaudit.client.run import Run, RunResult, current_run, run, track
from greenaudit.errors import GreenauditError, ServiceError

__all__ = [
    "BudgetExceeded",
    "GreenauditError",
    "PlateauPassed",
    "Run",
    "RunResult",
    "ServiceError",
    "__version__",
    "current_run",
    "run",
    "track",
]
