"""Crash safety with real processes, on SQLite (one worker) and PostgreSQL (two workers).

The service is SIGKILLed while 8 client processes stream large batches, then restarted on the
same port and database. While it is down, the database is consistent, because a batch is one
transaction: every run's running totals equal its stored rows, and each client's rank holds
exactly its first k batches, none of them in part. The clients re-send what was not
acknowledged; a batch that had been stored before the kill comes back whole as duplicates, one
that had not is stored whole, and the final counts are exact.
"""

from __future__ import annotations

import signal
import time
from itertools import accumulate, islice
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from greenaudit.api.models import EnergySample

from .energy_stream import batch_sizes
from .service import served_load, start_service, stop_service
from .test_concurrency import (
    assert_runs_hold_what_was_sent,
    client_report,
    start_clients,
    stored_per_run,
    troubles,
)

pytestmark = pytest.mark.e2e

OWN_RUNS = 4
SHARED_RANKS = 4  # ranks of one more run, so the kill also meets batches racing on one run
BATCHES = 40  # per client
KILL_AT = 0.3  # share of all batches acknowledged when the service is killed


def acknowledged(progress: list[Path]) -> int:
    return sum(path.stat().st_size for path in progress if path.exists())


def rolled_back(database_url: str) -> int | None:
    """PostgreSQL's count of this database's rolled-back transactions (None on SQLite): it
    shows how many transactions the kill cut short."""
    if not database_url.startswith("postgresql"):
        return None
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT xact_rollback FROM pg_stat_database "
                        "WHERE datname = current_database()"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def whole_batches_stored(database_url: str, configs: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the stored rows of each client: a client sends its batches one after
    another, so its rank of its run must hold exactly its first k batches, for some k."""
    statement = select(
        EnergySample.run_id,
        EnergySample.rank,
        func.count(),
        func.min(EnergySample.seq),
        func.max(EnergySample.seq),
    ).group_by(EnergySample.run_id, EnergySample.rank)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = {(str(run), rank): rest for run, rank, *rest in connection.execute(statement)}
    finally:
        engine.dispose()
    wrong = []
    for config in configs:
        count, first, last = stored.get((config["run_id"], config["rank"]), (0, 0, -1))
        ends = set(accumulate(islice(batch_sizes(config), BATCHES), initial=0))
        if first != 0 or last != count - 1 or count not in ends:
            wrong.append(
                f"run {config['run_id']} rank {config['rank']}: {count} rows, seq "
                f"{first}..{last}; whole batches end at {sorted(ends)}"
            )
    return wrong


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_service_killed_mid_batch_keeps_whole_batches_and_exact_counts(
    backend: str, tmp_path: Path
):
    began = time.monotonic()
    with served_load(backend, tmp_path, "crash", OWN_RUNS, SHARED_RANKS) as load:
        progress = [tmp_path / f"progress-{i}" for i in range(len(load.configs))]
        total = len(load.configs) * BATCHES
        start_clients(
            load,
            [{"progress": str(path)} for path in progress],
            batches=BATCHES,
            min_size=100,
            max_size=1000,
            timeout_s=60,
            backoff_cap_s=1.0,
        )

        deadline = time.monotonic() + 120
        while acknowledged(progress) < KILL_AT * total:
            assert all(c.poll() is None for c in load.clients), "a client ended before the kill"
            assert time.monotonic() < deadline, f"{acknowledged(progress)} of {total} acked"
            time.sleep(0.05)
        rollbacks_before = rolled_back(load.database_url)
        stop_service(load.server, signal.SIGKILL)
        acked_at_kill = acknowledged(progress)
        time.sleep(1)
        rollbacks_after = rolled_back(load.database_url)
        down = stored_per_run(load.database_url)
        half_written = {
            run_id: stored
            for run_id, stored in down.items()
            if stored.rows != stored.total_samples
            or stored.rows_kwh != pytest.approx(stored.total_kwh, rel=1e-9)
        }
        assert not half_written, f"totals and rows disagree after the kill: {half_written}"
        assert not whole_batches_stored(load.database_url, load.configs)
        stored_at_kill = sum(stored.rows for stored in down.values())

        load.server = start_service(load.database_url, load.port, load.log, load.workers)
        reports = [client_report(c, 120) for c in load.clients]

        requests = sum(r["requests"] for r in reports)
        samples = sum(r["samples"] for r in reports)
        duplicates = sum(r["duplicates"] for r in reports)
        transport = sum(r["transport_errors"] for r in reports)
        resent = sum(r["resent_after_failure"] for r in reports)
        already = sum(r["resent_already_stored"] for r in reports)
        scale = (
            f"{requests} requests, {samples} samples, {duplicates} duplicates, "
            f"{transport} transport errors, {resent} batches re-sent after a failure "
            f"({already} already stored)"
        )
        assert acked_at_kill < total, f"the kill came after the load ({scale})"
        assert transport > 0, f"no client saw the kill ({scale})"
        assert all(r["batches"] == BATCHES for r in reports), scale
        assert not troubles(reports, "server_errors"), scale
        assert not troubles(reports, "rejected"), scale
        assert not troubles(reports, "locked"), scale
        # Batches after the restart are new or were stored whole before the kill; never half.
        assert not troubles(reports, "anomalies"), scale
        # No batch is re-sent on purpose here: every duplicate is a batch stored before the
        # kill whose answer was lost.
        assert sum(r["inserted"] for r in reports) + duplicates == samples, scale
        assert_runs_hold_what_was_sent(load.url, load.read, load.database_url, reports, scale)
        assert not whole_batches_stored(load.database_url, load.configs), scale

    text = load.log.read_text()
    assert "database is locked" not in text.lower(), text[-5000:]
    cut_short = (
        ""
        if rollbacks_before is None or rollbacks_after is None
        else f" ({rollbacks_after - rollbacks_before} transactions rolled back by the kill)"
    )
    print(
        f"\ncrash {backend} ({load.workers} worker(s)), {len(reports)} client processes x "
        f"{BATCHES} batches of 100-1000: SIGKILL at {acked_at_kill}/{total} batches acknowledged, "
        f"{stored_at_kill} samples stored and consistent while down{cut_short}; {scale}; "
        f"{samples} samples stored once; wall {time.monotonic() - began:.0f} s"
    )
