"""A run ends with its result however soon it ends and however late its threads start.

On a busy machine a thread can wait seconds before it runs. Here that is done on purpose:
``Thread.start`` of the named greenaudit threads is delayed, either by sleeping in the caller
before the thread starts, or by starting it later from a timer (so ``start`` returns at once
and the thread has not begun when the run ends).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import greenaudit
from greenaudit.client.measure import warm_up_in_background
from greenaudit.client.threads import OnceWorker

from .test_track import busy, offline_settings

# Longer than the run's whole flush_timeout_s, so that the run ends before these threads run.
DELAY_S = 4.0
METER, SENDER, PREPARE = "greenaudit-meter", "greenaudit-sender", "greenaudit-prepare"


def delay_start(monkeypatch: pytest.MonkeyPatch, names: set[str], how: str) -> list[str]:
    original: Callable[[threading.Thread], None] = threading.Thread.start
    delayed: list[str] = []

    def late_start(thread: threading.Thread) -> None:
        if thread.name not in names:
            original(thread)
            return
        delayed.append(thread.name)
        if how == "sleep":  # the caller is slow to get to it
            time.sleep(DELAY_S)
            original(thread)
        else:  # start returns at once; the thread begins later
            timer = threading.Timer(DELAY_S, original, args=(thread,))
            timer.daemon = True
            original(timer)

    monkeypatch.setattr(threading.Thread, "start", late_start)
    return delayed


@pytest.mark.parametrize(
    ("late", "how", "measures"),
    [
        ({METER}, "sleep", False),
        ({METER}, "timer", False),
        ({SENDER}, "timer", True),
        ({METER, SENDER, PREPARE}, "timer", False),
    ],
    ids=["meter-sleeps", "meter-later", "sender-later", "all-later"],
)
def test_a_short_run_ends_finished_with_everything_kept_however_late_its_threads_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, late: set[str], how: str, measures: bool
):
    # Its once-per-process notices must not be used up for the tests that check them.
    monkeypatch.setattr("greenaudit.client.run._warned", set())
    settings = offline_settings(tmp_path, flush_timeout_s=2.0)
    warm_up_in_background(settings).wait(30)  # so an on-time meter measures at once
    delayed = delay_start(monkeypatch, late, how)

    with greenaudit.run(model="short", settings=settings) as run:
        busy(0.6)
        run.log(epoch=0, accuracy=0.5)
        run.log(epoch=1, accuracy=0.75)

    # A late prepare thread is the one that would start the meter: it never gets to.
    assert set(delayed) == (late - {METER} if PREPARE in late else late)
    result = run.result
    assert result is not None and result.status == "finished"
    ops: list[dict[str, Any]] = [
        json.loads(line) for line in Path(str(result.spool_path)).read_text().splitlines()
    ]
    kinds = [op["op"] for op in ops]
    assert kinds[0] == "create_run" and kinds[-1] == "finish_run"
    metrics = [op["body"] for op in ops if op["op"] == "metric"]
    assert [(m["step"], m["value"]) for m in metrics] == [(0, 0.5), (1, 0.75)]
    energy = [op["body"] for op in ops if op["op"] == "energy"]
    # Every sample the result counts is in the spool, once, and nothing else is.
    assert len(energy) == result.energy_samples
    assert [e["seq"] for e in energy] == list(range(len(energy)))
    assert sum(e["cpu_kwh"] for e in energy) == pytest.approx(result.cpu_kwh, rel=1e-12)
    if measures:
        assert result.energy_samples >= 1 and result.cpu_kwh > 0
    else:  # the meter never began: nothing measured, and the result says so
        assert result.energy_samples == 0 and result.energy_kwh == 0 and result.measured_s == 0


def test_work_claimed_before_its_thread_begins_never_runs_there():
    ran: list[str] = []
    worker = OnceWorker(lambda: ran.append(threading.current_thread().name), name="late")
    assert worker.claim() is True and worker.claim() is False
    assert worker.start() is True and worker.wait(0) is True
    time.sleep(0.1)
    assert ran == []

    ran_on_thread = OnceWorker(lambda: ran.append(threading.current_thread().name), name="ok")
    assert ran_on_thread.start() is True and ran_on_thread.wait(5.0) is True
    assert ran == ["ok"] and ran_on_thread.claim() is False
