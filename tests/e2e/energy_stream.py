"""One load-test client process: streams batches of energy samples into one run, as a rank.

Run by tests/e2e/test_concurrency.py and tests/e2e/test_crash.py as
``python energy_stream.py CONFIG_JSON``; prints one JSON report as its last line.

Standard library only, so that dozens of these start in milliseconds on a small machine. It
behaves like greenaudit's own sender: a batch that got no answer, a 5xx or a 408/425/429 was
not acknowledged and is sent again, unchanged, after a backoff; (rank, seq) keys make that
safe. Every outcome is counted so that the test can compare it with what the service stored.

Config keys: ``url``, ``key``, ``run_id``, ``rank``, ``seed``, ``min_size``, ``max_size``;
``until`` (a ``time.time()`` to stop at) or ``batches`` (how many to send); optional
``resend_rate`` (share of acknowledged batches sent again on purpose), ``progress`` (a file
that gets one byte per acknowledged batch), ``timeout_s``, ``backoff_cap_s``, ``give_up_s``
(how long after ``until`` an unacknowledged batch is given up).
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
INTERVAL = timedelta(seconds=10)
RETRYABLE = {408, 425, 429}
KEPT_TEXTS = 5  # examples of each kind of trouble kept for the report


def make_sample(rng: random.Random, rank: int, seq: int) -> dict[str, Any]:
    """A 10-second interval with random energy; one in ten has no GPU measured."""
    start = T0 + seq * INTERVAL
    cpu = rng.uniform(1e-6, 2e-3)
    ram = rng.uniform(1e-7, 5e-4)
    gpu = None if rng.random() < 0.1 else rng.uniform(1e-5, 8e-3)
    return {
        "rank": rank,
        "seq": seq,
        "t_start": start.isoformat(),
        "t_end": (start + INTERVAL).isoformat(),
        "cpu_kwh": cpu,
        "cpu_w": cpu * 3.6e6 / 10,
        "cpu_method": "rapl",
        "gpu_kwh": gpu,
        "gpu_w": None if gpu is None else gpu * 3.6e6 / 10,
        "gpu_method": None if gpu is None else "nvml-counter",
        "gpu_count": 0 if gpu is None else 1,
        "ram_kwh": ram,
        "ram_w": ram * 3.6e6 / 10,
        "ram_method": "codecarbon",
        "step": seq,
    }


def batch_sizes(config: dict[str, Any]) -> Iterator[int]:
    """The sizes of the batches a client with ``config`` sends, in order."""
    rng = random.Random(f"sizes-{config['seed']}")
    while True:
        yield rng.randint(config["min_size"], config["max_size"])


class Stream:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        address = urlsplit(config["url"])
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 80
        self.path = f"/api/v1/runs/{config['run_id']}/energy"
        self.headers = {
            "Authorization": f"Bearer {config['key']}",
            "Content-Type": "application/json",
        }
        self.timeout_s = float(config.get("timeout_s", 60))
        self.backoff_cap_s = float(config.get("backoff_cap_s", 1.0))
        # Batch sizes have a random stream of their own, so that the test can replay them.
        self.sizes = batch_sizes(config)
        self.rng = random.Random(f"values-{config['seed']}")
        self.choices = random.Random(f"choices-{config['seed']}")
        self.connection: http.client.HTTPConnection | None = None
        self.report: dict[str, Any] = {
            "run_id": config["run_id"],
            "rank": config["rank"],
            "requests": 0,  # HTTP attempts, answered or not
            "statuses": {},
            "transport_errors": 0,
            "batches": 0,  # distinct batches acknowledged
            "samples": 0,  # distinct samples acknowledged: what the run must hold from us
            "cpu_kwh": 0.0,
            "gpu_kwh": 0.0,
            "ram_kwh": 0.0,
            "inserted": 0,  # as the service reported, over every acknowledged answer
            "duplicates": 0,
            "resent_on_purpose": 0,
            "resent_on_purpose_samples": 0,
            "resent_after_failure": 0,  # batches acknowledged only after a failed attempt
            "resent_already_stored": 0,  # ... of which the failed attempt had stored them all
            "locked": [],  # response texts mentioning "database is locked"
            "server_errors": [],  # 5xx answers: status and text
            "transport_examples": [],
            "rejected": [],  # other 4xx answers: nothing stored
            "abandoned": 0,  # batches still unacknowledged long after the end: stored or not
            "anomalies": [],  # answers that contradict what was sent before
        }

    def keep(self, kind: str, entry: Any) -> None:
        if len(self.report[kind]) < KEPT_TEXTS:
            self.report[kind].append(entry)

    def post(self, body: bytes) -> tuple[int, str]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout_s
            )
        self.connection.request("POST", self.path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")

    def deliver(self, samples: list[dict[str, Any]]) -> tuple[int, int, int] | None:
        """Send one batch until it is acknowledged; returns (attempts, inserted, duplicates).

        Returns None when the service rejected the batch with a 4xx (nothing was stored), or
        when it was still not acknowledged ``give_up_s`` after ``until`` (counted as abandoned).
        """
        body = json.dumps({"samples": samples}).encode()
        report = self.report
        until = self.config.get("until")
        give_up_at = None if until is None else until + float(self.config.get("give_up_s", 30))
        failures = 0
        while True:
            if failures and give_up_at is not None and time.time() > give_up_at:
                report["abandoned"] += 1
                return None
            report["requests"] += 1
            try:
                status, text = self.post(body)
            except (OSError, http.client.HTTPException) as error:
                report["transport_errors"] += 1
                self.keep("transport_examples", f"{type(error).__name__}: {error}")
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                status, text = 0, ""
            else:
                report["statuses"][str(status)] = report["statuses"].get(str(status), 0) + 1
                if "database is locked" in text:
                    self.keep("locked", f"{status}: {text[:500]}")
            if status == 200:
                answer = json.loads(text)
                return failures + 1, answer["inserted"], answer["duplicates"]
            if status >= 500:
                self.keep("server_errors", f"{status}: {text[:500]}")
            elif status and status not in RETRYABLE:
                self.keep("rejected", f"{status}: {text[:500]}")
                return None
            failures += 1
            delay = min(self.backoff_cap_s, 0.05 * 2**failures)
            time.sleep(delay * self.choices.uniform(0.5, 1.5))

    def run(self) -> dict[str, Any]:
        config, report = self.config, self.report
        rank, seq = config["rank"], 0
        until = config.get("until")
        batches = config.get("batches")
        progress = open(config["progress"], "ab", buffering=0) if config.get("progress") else None
        sent = 0
        while (until is None or time.time() < until) and (batches is None or sent < batches):
            size = next(self.sizes)
            samples = [self.make(rank, seq + i) for i in range(size)]
            seq += size
            sent += 1
            acknowledged = self.deliver(samples)
            if acknowledged is None:
                continue
            attempts, inserted, duplicates = acknowledged
            report["batches"] += 1
            report["samples"] += size
            for component in ("cpu", "gpu", "ram"):
                report[f"{component}_kwh"] += sum(s[f"{component}_kwh"] or 0.0 for s in samples)
            report["inserted"] += inserted
            report["duplicates"] += duplicates
            if inserted + duplicates != size:
                self.keep("anomalies", f"batch of {size}: {inserted=} {duplicates=}")
            if attempts == 1 and duplicates:
                self.keep("anomalies", f"new batch of {size} at first try: {duplicates=}")
            if attempts > 1:
                report["resent_after_failure"] += 1
                if duplicates == size:
                    report["resent_already_stored"] += 1
                elif inserted != size:
                    # A batch is one transaction: a failed attempt stored all of it or none.
                    self.keep("anomalies", f"re-sent batch of {size}: {inserted=} {duplicates=}")
            if progress is not None:
                progress.write(b".")
            if self.choices.random() < config.get("resend_rate", 0.0):
                report["resent_on_purpose"] += 1
                report["resent_on_purpose_samples"] += size
                again = self.deliver(samples)
                if again is not None:
                    _, inserted, duplicates = again
                    report["inserted"] += inserted
                    report["duplicates"] += duplicates
                    if (inserted, duplicates) != (0, size):
                        self.keep("anomalies", f"re-sent on purpose {size}: {inserted=}")
        if progress is not None:
            progress.close()
        return report

    def make(self, rank: int, seq: int) -> dict[str, Any]:
        return make_sample(self.rng, rank, seq)


if __name__ == "__main__":
    print(json.dumps(Stream(json.loads(sys.argv[1])).run()), flush=True)
