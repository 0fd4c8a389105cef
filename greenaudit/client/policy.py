"""What a run does when its budget is spent or its metric plateaus, if its user asked.

The sender thread asks the service for the run's forecast every
``GREENAUDIT_BUDGET_CHECK_INTERVAL_S`` and hands the answer to :class:`Policy`, which only
records what it found. The training thread acts on it at its next step boundary (the next
``run.log``): it calls the plateau callback, or raises :class:`BudgetExceeded`. Nothing is ever
raised unless the user chose ``on_budget="stop"``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from greenaudit.errors import GreenauditError

logger = logging.getLogger("greenaudit")

ON_BUDGET = ("warn", "stop")


class BudgetExceeded(GreenauditError):
    """Raised at a step boundary of a run started with ``on_budget="stop"`` over its budget.

    Everything logged up to the step is kept and sent; the run ends as ``stopped_by_budget``.

    Attributes:
        budgets: The budgets crossed, as the service described them (limits, ``spent`` and
            ``forecast`` in kWh and kg CO2e).

    """

    def __init__(self, message: str, budgets: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.budgets = budgets


@dataclass(frozen=True)
class PlateauPassed:
    """What ``on_plateau`` is called with, once, when the run is past its forecast plateau.

    Attributes:
        metric: The metric forecast.
        step: The step at which it is forecast to stop gaining more than ε.
        value: Its forecast value there.
        final_value: Its forecast value at ``total_steps``.
        steps_after: Steps planned after the plateau.
        energy_after_kwh: What those steps are forecast to cost, kWh.
        co2_after_kg: The same in kg CO2e.

    """

    metric: str
    step: int
    value: float
    final_value: float
    steps_after: int
    energy_after_kwh: float
    co2_after_kg: float


def _describe(budget: dict[str, Any], key: str) -> str:
    scope = f"group {budget['group']!r}" if budget.get("group") else "the project"
    amounts = []
    for unit, label in (("kg_co2", "kg CO2e"), ("kwh", "kWh")):
        limit = budget.get(f"limit_{unit}")
        if limit is not None:
            amounts.append(f"{budget[key][unit]:.4g} of {limit:.4g} {label}")
    return f"{scope} ({budget['period']}): " + ", ".join(amounts)


class Policy:
    """One run's ``on_budget`` and ``on_plateau`` choices and what the service said."""

    def __init__(
        self, on_budget: str | None, on_plateau: Callable[[PlateauPassed], Any] | None
    ) -> None:
        if on_budget is not None and on_budget not in ON_BUDGET:
            raise ValueError(f"on_budget must be 'warn' or 'stop', not {on_budget!r}")
        if on_plateau is not None and not callable(on_plateau):
            raise ValueError("on_plateau must be a function taking a PlateauPassed")
        self.on_budget = on_budget
        self.on_plateau = on_plateau
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self._stop: BudgetExceeded | None = None
        self._plateau: PlateauPassed | None = None
        self.stopped = False  # BudgetExceeded was raised (or handed to a framework)
        self._plateau_called = False
        # Read on the training thread at every log: one attribute, no lock.
        self.pending = False

    def consider(self, answer: dict[str, Any]) -> None:
        """Record what the service answered (sender thread)."""
        budgets = answer.get("budgets") or []
        exceeded = [b for b in budgets if b.get("exceeded")]
        if self.on_budget is not None:
            for budget in budgets:
                if budget.get("exceeded"):
                    self._warn(budget, "spent", "is spent")
                elif budget.get("forecast_exceeded"):
                    self._warn(budget, "forecast", "is forecast to be overspent")
        plateau = answer.get("plateau")
        with self._lock:
            if self.on_budget == "stop" and exceeded and self._stop is None and not self.stopped:
                message = "carbon budget spent; " + "; ".join(
                    _describe(b, "spent") for b in exceeded
                )
                self._stop = BudgetExceeded(message, exceeded)
            if (
                self.on_plateau is not None
                and plateau
                and plateau.get("passed")
                and self._plateau is None
            ):
                self._plateau = _plateau_passed(plateau)
            self.pending = self._stop is not None or (
                self._plateau is not None and not self._plateau_called
            )

    def _warn(self, budget: dict[str, Any], amount: str, state: str) -> None:
        key = (str(budget.get("id")), amount)
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(
                "greenaudit: a budget this run counts against %s: %s",
                state,
                _describe(budget, amount),
            )

    def at_step_boundary(self) -> None:
        """Act on what was found (training thread): call on_plateau, or raise BudgetExceeded."""
        with self._lock:
            plateau = None if self._plateau_called else self._plateau
            stop, self._stop = self._stop, None
            if plateau is not None:
                self._plateau_called = True
            if stop is not None:
                self.stopped = True
            self.pending = False
        try:
            if plateau is not None and self.on_plateau is not None:
                self.on_plateau(plateau)
        finally:
            # A callback that raises (the user's own code, maybe meant to end training) must
            # not cancel a stop the budget asked for; its exception stays as the context.
            if stop is not None:
                raise stop


def _plateau_passed(plateau: dict[str, Any]) -> PlateauPassed | None:
    """The service's plateau as the callback's argument; None when a field is missing or odd."""
    try:
        return PlateauPassed(
            metric=str(plateau["metric"]),
            step=int(plateau["step"]),
            value=float(plateau["value"]),
            final_value=float(plateau["final_value"]),
            steps_after=int(plateau["steps_after"]),
            energy_after_kwh=float(plateau["energy_after_kwh"]),
            co2_after_kg=float(plateau["co2_after_kg"]),
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        logger.debug("greenaudit: plateau answer not understood: %r", plateau)
        return None
