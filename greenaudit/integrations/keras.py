"""Keras 3: ``model.fit(..., callbacks=[GreenauditKerasCallback(model="mlp")])``."""

from __future__ import annotations

from typing import Any

import keras

from .base import RunScope


class GreenauditKerasCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Measures ``fit``; logs its metrics (validation included) at each epoch end.

    Takes the options of :func:`greenaudit.run`. With ``on_budget="stop"``, a spent budget
    stops ``fit`` at the next epoch end. Keras does not tell callbacks when ``fit`` raises: the
    run then ends as failed at the next ``fit`` with this callback, or is marked crashed by the
    service once the process is gone. Inside ``with greenaudit.run(...)`` the run ends with
    the block, a failure included.
    """

    def __init__(self, **run_options: Any) -> None:
        super().__init__()
        self._scope = RunScope(**run_options)
        self._step = 0

    def on_train_begin(self, logs: Any = None) -> None:
        self._step = 0  # steps of this fit: a callback may be passed to several
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        self._scope.begin(
            total_steps=steps * epochs if steps and epochs else None,
            model=getattr(self.model, "name", None),
        )

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._step += 1

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self._scope.log(self._step, epoch, logs or {}):
            self.model.stop_training = True  # on_budget="stop": the budget is spent

    def on_train_end(self, logs: Any = None) -> None:
        self._scope.end()
