"""Hugging Face ``transformers``: ``Trainer(..., callbacks=[GreenauditTrainerCallback()])``."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from .base import RunScope

# Keys of a Trainer log that describe the trainer's progress, not the model.
_NOT_METRICS = frozenset({"epoch", "step", "total_flos", "num_input_tokens_seen"})


class GreenauditTrainerCallback(TrainerCallback):
    """Measures a ``Trainer`` run; logs each of its logs (training and evaluation) as it comes.

    Takes the options of :func:`greenaudit.run`. With ``on_budget="stop"``, a spent budget
    stops training at the next epoch end or log. The Trainer does not tell callbacks when
    training raises: the run then ends as failed at the next ``train`` with this callback, or
    is marked crashed by the service once the process is gone. Inside
    ``with greenaudit.run(...)`` the run ends with the block, a failure included.
    """

    def __init__(self, **run_options: Any) -> None:
        self._scope = RunScope(**run_options)

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        self._scope.begin(
            total_steps=state.max_steps or None,
            model=type(model).__name__ if model is not None else None,
        )

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        # The Trainer logs an epoch's training loss after on_epoch_end, so metrics are taken
        # here, at the step they describe, and never carried to a later boundary.
        logs = logs or {}
        if "train_runtime" in logs:
            return  # the summary after training: speeds and a mean loss, not a curve point
        metrics = {
            name: value
            for name, value in logs.items()
            if name not in _NOT_METRICS and not name.endswith(("_runtime", "_per_second"))
        }
        if self._scope.log(state.global_step, round(state.epoch or 0), metrics):
            control.should_training_stop = True  # on_budget="stop": the budget is spent

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # A step boundary even when nothing is logged per epoch: progress for the forecast,
        # and the point where a spent budget stops training.
        if self._scope.log(state.global_step, round(state.epoch or 0), {}):
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._scope.end()
