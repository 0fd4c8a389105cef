"""GPU energy from NVML, with ``pynvml`` replaced wholesale (no GPU on these machines)."""

from __future__ import annotations

import sys

import pytest

from greenaudit.client.nvml import NvmlGpuMeter, visible_device_selectors
from greenaudit.schemas import MeasurementMethod

from .fake_pynvml import FakeDevice, make_module

MJ_PER_KWH = 3.6e9


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def devices(monkeypatch: pytest.MonkeyPatch) -> list[FakeDevice]:
    found = [
        FakeDevice("GPU-aaaa", energy_mj=1_000_000),
        FakeDevice("GPU-bbbb"),
        FakeDevice("GPU-cccc"),
    ]
    monkeypatch.setitem(sys.modules, "pynvml", make_module(found))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return found


def test_counter_energy_of_all_devices(devices: list[FakeDevice]):
    devices[0].utilisation_pct, devices[1].utilisation_pct = 90, 30
    clock = Clock()
    meter = NvmlGpuMeter(clock)
    assert meter.start() and meter.device_count == 3 and meter.model == "NVIDIA H200"
    devices[0].energy_mj += 3_600_000  # 0.001 kWh
    devices[1].energy_mj += 7_200_000  # 0.002 kWh
    clock.now += 10.0
    reading = meter.read()
    assert reading is not None
    assert reading.kwh == pytest.approx(0.003, rel=1e-12)
    # 0.003 kWh = 10,800 J over 10 s = 1080 W for the three devices
    assert reading.mean_w == pytest.approx(1080.0, rel=1e-12)
    assert (reading.method, reading.device_count) == (MeasurementMethod.nvml_counter, 3)
    assert reading.util_pct == pytest.approx(40.0)  # (90 + 30 + 0) / 3
    meter.close()


@pytest.mark.parametrize(
    ("visible", "expected_kwh", "count"),
    [
        ("1", 0.002, 1),
        ("GPU-cccc,0", 0.004 + 0.001, 2),
        ("2,bogus,1", 0.004, 1),
        ("7", None, 0),
        ("", None, 0),
        ("-1", None, 0),
    ],
)
def test_cuda_visible_devices_is_honoured(
    devices: list[FakeDevice],
    monkeypatch: pytest.MonkeyPatch,
    visible: str,
    expected_kwh: float | None,
    count: int,
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    meter = NvmlGpuMeter(Clock())
    assert meter.start() is (count > 0)
    for device, mj in zip(devices, (3_600_000, 7_200_000, 14_400_000), strict=True):
        device.energy_mj += mj
    reading = meter.read()
    if expected_kwh is None:
        assert reading is None
    else:
        assert reading is not None
        assert (reading.kwh, reading.device_count) == (pytest.approx(expected_kwh), count)


def test_selectors_stop_at_the_first_invalid_entry():
    assert visible_device_selectors({}) is None
    assert visible_device_selectors({"CUDA_VISIBLE_DEVICES": "0,1"}) == ["0", "1"]
    assert visible_device_selectors({"CUDA_VISIBLE_DEVICES": "0,-1,1"}) == ["0"]


def test_power_is_integrated_where_the_counter_is_missing(monkeypatch: pytest.MonkeyPatch):
    old_gpu = FakeDevice("GPU-old", has_counter=False, power_mw=100_000)
    monkeypatch.setitem(sys.modules, "pynvml", make_module([old_gpu]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    clock = Clock()
    meter = NvmlGpuMeter(clock)
    assert meter.start()
    old_gpu.power_mw = 300_000
    clock.now += 36.0
    reading = meter.read()
    assert reading is not None
    # Trapezoid: (100 W + 300 W) / 2 x 36 s = 7200 J = 0.002 kWh
    assert reading.kwh == pytest.approx(0.002, rel=1e-12)
    assert reading.method is MeasurementMethod.nvml_power


def test_no_driver_means_no_gpu_and_no_exception(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pynvml", make_module([], init_fails=True))
    meter = NvmlGpuMeter(Clock())
    assert meter.start() is False
    assert meter.read() is None


def test_a_failing_read_stops_gpu_measurement_quietly(devices: list[FakeDevice]):
    meter = NvmlGpuMeter(Clock())
    meter.start()
    devices[1].has_counter = False  # the device disappears mid-run

    def broken(_device: FakeDevice) -> float:
        raise sys.modules["pynvml"].NVMLError("GPU is lost")

    sys.modules["pynvml"].nvmlDeviceGetPowerUsage = broken  # type: ignore[attr-defined]
    assert meter.read() is None
    assert sys.modules["pynvml"].state["initialised"] == 0  # type: ignore[attr-defined]


def test_mig_instances_are_selected_by_uuid(monkeypatch: pytest.MonkeyPatch):
    mig = FakeDevice("MIG-4b2c-0001", name="NVIDIA H200 MIG 1g.18gb")
    monkeypatch.setitem(sys.modules, "pynvml", make_module([FakeDevice("GPU-aaaa"), mig]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-4b2c-0001")
    meter = NvmlGpuMeter(Clock())
    assert meter.start() and meter.device_count == 1 and meter.model == "NVIDIA H200 MIG 1g.18gb"
    mig.energy_mj += 3_600_000
    reading = meter.read()
    assert reading is not None and reading.kwh == pytest.approx(0.001)


def test_placement_from_torchrun_and_from_slurm():
    from greenaudit.client.environment import placement

    torchrun = placement({"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8"})
    assert (torchrun.rank, torchrun.local_rank, torchrun.world_size) == (5, 1, 8)
    slurm = placement(
        {
            "SLURM_PROCID": "3",
            "SLURM_LOCALID": "3",
            "SLURM_NTASKS": "4",
            "SLURMD_NODENAME": "gpu-node-07",
        }
    )
    assert (slurm.rank, slurm.local_rank, slurm.world_size, slurm.node) == (3, 3, 4, "gpu-node-07")
    alone = placement({})
    assert (alone.rank, alone.local_rank, alone.world_size) == (0, 0, 1)


def test_codecarbons_cpu_modes_map_to_greenaudit_methods():
    import types

    from greenaudit.client.measure import _codecarbon_cpu_method

    def tracker(mode: str) -> object:
        cpu = type("CPU", (), {"_mode": mode})()
        return types.SimpleNamespace(_hardware=[cpu])

    assert _codecarbon_cpu_method(tracker("intel_rapl")) is MeasurementMethod.rapl
    assert _codecarbon_cpu_method(tracker("constant")) is MeasurementMethod.tdp_estimate
    assert _codecarbon_cpu_method(tracker("cpu_load")) is MeasurementMethod.codecarbon
