"""A training loop that runs for a while, instrumented by ``greenaudit.run``, for fault tests.

Prints ``started <run_id> <spool path>`` as soon as it runs, then, at the end, one JSON line
with what it logged and measured.
"""

from __future__ import annotations

import json
import sys
import time

import greenaudit

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0

if __name__ == "__main__":
    with greenaudit.run(model="long", dataset="synthetic") as run:
        settings = run._settings  # noqa: SLF001 - the test needs to know where the spool is
        spool = settings.spool_path / f"{run.id}.jsonl" if settings else None
        print(f"started {run.id} {spool}", flush=True)
        end, step, total = time.monotonic() + SECONDS, 0, 0.0
        while time.monotonic() < end:
            for i in range(20_000):
                total += i * 1e-9
            step += 1
            run.log(step=step, loss=1.0 / step)
            time.sleep(0.02)
    result = run.result
    print(
        json.dumps(
            {
                "run_id": run.id,
                "steps": step,
                "delivered": result.delivered,
                "energy_samples": result.energy_samples,
            }
        ),
        flush=True,
    )
