"""What the framework callbacks share: one run for the training, metrics as plain numbers."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from greenaudit.client.policy import BudgetExceeded
from greenaudit.client.run import Run, current_run, run

logger = logging.getLogger("greenaudit")


class RunScope:
    """The run a callback logs to: the one already active, or one it starts and finishes."""

    def __init__(self, **run_options: Any) -> None:
        self._options = run_options
        self._own: Run | None = None

    @property
    def run(self) -> Run | None:
        return self._own or current_run()

    def begin(self, total_steps: Any = None, **defaults: Any) -> None:
        """Start a run unless one is active; ``total_steps`` is the framework's planned total."""
        if self._own is not None:
            # Keras and the Trainer do not tell callbacks when training raises, so a run this
            # callback started for an earlier fit that failed is still open: end it as failed
            # rather than log a new fit, and its idle time, into it.
            self.end(RuntimeError("training ended without its end callback (it raised)"))
        if current_run() is not None:
            return  # inside @greenaudit.track or greenaudit.run: log there, do not finish it
        self._own = run(**{**defaults, **self._options}).start()
        try:
            planned = int(total_steps) if total_steps is not None else 0
        except (TypeError, ValueError, OverflowError):  # an endless or unsized loader
            planned = 0
        if planned > 0:
            # The framework knows the plan, so forecasts work without a run.set by the user.
            self._own.set(total_steps=planned)

    def end(self, error: BaseException | None = None) -> None:
        if self._own is not None:
            self._own.finish(error)
            self._own = None

    def log(self, step: int, epoch: int | None, metrics: Mapping[str, Any]) -> bool:
        """Log at a step boundary; True when the run's budget policy says stop training.

        The callbacks turn that into the framework's own graceful stop rather than letting
        :class:`BudgetExceeded` tear through the training loop.
        """
        active = self.run
        if active is None:
            return False
        numbers = {}
        for name, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue  # strings, lists: not metrics
            if math.isfinite(number):
                numbers[name.replace("/", "_")] = number
        try:
            active.log(step=step, epoch=epoch, **numbers)
        except BudgetExceeded:
            return True
        return False
