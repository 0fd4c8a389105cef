"""Hugging Face ``transformers``: ``Trainer(..., callbacks=[GreenauditTrainerCallback()])``."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from .base import RunScope


class GreenauditTrainerCallback(TrainerCallback):
    """Measures a ``Trainer`` run; logs its metrics at each epoch end and evaluation.

    Takes the options of :func:`greenaudit.run`. With ``on_budget="stop"``, a spent budget
    stops training at the next epoch end or evaluation.
    """

    def __init__(self, **run_options: Any) -> None:
        self._scope = RunScope(**run_options)
        self._latest: dict[str, Any] = {}

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        self._scope.begin(
            total_steps=state.max_steps or None,
            model=type(model).__name__ if model is not None else None,
        )

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        self._latest.update(logs or {})

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Evaluation metrics are logged by on_evaluate, which comes after this for the epoch.
        metrics = {
            k: v
            for k, v in self._latest.items()
            if k not in ("epoch", "step") and not k.startswith("eval_")
        }
        if self._scope.log(state.global_step, round(state.epoch or 0), metrics):
            control.should_training_stop = True  # on_budget="stop": the budget is spent

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        self._latest.update(metrics or {})
        if self._scope.log(
            state.global_step,
            round(state.epoch or 0),
            {k: v for k, v in (metrics or {}).items() if k != "epoch"},
        ):
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._scope.end()
