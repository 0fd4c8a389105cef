"""The framework callbacks on tiny CPU models: metrics per epoch, with the energy spent so far."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from greenaudit.settings import Settings  # noqa: E402

from ..conftest import LiveServer  # noqa: E402

EPOCHS = 3
# The frameworks' own deprecation chatter (numpy 2, pytree) is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
torch = pytest.importorskip("torch")


@pytest.fixture
def client_settings(live_server: LiveServer, tmp_path: Path) -> Settings:
    from greenaudit.client.measure import warm_up_in_background

    configured = live_server.client_settings(tmp_path, measure_interval_s=0.1)
    # Energy is measured from the moment hardware is known; have that done before training.
    warm_up_in_background(configured).wait(30)
    return configured


def data(n: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    return x, y


def the_run(live_server: LiveServer, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    runs = httpx.get(
        f"{live_server.url}/api/v1/runs", params={"model": model}, headers=live_server.keys.read
    ).json()
    assert runs["total"] == 1, runs
    run = runs["items"][0]
    return run, httpx.get(
        f"{live_server.url}/api/v1/runs/{run['id']}/metrics",
        params={"limit": 1000},
        headers=live_server.keys.read,
    ).json()


def energy_at_epochs(live_server: LiveServer, run_id: str, metric: str) -> list[float]:
    curve = httpx.get(
        f"{live_server.url}/api/v1/runs/{run_id}/returns",
        params={"metric": metric},
        headers=live_server.keys.read,
    ).json()
    assert curve["status"] == "ok", curve
    return [p["energy_kwh"] for p in curve["curve"]]


def tiny_lightning_module() -> Any:
    """A one-layer classifier that logs its training loss per epoch and validation accuracy."""
    import lightning as L  # noqa: N812

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.layer(x), y)
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            accuracy = (self.layer(x).argmax(1) == y).float().mean()
            self.log("val_accuracy", accuracy)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny


def quiet_cpu_training(max_epochs: int, callback: Any) -> tuple[Any, Any]:
    """A Lightning trainer on the CPU with nothing of its own logged or saved, and a loader."""
    import lightning as L  # noqa: N812

    x, y = data()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=32
    )
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    return trainer, loader


def test_lightning(client_settings: Settings, live_server: LiveServer):
    from greenaudit.integrations.lightning import GreenauditCallback

    Tiny = tiny_lightning_module()

    trainer, loader = quiet_cpu_training(
        EPOCHS, GreenauditCallback(model="tiny-lightning", settings=client_settings)
    )
    trainer.fit(Tiny(), loader, loader)
    run, points = the_run(live_server, "tiny-lightning")
    assert run["status"] == "finished" and run["totals"]["energy_kwh"] > 0
    accuracy = [p for p in points["items"] if p["name"] == "val_accuracy"]
    assert [p["epoch"] for p in accuracy] == list(range(EPOCHS))
    assert [p["step"] for p in accuracy] == [64 * (e + 1) for e in range(EPOCHS)]  # global step
    energy = energy_at_epochs(live_server, run["id"], "val_accuracy")
    assert energy == sorted(energy) and energy[-1] > 0


def tiny_hf_trainer(callback: Any, output_dir: Path, epochs: int, evaluate: bool) -> Any:
    """A Trainer of a one-layer classifier, logging its training loss once per epoch."""
    from transformers import Trainer, TrainingArguments

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)

        def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
            logits = self.layer(x)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            return {"loss": loss, "logits": logits}

    x, y = data()
    dataset = [{"x": torch.tensor(a), "labels": torch.tensor(b)} for a, b in zip(x, y, strict=True)]
    arguments = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=32,
        eval_strategy="epoch" if evaluate else "no",
        logging_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    return Trainer(
        model=Tiny(),
        args=arguments,
        train_dataset=dataset,
        eval_dataset=dataset if evaluate else None,
        callbacks=[callback],
    )


def test_hugging_face_trainer(client_settings: Settings, live_server: LiveServer, tmp_path: Path):
    from greenaudit.integrations.hf import GreenauditTrainerCallback

    trainer = tiny_hf_trainer(
        GreenauditTrainerCallback(model="tiny-hf", settings=client_settings),
        tmp_path / "hf",
        EPOCHS,
        evaluate=True,
    )
    trainer.train()
    run, points = the_run(live_server, "tiny-hf")
    assert run["status"] == "finished" and run["totals"]["energy_kwh"] > 0
    assert run["total_steps"] == EPOCHS * 64  # 2048 samples / 32, from the Trainer's plan
    eval_loss = [p for p in points["items"] if p["name"] == "eval_loss"]
    assert [p["epoch"] for p in eval_loss] == list(range(1, EPOCHS + 1))
    assert [p["step"] for p in eval_loss] == [64 * e for e in range(1, EPOCHS + 1)]
    # Each epoch's training loss at that epoch's step, as the Trainer itself recorded it (it
    # logs an epoch's loss after the epoch ends, the last one included).
    loss = [(p["step"], p["value"]) for p in points["items"] if p["name"] == "loss"]
    trainer_losses = [
        (h["step"], pytest.approx(h["loss"])) for h in trainer.state.log_history if "loss" in h
    ]
    assert len(trainer_losses) == EPOCHS and loss == trainer_losses
    # Speeds and the post-training summary are not metrics of the model.
    names = {p["name"] for p in points["items"]}
    assert not {n for n in names if n.endswith(("_runtime", "_per_second"))}
    assert "train_loss" not in names and "total_flos" not in names
    energy = energy_at_epochs(live_server, run["id"], "eval_loss")
    assert energy == sorted(energy) and energy[-1] > 0


def test_keras(client_settings: Settings, live_server: LiveServer):
    import keras

    from greenaudit.integrations.keras import GreenauditKerasCallback

    x, y = data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        x,
        y,
        epochs=EPOCHS,
        batch_size=32,
        validation_split=0.25,
        verbose=0,
        callbacks=[GreenauditKerasCallback(model="tiny-keras", settings=client_settings)],
    )
    run, points = the_run(live_server, "tiny-keras")
    assert run["status"] == "finished" and run["totals"]["energy_kwh"] > 0
    accuracy = [p for p in points["items"] if p["name"] == "val_accuracy"]
    assert [p["epoch"] for p in accuracy] == list(range(EPOCHS))
    assert [p["step"] for p in accuracy] == [48 * (e + 1) for e in range(EPOCHS)]  # 1536/32
    energy = energy_at_epochs(live_server, run["id"], "val_accuracy")
    assert energy == sorted(energy) and energy[-1] > 0


@pytest.fixture
def spent_budget(live_server: LiveServer) -> None:
    """A project budget that the first energy sample of any run spends."""
    budget = httpx.post(
        f"{live_server.url}/api/v1/budgets",
        json={"limit_kwh": 1e-9},
        headers=live_server.keys.write,
    )
    assert budget.status_code == 201, budget.text


@pytest.fixture
def stop_settings(client_settings: Settings) -> Settings:
    return client_settings.model_copy(update={"budget_check_interval_s": 0.1})


# Minutes of training if the budget does not stop it.
MAX_EPOCHS = 2000


def test_lightning_stops_at_an_epoch_end_when_the_budget_is_spent(
    spent_budget: None, stop_settings: Settings, live_server: LiveServer
):
    from greenaudit.integrations.lightning import GreenauditCallback

    Tiny = tiny_lightning_module()  # its validation_step is not run: no val loader

    trainer, loader = quiet_cpu_training(
        MAX_EPOCHS,
        GreenauditCallback(model="tiny-budget", on_budget="stop", settings=stop_settings),
    )
    trainer.fit(Tiny(), loader)  # no exception: Lightning's own stop
    assert trainer.current_epoch < MAX_EPOCHS - 1
    run, points = the_run(live_server, "tiny-budget")
    assert run["status"] == "stopped_by_budget"
    assert run["total_steps"] == MAX_EPOCHS * 64  # from the trainer's plan
    # Every epoch that ended was logged, the one whose end stopped the fit included; Lightning
    # counts that epoch as done.
    epochs = sorted({p["epoch"] for p in points["items"] if p["name"] == "train_loss"})
    assert epochs == list(range(trainer.current_epoch))


def test_keras_stops_at_an_epoch_end_when_the_budget_is_spent(
    spent_budget: None, stop_settings: Settings, live_server: LiveServer
):
    import keras

    from greenaudit.integrations.keras import GreenauditKerasCallback

    x, y = data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(
        x,
        y,
        epochs=MAX_EPOCHS,
        batch_size=32,
        verbose=0,
        callbacks=[
            GreenauditKerasCallback(
                model="tiny-keras-budget", on_budget="stop", settings=stop_settings
            )
        ],
    )  # no exception: Keras's own stop
    epochs_run = len(history.history["loss"])
    assert epochs_run < MAX_EPOCHS
    run, points = the_run(live_server, "tiny-keras-budget")
    assert run["status"] == "stopped_by_budget"
    assert run["total_steps"] == MAX_EPOCHS * 64  # 2048 / 32 steps an epoch, from fit's plan
    # Every epoch Keras ran was logged, with its loss as Keras recorded it.
    loss = [(p["epoch"], p["step"], p["value"]) for p in points["items"] if p["name"] == "loss"]
    assert loss == [
        (e, 64 * (e + 1), pytest.approx(value)) for e, value in enumerate(history.history["loss"])
    ]


def test_hugging_face_stops_at_an_epoch_end_when_the_budget_is_spent(
    spent_budget: None, stop_settings: Settings, live_server: LiveServer, tmp_path: Path
):
    from greenaudit.integrations.hf import GreenauditTrainerCallback

    trainer = tiny_hf_trainer(
        GreenauditTrainerCallback(model="tiny-hf-budget", on_budget="stop", settings=stop_settings),
        tmp_path / "hf",
        MAX_EPOCHS,
        evaluate=False,
    )
    trainer.train()  # no exception: the Trainer's own stop
    steps_run = trainer.state.global_step
    assert 0 < steps_run < MAX_EPOCHS * 64 and steps_run % 64 == 0  # at an epoch end
    run, points = the_run(live_server, "tiny-hf-budget")
    assert run["status"] == "stopped_by_budget"
    assert run["total_steps"] == MAX_EPOCHS * 64
    # The last epoch's loss, logged by the Trainer after the stop was asked for, is kept too.
    loss = [(p["step"], p["value"]) for p in points["items"] if p["name"] == "loss"]
    trainer_losses = [
        (h["step"], pytest.approx(h["loss"])) for h in trainer.state.log_history if "loss" in h
    ]
    assert loss == trainer_losses and loss[-1][0] == steps_run


def test_a_keras_fit_that_raised_is_ended_as_failed_when_the_callback_is_used_again(
    client_settings: Settings, live_server: LiveServer
):
    import keras

    from greenaudit.integrations.keras import GreenauditKerasCallback

    class Broken(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 1:
                raise RuntimeError("disk full while checkpointing")

    x, y = data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    measured = GreenauditKerasCallback(model="tiny-keras-retried", settings=client_settings)
    with pytest.raises(RuntimeError, match="disk full"):
        model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[measured, Broken()])
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[measured])

    runs = httpx.get(
        f"{live_server.url}/api/v1/runs",
        params={"model": "tiny-keras-retried", "sort": "started_at", "order": "asc"},
        headers=live_server.keys.read,
    ).json()["items"]
    assert [r["status"] for r in runs] == ["failed", "finished"]
    assert "raised" in runs[0]["error"]
    # The retry counts its own steps from zero: 64 a epoch over 2 epochs.
    assert runs[1]["total_steps"] == 2 * 64
    points = httpx.get(
        f"{live_server.url}/api/v1/runs/{runs[1]['id']}/metrics",
        params={"name": "loss"},
        headers=live_server.keys.read,
    ).json()["items"]
    assert [p["step"] for p in points] == [64, 128]
