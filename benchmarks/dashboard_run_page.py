"""The run page of a run with 1,000,000 energy samples, in headless Chromium, on PostgreSQL.

Seeds a fresh database with COPY (not measured), starts `greenaudit serve` as its own process,
and loads /dashboards/runs/{id} in Debian's Chromium through Playwright. "Interactive" is the
moment every plotly figure on the page has been drawn (plotly has laid it out and its SVG is in
the DOM), measured from the start of navigation. Also reported: the server's time to the first
byte of the HTML, from the browser's Navigation Timing.

Usage: .venv/bin/python benchmarks/dashboard_run_page.py [--samples 1000000] [--loads 5]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from common import finish_copied_seed, fresh_database, libpq, serving
from playwright.sync_api import sync_playwright

from greenaudit.api.auth import hash_key, new_key
from greenaudit.api.db import make_engine
from greenaudit.api.migrate import upgrade
from greenaudit.settings import Settings

# The page tests' browser, launched alike.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.browser import launch_chromium  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DRAWN = """() => {
  const plots = Array.from(document.querySelectorAll("div.plot"));
  return plots.length > 0 && plots.every(d => d._fullLayout && d.querySelector(".main-svg"));
}"""


def seed(url: str, samples: int) -> tuple[str, str]:
    project_id, run_id = uuid.uuid4(), uuid.uuid4()
    key, prefix = new_key()
    with psycopg.connect(libpq(url)) as connection:
        connection.execute(
            "INSERT INTO project (id, name, created_at) VALUES (%s, 'b', now())", (project_id,)
        )
        connection.execute(
            "INSERT INTO api_key (id, project_id, prefix, secret_hash, scope, created_at) "
            "VALUES (%s, %s, %s, %s, 'read', now())",
            (uuid.uuid4(), project_id, prefix, hash_key(key)),
        )
        connection.execute(
            "INSERT INTO run (id, project_id, name, kind, status, model, dataset, "
            "primary_metric, world_size, hardware, carbon_intensity_g_per_kwh, "
            "carbon_intensity_source, pue, meta, started_at, created_at) VALUES "
            "(%s, %s, 'long run', 'train', 'finished', 'big', 'data', 'accuracy', 2, '{}', 50, "
            "'bench', 1.2, '{}', %s, now())",
            (run_id, project_id, T0),
        )
        rows = io.StringIO()
        for seq in range(samples):
            rank = seq % 2
            start = (T0 + timedelta(seconds=10 * (seq // 2))).isoformat()
            end = (T0 + timedelta(seconds=10 * (seq // 2) + 10)).isoformat()
            watts = 300.0 + (seq * 7919 % 100)
            rows.write(
                f"{run_id}\t{rank}\t{seq // 2}\t{start}\t{end}\t10\t{watts / 3.6e5:.9g}\t"
                f"{watts:.1f}\trapl\t{watts * 2 / 3.6e5:.9g}\t{watts * 2:.1f}\t"
                f"nvml-counter\t1\t{watts * 3 / 3.6e5 * 0.06:.9g}\n"
            )
        rows.seek(0)
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY energy_sample (run_id, rank, seq, t_start, t_end, duration_s, cpu_kwh, "
                "cpu_w, cpu_method, gpu_kwh, gpu_w, gpu_method, gpu_count, co2_kg) FROM STDIN"
            ) as copy,
        ):
            while chunk := rows.read(1 << 20):
                copy.write(chunk)
        points = io.StringIO()
        for step in range(1000):
            at = (T0 + timedelta(seconds=10 * samples // 2 * step // 1000)).isoformat()
            points.write(f"{run_id}\taccuracy\t{step}\t{0.9 - 0.4 * 0.99**step:.6f}\t{at}\n")
        points.seek(0)
        with (
            connection.cursor() as cursor,
            cursor.copy("COPY metric_point (run_id, name, step, value, time) FROM STDIN") as copy,
        ):
            copy.write(points.read())
        finish_copied_seed(connection)
    return key, str(run_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--port", type=int, default=8793)
    args = parser.parse_args()

    with fresh_database() as url:
        engine = make_engine(Settings(database_url=url))
        upgrade(engine)
        engine.dispose()
        started = time.perf_counter()
        key, run_id = seed(url, args.samples)
        print(
            f"seeded a run of {args.samples} energy samples in "
            f"{time.perf_counter() - started:.0f} s"
        )
        interactive, first_byte = [], []
        with serving(args.port, url) as base, sync_playwright() as driver:
            page_url = f"{base}/dashboards/runs/{run_id}"
            browser = launch_chromium(driver)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies(
                [{"name": "greenaudit_key", "value": key, "url": base + "/dashboards/"}]
            )
            page = context.new_page()
            page.goto(page_url)  # warm-up: plotly.js into the cache, the server's plans warm
            page.wait_for_function(DRAWN)
            for _ in range(args.loads):
                t0 = time.perf_counter()
                page.goto(page_url)
                page.wait_for_function(DRAWN, polling=10)
                interactive.append(time.perf_counter() - t0)
                first_byte.append(
                    page.evaluate(
                        "performance.getEntriesByType('navigation')[0].responseStart"
                        " - performance.getEntriesByType('navigation')[0].requestStart"
                    )
                    / 1000
                )
            shown = page.inner_text("#point-count")
            browser.close()
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; PostgreSQL, server and Chromium on the same machine"
        )
        print(f"page says: {shown}")
        print("| measure | median s | min s | max s |")
        print("| --- | --- | --- | --- |")
        for label, values in (
            ("interactive (all figures drawn)", interactive),
            ("server time to first byte", first_byte),
        ):
            print(
                f"| {label} | {statistics.median(values):.3f} | {min(values):.3f} | "
                f"{max(values):.3f} |"
            )


if __name__ == "__main__":
    main()
