"""PyTorch Lightning: ``Trainer(callbacks=[GreenauditCallback(model="resnet18")])``."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from .base import RunScope


class GreenauditCallback(Callback):
    """Measures a Lightning fit and logs its metrics at each epoch and validation end.

    With ``on_budget="stop"``, a spent budget stops the fit at the next epoch end.

    Takes the options of :func:`greenaudit.run` (model, dataset, task, group ...). Inside
    ``@greenaudit.track``, it logs to that run instead of starting one.
    """

    def __init__(self, **run_options: Any) -> None:
        super().__init__()
        self._scope = RunScope(**run_options)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._scope.begin(
            total_steps=trainer.estimated_stepping_batches, model=type(pl_module).__name__
        )

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._scope.log(trainer.global_step, trainer.current_epoch, trainer.callback_metrics):
            trainer.should_stop = True  # on_budget="stop": the budget is spent

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # During fit, validation runs inside the training epoch, and the epoch's end logs its
        # metrics with the training ones; only a standalone trainer.validate() logs here.
        if not trainer.sanity_checking and trainer.state.fn != "fit":
            self._scope.log(trainer.global_step, trainer.current_epoch, trainer.callback_metrics)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._scope.end()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._scope.end(exception)
