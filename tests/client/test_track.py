"""The client hook with real CodeCarbon measurement, against a real service or none."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
import uuid
from pathlib import Path

import httpx
import pytest

import greenaudit
from greenaudit.client.transport import flush_spool
from greenaudit.settings import Settings

from ..conftest import LiveServer, free_port


def busy(seconds: float) -> int:
    """Keep a core busy so the meter has something to measure."""
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


def offline_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": tmp_path,
        "url": None,
        "api_key": None,
        "measure_interval_s": 0.2,
        "country": "FRA",
        "flush_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def spooled_ops(path: str | None) -> list[dict]:
    assert path is not None
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_without_a_service_the_decorator_measures_and_keeps_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    settings = offline_settings(tmp_path)

    @greenaudit.track(model="mlp", dataset="digits", settings=settings)
    def train() -> str:
        run = greenaudit.current_run()
        assert run is not None
        for epoch in range(3):
            busy(0.3)
            run.log(epoch=epoch, accuracy=0.5 + epoch / 10)
        return "trained"

    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        assert train() == "trained"
        train()
    assert greenaudit.current_run() is None
    result = train.last_run.result
    assert isinstance(result, greenaudit.RunResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.energy_kwh = 0.0  # type: ignore[misc]
    assert result.status == "finished" and not result.delivered
    assert result.cpu_kwh > 0 and result.ram_kwh > 0 and result.gpu_kwh == 0
    assert result.methods == {"cpu": "codecarbon", "ram": "codecarbon"}
    assert math.isclose(result.energy_kwh, result.cpu_kwh + result.ram_kwh, rel_tol=1e-12)
    assert math.isclose(
        result.co2_kg, result.energy_kwh * result.carbon_intensity_g_per_kwh / 1000, rel_tol=1e-12
    )
    assert "France (FRA)" in result.carbon_intensity_source

    ops = spooled_ops(result.spool_path)
    kinds = [op["op"] for op in ops]
    assert kinds[0] == "create_run" and kinds[-1] == "finish_run"
    metrics = [op["body"] for op in ops if op["op"] == "metric"]
    assert [(m["step"], m["value"]) for m in metrics] == [(0, 0.5), (1, 0.6), (2, 0.7)]
    energy = [op["body"] for op in ops if op["op"] == "energy"]
    assert sum(e["cpu_kwh"] for e in energy) == pytest.approx(result.cpu_kwh, rel=1e-12)
    assert [e["seq"] for e in energy] == list(range(len(energy)))

    # Two runs, one message: where the data is, and how to send it.
    notices = [r.getMessage() for r in caplog.records if "no service configured" in r.getMessage()]
    assert len(notices) == 1
    assert str(settings.spool_path) in notices[0] and "greenaudit flush" in notices[0]


def test_context_manager_and_failed_runs(tmp_path: Path):
    settings = offline_settings(tmp_path)
    with greenaudit.run(model="a", settings=settings) as run:
        assert greenaudit.current_run() is run
        run.log(step=7, loss=1.5)
    assert run.result is not None and run.result.status == "finished"

    with pytest.raises(ZeroDivisionError):
        with greenaudit.track(model="b", settings=settings) as failing:
            _ = 1 / 0
    assert failing.result is not None and failing.result.status == "failed"
    finish = spooled_ops(failing.result.spool_path)[-1]["body"]
    assert finish["status"] == "failed" and "ZeroDivisionError" in finish["error"]


def test_async_functions_are_tracked(tmp_path: Path):
    settings = offline_settings(tmp_path)

    @greenaudit.track(model="async-model", settings=settings)
    async def train() -> int:
        await asyncio.sleep(0.05)
        greenaudit.current_run().log(accuracy=0.9)  # type: ignore[union-attr]
        return 42

    assert asyncio.run(train()) == 42
    assert train.last_run.result.status == "finished"
    metrics = [op for op in spooled_ops(train.last_run.result.spool_path) if op["op"] == "metric"]
    assert [m["body"]["value"] for m in metrics] == [0.9]


def test_bare_decorator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GREENAUDIT_HOME", str(tmp_path))
    monkeypatch.delenv("GREENAUDIT_URL", raising=False)

    @greenaudit.track
    def train(x: int) -> int:
        return x * 2

    assert train(21) == 42
    assert train.last_run.result.spool_path.startswith(str(tmp_path))


def test_bad_metric_values_never_reach_the_training_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    settings = offline_settings(tmp_path)
    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        with greenaudit.run(settings=settings) as run:
            run.log(step=1, loss=float("nan"), accuracy=0.5)
            run.log(step=2, loss=object(), accuracy=0.6)
            run.log(step=3, loss=10**400, accuracy=0.7)  # too large for a float
            run.set(not_a_field=3, total_steps=10)
            run.dataset_profile()  # nothing given: ignored with a warning
    values = [
        (op["body"]["name"], op["body"]["value"])
        for op in spooled_ops(run.result.spool_path)
        if op["op"] == "metric"
    ]
    assert values == [("accuracy", 0.5), ("accuracy", 0.6), ("accuracy", 0.7)]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "non-finite" in messages and "not a number" in messages
    assert "not_a_field" in messages and "dataset_profile" in messages


def test_invalid_configuration_disables_measurement_but_not_training(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv("GREENAUDIT_COUNTRY", "France")

    @greenaudit.track
    def train() -> str:
        greenaudit.current_run().log(accuracy=1.0)  # type: ignore[union-attr]
        return "ok"

    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        assert train() == "ok"
    assert train.last_run.result is None
    assert "invalid configuration" in caplog.text and "GREENAUDIT_COUNTRY" in caplog.text


def test_unreachable_service_keeps_data_and_returns_promptly(tmp_path: Path):
    settings = offline_settings(
        tmp_path, url=f"http://127.0.0.1:{free_port()}", api_key="ga_x_y", flush_timeout_s=1.0
    )
    started = time.monotonic()
    with greenaudit.run(model="m", settings=settings) as run:
        run.log(step=1, accuracy=0.5)
    assert time.monotonic() - started < 8
    assert run.result is not None and not run.result.delivered
    assert Path(run.result.spool_path).exists()


def test_runs_reach_the_service_and_flush_sends_leftovers(tmp_path: Path, live_server: LiveServer):
    online = offline_settings(tmp_path, url=live_server.url, api_key=live_server.write_key)

    with greenaudit.run(model="resnet", dataset="digits", settings=online) as run:
        busy(0.5)
        run.set(samples_processed=1000, model_params=12345)
        run.dataset_profile(labels=[0, 1, 1, 2, 2, 2, 2, 2])
        run.log(epoch=1, accuracy=0.75)
    assert run.result is not None and run.result.delivered
    stored = httpx.get(
        f"{live_server.url}/api/v1/runs/{run.id}", headers=live_server.keys.read
    ).json()
    assert stored["status"] == "finished"
    assert (stored["samples_processed"], stored["model_params"]) == (1000, 12345)
    assert stored["totals"]["cpu_kwh"] == pytest.approx(run.result.cpu_kwh, rel=1e-12)
    assert stored["totals"]["co2_kg"] == pytest.approx(run.result.co2_kg, rel=1e-9)
    profiles = httpx.get(
        f"{live_server.url}/api/v1/datasets/profiles", headers=live_server.keys.read
    ).json()
    assert [(p["name"], p["class_counts"]) for p in profiles] == [("digits", [1, 2, 5])]
    assert not list(online.spool_path.glob("*.jsonl"))  # delivered spools are removed

    # A run made while no service was configured waits in the spool until flushed.
    offline = offline_settings(tmp_path)
    with greenaudit.run(model="later", settings=offline) as late:
        late.log(step=1, accuracy=0.25)
    assert flush_spool(offline.spool_path, online) == (1, 0)
    assert flush_spool(offline.spool_path, online) == (0, 0)
    stored = httpx.get(
        f"{live_server.url}/api/v1/runs/{late.id}/metrics", headers=live_server.keys.read
    ).json()
    assert [(p["step"], p["value"]) for p in stored["items"]] == [(1, 0.25)]


def test_gpu_energy_comes_from_the_nvml_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sys

    from .fake_pynvml import FakeDevice, make_module

    # Two visible GPUs of three; each read of a counter adds 0.001 kWh.
    gpus = [FakeDevice(f"GPU-{i}", mj_per_read=3_600_000) for i in range(3)]
    monkeypatch.setitem(sys.modules, "pynvml", make_module(gpus))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    with greenaudit.run(model="big", settings=offline_settings(tmp_path)) as run:
        busy(0.5)
    result = run.result
    assert result is not None
    assert result.methods["gpu"] == "nvml-counter"
    ops = spooled_ops(result.spool_path)
    energy = [op["body"] for op in ops if op["op"] == "energy"]
    # One read per sample per device after the opening read: 0.002 kWh per sample.
    assert [e["gpu_kwh"] for e in energy] == pytest.approx([0.002] * len(energy))
    assert {e["gpu_count"] for e in energy} == {2}
    assert result.gpu_kwh == pytest.approx(0.002 * len(energy))
    assert result.gpu_hours == pytest.approx(2 * result.measured_s / 3600)
    hardware = ops[0]["body"]["hardware"]
    assert (hardware["gpu_model"], hardware["gpu_count"]) == ("NVIDIA H200", 2)
    assert gpus[1].energy_mj == 0  # the hidden GPU was never read


def test_dataset_profiles_from_labels_counts_pixels_and_class_numbers(tmp_path: Path):
    settings = offline_settings(tmp_path)
    with greenaudit.run(dataset="voc", settings=settings) as run:
        run.dataset_profile(labels=["cat", "dog", "cat"], version="labels")
        run.dataset_profile(pixel_histograms=[[10, 0, 5], [0, 20, 5]], version="pixels")
        run.dataset_profile(class_counts=[3, 4], version="counts")
        run.dataset_profile(num_classes=21, version="uniform")
        run.dataset_profile(pixel_histograms=[[1, -2]], version="bad")  # refused, not raised
    profiles = [
        op["body"] for op in spooled_ops(run.result.spool_path) if op["op"] == "dataset_profile"
    ]
    assert profiles == [
        {"name": "voc", "version": "labels", "class_counts": [2, 1]},
        {"name": "voc", "version": "pixels", "class_counts": [10, 20, 10]},
        {"name": "voc", "version": "counts", "class_counts": [3, 4]},
        {"name": "voc", "version": "uniform", "num_classes": 21},
    ]


def test_numpy_values_fractional_steps_and_repeats_are_handled_on_the_way_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    import numpy as np

    settings = offline_settings(tmp_path)
    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        with greenaudit.run(settings=settings, lr=np.float32(0.1), bad=float("nan")) as run:
            value = np.array(0.5)
            run.log(step=np.int64(1), accuracy=value)
            value[...] = 7.0  # changed in place after logging: the logged 0.5 must stand
            run.log(step=1.5, accuracy=0.6)  # not a whole step: refused, nothing else harmed
            run.log(step=2, loss=1.0)
            run.log(step=2, loss=2.0)  # a second, different value at the same step
            run.set(samples_processed=np.int64(1000))
    ops = spooled_ops(run.result.spool_path)
    points = [
        (o["body"]["name"], o["body"]["step"], o["body"]["value"])
        for o in ops
        if o["op"] == "metric"
    ]
    assert points == [("accuracy", 1, 0.5), ("loss", 2, 1.0)]
    assert ops[0]["body"]["meta"] == {"lr": pytest.approx(0.1), "bad": "nan"}
    assert {"op": "update_run", "body": {"samples_processed": 1000}} in ops
    assert ops[-1]["op"] == "finish_run"
    assert "whole number" in caplog.text and "logged twice" in caplog.text


def test_a_spool_that_cannot_be_written_does_not_stop_the_run(
    tmp_path: Path, live_server: LiveServer, caplog: pytest.LogCaptureFixture
):
    # A spool folder under a regular file cannot be created, even by root.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings = offline_settings(
        tmp_path, url=live_server.url, api_key=live_server.write_key, spool_dir=blocker / "spool"
    )
    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        with greenaudit.run(settings=settings) as run:
            run.log(step=1, accuracy=0.5)
    assert run.result is not None and run.result.delivered
    assert "cannot write the spool" in caplog.text
    stored = httpx.get(
        f"{live_server.url}/api/v1/runs/{run.id}/metrics", headers=live_server.keys.read
    ).json()
    assert [(p["step"], p["value"]) for p in stored["items"]] == [(1, 0.5)]


def test_a_refused_key_keeps_the_spool_for_a_later_flush(tmp_path: Path, live_server: LiveServer):
    read_key = live_server.keys.read["Authorization"].split()[1]
    settings = offline_settings(
        tmp_path, url=live_server.url, api_key=read_key, flush_timeout_s=1.0
    )
    with greenaudit.run(settings=settings) as run:
        run.log(step=1, accuracy=0.5)
    assert run.result is not None and not run.result.delivered
    assert Path(run.result.spool_path).exists()
    # Something refused earlier, kept beside the spool, must not trip up flush.
    (settings.spool_path / "0000.rejected").write_text('{"reason": "x", "body": {}}\n')
    write = settings.model_copy(update={"api_key": live_server.write_key})
    assert flush_spool(settings.spool_path, write) == (1, 0)
    stored = httpx.get(f"{live_server.url}/api/v1/runs/{run.id}", headers=live_server.keys.read)
    assert stored.json()["status"] == "finished"


def test_ranks_of_a_distributed_job_measure_only_their_own_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import sys

    from .fake_pynvml import FakeDevice, make_module

    gpus = [FakeDevice(f"GPU-{i}", mj_per_read=3_600_000) for i in range(8)]
    monkeypatch.setitem(sys.modules, "pynvml", make_module(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    with greenaudit.run(settings=offline_settings(tmp_path)) as run:
        busy(0.3)
    ops = spooled_ops(run.result.spool_path)
    energy = [o["body"] for o in ops if o["op"] == "energy"]
    # Its own GPU only (0.001 kWh per read), and no host CPU or RAM: local rank 0 reports those.
    assert {e["gpu_count"] for e in energy} == {1} and {e["rank"] for e in energy} == {3}
    assert all(e.get("cpu_kwh") is None and e.get("ram_kwh") is None for e in energy)
    assert [e["gpu_kwh"] for e in energy] == pytest.approx([0.001] * len(energy))
    assert [g.energy_mj > 0 for g in gpus] == [i == 3 for i in range(8)]


def test_a_full_spool_warns_once_counts_its_losses_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    settings = offline_settings(tmp_path, spool_max_mb=0.002)  # about 2 KB
    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        with greenaudit.run(settings=settings) as run:
            for step in range(200):
                run.log(step=step, loss=1.0 / (step + 1))
    result = run.result
    assert result is not None and result.lost_items > 0
    ops = spooled_ops(result.spool_path)
    kept = sum(op["op"] == "metric" for op in ops)
    assert kept + result.lost_items >= 200 - 1  # every point is either kept or counted
    assert ops[0]["op"] == "create_run" and ops[-1]["op"] == "finish_run"
    assert ops[-1]["body"]["lost_items"] == result.lost_items
    assert Path(result.spool_path).stat().st_size <= 2100 + len(json.dumps(ops[-1])) + 1
    assert caplog.text.count("reached its limit") == 1


def test_a_delivered_spool_is_compacted_while_the_run_goes(tmp_path: Path, live_server: LiveServer):
    from greenaudit.client import sender

    settings = offline_settings(
        tmp_path, url=live_server.url, api_key=live_server.write_key, spool_max_mb=0.012
    )
    from greenaudit.client.measure import warm_up_in_background

    warm_up_in_background(settings).wait(30)  # hardware detection must not hold points back
    original = sender.SEND_INTERVAL_S
    sender.SEND_INTERVAL_S = 0.2
    try:
        with greenaudit.run(settings=settings) as run:
            for step in range(300):  # ~36 KB of points, through a 12 KB spool
                run.log(step=step, loss=1.0 / (step + 1))
                time.sleep(0.01)
    finally:
        sender.SEND_INTERVAL_S = original
    assert run.result is not None and run.result.delivered and run.result.lost_items == 0
    stored = httpx.get(
        f"{live_server.url}/api/v1/runs/{run.id}/metrics",
        params={"limit": 1000},
        headers=live_server.keys.read,
    ).json()
    assert stored["total"] == 300


def test_a_codecarbon_failure_stays_inside_greenaudit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    import codecarbon

    class Broken:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("no RAPL, no TDP, no luck")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Broken)
    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        with greenaudit.run(settings=offline_settings(tmp_path)) as run:
            run.log(step=1, accuracy=0.5)
    assert run.result is not None and run.result.status == "finished"
    assert run.result.cpu_kwh == 0 and "CodeCarbon could not start" in caplog.text


def test_two_ranks_on_one_node_make_one_run_without_double_counting(
    tmp_path: Path, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
):
    import sys

    from .fake_pynvml import FakeDevice, make_module

    gpus = [FakeDevice(f"GPU-{i}", mj_per_read=3_600_000) for i in range(2)]
    monkeypatch.setitem(sys.modules, "pynvml", make_module(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    run_id = str(uuid.uuid4())
    results = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        settings = offline_settings(
            tmp_path / f"rank{rank}", url=live_server.url, api_key=live_server.write_key
        )
        with greenaudit.run(model="ddp", run_id=run_id, settings=settings) as run:
            busy(0.3)
        assert run.result is not None and run.result.delivered
        results.append(run.result)
    stored = httpx.get(
        f"{live_server.url}/api/v1/runs/{run_id}", headers=live_server.keys.read
    ).json()["totals"]
    # Host CPU and RAM once (rank 0), each GPU once (its own rank).
    assert stored["cpu_kwh"] == pytest.approx(results[0].cpu_kwh) and results[1].cpu_kwh == 0
    assert stored["gpu_kwh"] == pytest.approx(results[0].gpu_kwh + results[1].gpu_kwh)
    assert stored["energy_samples"] == results[0].energy_samples + results[1].energy_samples


def test_nvml_that_cannot_start_leaves_the_run_measuring_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import sys

    from .fake_pynvml import make_module

    monkeypatch.setitem(sys.modules, "pynvml", make_module([], init_fails=True))
    with greenaudit.run(settings=offline_settings(tmp_path)) as run:
        busy(0.3)
    assert run.result is not None and run.result.status == "finished"
    assert run.result.gpu_kwh == 0 and "gpu" not in run.result.methods
    assert run.result.cpu_kwh > 0


def test_gpu_utilisation_is_recorded_with_each_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import sys

    from .fake_pynvml import FakeDevice, make_module

    gpu = FakeDevice("GPU-0", mj_per_read=360_000, utilisation_pct=87)
    monkeypatch.setitem(sys.modules, "pynvml", make_module([gpu]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with greenaudit.run(settings=offline_settings(tmp_path)) as run:
        busy(0.3)
    energy = [o["body"] for o in spooled_ops(run.result.spool_path) if o["op"] == "energy"]
    assert energy and {e["gpu_util_pct"] for e in energy} == {87.0}


def test_nvml_failing_mid_run_keeps_what_was_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    import sys

    from .fake_pynvml import FakeDevice, NVMLError, make_module

    gpu = FakeDevice("GPU-0", mj_per_read=3_600_000)
    module = make_module([gpu])
    reads = {"n": 0}
    counter = module.nvmlDeviceGetTotalEnergyConsumption

    def failing_after_three(device: FakeDevice) -> int:
        reads["n"] += 1
        if reads["n"] > 3:
            raise NVMLError("GPU has fallen off the bus")
        return int(counter(device))

    module.nvmlDeviceGetTotalEnergyConsumption = failing_after_three  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    from greenaudit.client.measure import warm_up_in_background

    settings = offline_settings(tmp_path)
    warm_up_in_background(settings).wait(30)  # so the meter samples during the loop
    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        with greenaudit.run(settings=settings) as run:
            busy(1.5)
            run.log(step=1, accuracy=0.5)
    assert run.result is not None and run.result.status == "finished"
    # GPU energy measured before the failure is kept (0.001 kWh per good read); samples
    # after it carry CPU and RAM only.
    energy = [o["body"] for o in spooled_ops(run.result.spool_path) if o["op"] == "energy"]
    gpu_kwh = [e.get("gpu_kwh") for e in energy]
    assert gpu_kwh[0] == pytest.approx(0.001) and gpu_kwh[-1] is None
    assert run.result.gpu_kwh == pytest.approx(sum(k for k in gpu_kwh if k is not None))
    assert run.result.cpu_kwh > 0 and "NVML read failed" in caplog.text


def test_ranks_of_one_job_derive_one_run_and_keep_separate_spools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", f"job-{uuid.uuid4()}")
    runs = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        # A fresh counter per "process": each rank's first run.
        monkeypatch.setattr("greenaudit.client.run._job_runs", __import__("itertools").count())
        with greenaudit.run(settings=offline_settings(tmp_path)) as run:
            run.log(step=1, loss=0.5)
        runs.append(run)
    assert runs[0].id == runs[1].id
    paths = [Path(r.result.spool_path) for r in runs]
    assert [p.name for p in paths] == [f"{runs[0].id}.jsonl", f"{runs[0].id}.rank1.jsonl"]
    ops = [[o["op"] for o in spooled_ops(str(p))] for p in paths]
    assert ops[0][-1] == "finish_run" and "metric" in ops[0]
    assert ops[1][-1] == "end_rank" and "metric" not in ops[1]  # rank 0 logs the curves


def test_flush_leaves_a_live_run_to_its_own_process(tmp_path: Path, live_server: LiveServer):
    settings = offline_settings(tmp_path)
    online = settings.model_copy(update={"url": live_server.url, "api_key": live_server.write_key})
    live = greenaudit.run(settings=settings).start()
    try:
        live.log(step=1, loss=0.5)
        time.sleep(1.0)  # the sender spools it (and holds the spool)
        before = live._spool.path.read_text()
        assert flush_spool(settings.spool_path, online) == (0, 1)
        assert live._spool.path.read_text().startswith(before)
    finally:
        live.finish()
    assert flush_spool(settings.spool_path, online) == (1, 0)
