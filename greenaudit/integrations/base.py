"""What the framework callbacks share: one run for the training, metrics as plain numbers."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

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

    def begin(self, **defaults: Any) -> None:
        if current_run() is not None or self._own is not None:
            return  # inside @greenaudit.track or greenaudit.run: log there, do not finish it
        self._own = run(**{**defaults, **self._options}).start()

    def end(self, error: BaseException | None = None) -> None:
        if self._own is not None:
            self._own.finish(error)
            self._own = None

    def log(self, step: int, epoch: int | None, metrics: Mapping[str, Any]) -> None:
        active = self.run
        if active is None:
            return
        numbers = {}
        for name, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue  # strings, lists: not metrics
            if math.isfinite(number):
                numbers[name.replace("/", "_")] = number
        if numbers:
            active.log(step=step, epoch=epoch, **numbers)
