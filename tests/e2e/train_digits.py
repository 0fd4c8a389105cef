"""A real training script, instrumented only by ``@greenaudit.track``.

Trains a scikit-learn MLP on the digits data, logs test accuracy each epoch, and prints what it
logged as JSON so the end-to-end test can compare it with what the service stored.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import greenaudit

EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 25


@greenaudit.track(
    model="mlp-128",
    dataset="digits",
    task="classification",
    primary_metric="accuracy",
    learning_rate=0.005,
)
def train() -> list[tuple[int, float]]:
    run = greenaudit.current_run()
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0
    )
    model = MLPClassifier(
        hidden_layer_sizes=(128,), learning_rate_init=0.005, batch_size=8, random_state=0
    )
    logged = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(1, EPOCHS + 1):
            model.partial_fit(x_train, y_train, classes=np.arange(10))
            accuracy = float(model.score(x_test, y_test))
            run.log(epoch=epoch, accuracy=accuracy)
            logged.append((epoch, accuracy))
    run.set(samples_processed=EPOCHS * len(x_train))
    return logged


if __name__ == "__main__":
    logged = train()
    result = train.last_run.result
    print(json.dumps({"run_id": result.run_id, "logged": logged, "delivered": result.delivered}))
