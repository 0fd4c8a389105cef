"""``greenaudit demo``: real, measured training of small models, then the service.

Trains scikit-learn MLPs of growing width on the digits data that scikit-learn ships, each as
a greenaudit run that logs test accuracy every epoch, so the API and dashboards have real data.
"""

from __future__ import annotations

import secrets
import threading
import time
import warnings
from typing import Any

import typer

import greenaudit
from greenaudit.admin import project_keys
from greenaudit.client.measure import warm_up_in_background
from greenaudit.settings import Settings

DEMO_PROJECT = "demo"
DEMO_GROUP = "digits-width-sweep"
WIDTHS = (8, 16, 32, 64, 128, 256, 512)
# A common estimate of training cost: 2 FLOPs per parameter forward, 4 backward, per sample.
TRAIN_FLOPS_PER_PARAM_SAMPLE = 6
MEASURE_INTERVAL_S = 0.5


def _start_server(settings: Settings, host: str, port: int) -> tuple[Any, threading.Thread]:
    import uvicorn

    from greenaudit.api.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="greenaudit-demo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            typer.secho(
                f"error: could not serve on {host}:{port} (is the port in use? try --port)",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(2)
        time.sleep(0.05)
    return server, thread


def train_width_sweep(
    settings: Settings,
    epochs: int,
    widths: tuple[int, ...] = WIDTHS,
    project: str = DEMO_PROJECT,
) -> list[greenaudit.RunResult]:
    """Train one MLP per width, each a measured run; returns their results."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    classes = np.unique(digits.target)
    results = []
    for width in widths:
        params = x_train.shape[1] * width + width + width * len(classes) + len(classes)
        with greenaudit.run(
            project,
            f"mlp-{width}",
            "digits",
            "classification",
            name=f"mlp-{width}",
            group=DEMO_GROUP,
            primary_metric="accuracy",
            settings=settings,
            hidden_units=width,
        ) as run:
            run.set(model_params=params, dataset_size=len(x_train), total_steps=epochs)
            run.dataset_profile(labels=y_test.tolist())
            model = MLPClassifier(
                hidden_layer_sizes=(width,), random_state=0, learning_rate_init=0.005, batch_size=16
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                for epoch in range(1, epochs + 1):
                    model.partial_fit(x_train, y_train, classes=classes)
                    run.log(epoch=epoch, accuracy=model.score(x_test, y_test), loss=model.loss_)
            processed = epochs * len(x_train)
            run.set(
                samples_processed=processed,
                flops=float(TRAIN_FLOPS_PER_PARAM_SAMPLE * params * processed),
            )
        if run.result is not None:
            results.append(run.result)
            typer.echo(
                f"  mlp-{width:<4} accuracy {model.score(x_test, y_test):.3f}  "
                f"{run.result.energy_kwh * 1000:.4f} Wh  "
                f"{run.result.co2_kg * 1000:.5f} g CO2e  {run.result.duration_s:.1f} s"
            )
    return results


def run_demo(settings: Settings, *, host: str, port: int, epochs: int, serve_after: bool) -> None:
    """Serve on ``host:port``, train the demo runs against it, then keep serving."""
    hardware_known = warm_up_in_background(settings)
    admin_token = settings.admin_token or secrets.token_urlsafe(24)
    server, thread = _start_server(
        settings.model_copy(update={"admin_token": admin_token}), host, port
    )
    url = f"http://{host}:{port}"
    write_key, read_key = project_keys(url, admin_token, DEMO_PROJECT)
    client_settings = settings.model_copy(
        update={"url": url, "api_key": write_key, "measure_interval_s": MEASURE_INTERVAL_S}
    )
    hardware_known.wait(30)  # so that the first run is measured from its first epoch
    typer.echo(
        f"Training {len(WIDTHS)} MLPs on digits, {epochs} epochs each, measured by greenaudit:"
    )
    results = train_width_sweep(client_settings, epochs)
    delivered = sum(r.delivered for r in results)
    typer.echo(
        f"{delivered}/{len(results)} runs delivered to {url}. Carbon intensity: "
        f"{results[0].carbon_intensity_source if results else 'n/a'}."
    )
    typer.echo(f"\nDashboards: {url}/dashboards/ (sign in with the read key below)")
    typer.echo(f"API docs:  {url}/docs")
    typer.echo(f"Read key:  {read_key}")
    typer.echo(
        f"Try:       curl -H 'Authorization: Bearer {read_key}' '{url}/api/v1/totals?by=model'"
    )
    if not settings.admin_token:
        typer.echo(f"Admin token:  {admin_token} (this demo session only)")
    if not serve_after:
        server.should_exit = True
        thread.join(10)
        return
    typer.echo("\nServing; press Ctrl-C to stop.")
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(10)
