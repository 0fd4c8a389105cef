"""Load generator for `ingest_throughput.py`, run as its own process.

Each sender thread owns one run (or, with ``--kind emissions``, one CodeCarbon run) and posts
batches back to back over one keep-alive connection for ``--duration`` seconds. A share of the
batches is sent twice, as a client re-sends what it did not see acknowledged. It prints one
JSON object: what was sent, what the service acknowledged, and every request's latency.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from functools import cache

import httpx

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


SAMPLE = (
    '{{"rank":0,"seq":{seq},"t_start":"{start}","t_end":"{end}","cpu_kwh":1.25e-05,'
    '"cpu_w":45.0,"cpu_method":"rapl","gpu_kwh":8.1e-05,"gpu_w":291.6,'
    '"gpu_method":"nvml-counter","gpu_count":1,"gpu_util_pct":97.0,"ram_kwh":8e-07,'
    '"ram_w":2.88,"ram_method":"codecarbon","step":{step}}}'
)


def iso(seconds: int) -> str:
    """T0 plus ``seconds``, as the client writes it (cheaper than datetime for a load loop)."""
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    return f"2026-12-{1 + days:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


@cache
def energy_body(start_seq: int, size: int) -> bytes:
    """A batch of ``size`` one-second samples from ``start_seq``, shaped like a GPU node's.

    Every sender posts into its own run, so they share these bodies: building and encoding
    1000 samples per batch in each sender made the load generator, not the service, the
    bottleneck on two cores.
    """
    if start_seq + size > 30 * 86400:
        raise ValueError("the sample clock would leave December 2026")
    samples = ",".join(
        SAMPLE.format(seq=seq, start=iso(seq), end=iso(seq + 1), step=seq * 10)
        for seq in range(start_seq, start_seq + size)
    )
    return f'{{"samples":[{samples}]}}'.encode()


def emission_body(run_id: str, index: int) -> bytes:
    """One CodeCarbon ``EmissionCreate``, as its client posts every interval."""
    return json.dumps(
        {
            "timestamp": (T0 + timedelta(seconds=15 * index)).isoformat(),
            "run_id": run_id,
            "duration": 15,
            "emissions_sum": 2.1e-5,
            "emissions_rate": 1.4e-6,
            "cpu_power": 42.5,
            "gpu_power": 0.0,
            "ram_power": 6.0,
            "cpu_energy": 1.77e-4,
            "gpu_energy": 0.0,
            "ram_energy": 2.5e-5,
            "energy_consumed": 2.02e-4,
        }
    ).encode()


class Sender(threading.Thread):
    def __init__(self, args: argparse.Namespace, start_at: float, stop_at: float) -> None:
        super().__init__(daemon=True)
        self.args = args
        self.start_at = start_at
        self.stop_at = stop_at
        self.random = random.Random()
        self.latencies_ms: list[float] = []
        self.unique_rows = 0
        self.sent_rows = 0
        self.inserted = 0
        self.duplicates = 0
        self.errors: dict[str, int] = {}
        self.run_id = ""

    def _post(self, client: httpx.Client, path: str, body: bytes) -> dict[str, object] | None:
        began = time.perf_counter()
        try:
            response = client.post(path, content=body)
        except httpx.HTTPError as error:
            self.errors[type(error).__name__] = self.errors.get(type(error).__name__, 0) + 1
            return None
        self.latencies_ms.append((time.perf_counter() - began) * 1000)
        if response.status_code >= 300:
            key = f"HTTP {response.status_code}"
            self.errors[key] = self.errors.get(key, 0) + 1
            return None
        answer: dict[str, object] = response.json()
        return answer

    def run(self) -> None:
        args = self.args
        headers = {"content-type": "application/json"}
        if args.kind == "emissions":
            headers["x-api-token"] = args.key
        else:
            headers["authorization"] = f"Bearer {args.key}"
        with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
            self.run_id = self._create_run(client)
            while time.perf_counter() < self.start_at:
                time.sleep(0.001)
            seq = 0
            while time.perf_counter() < self.stop_at:
                if args.kind == "emissions":
                    body = emission_body(self.run_id, seq)
                    path = "/codecarbon/emissions"
                else:
                    body = energy_body(seq, args.batch_size)
                    path = f"/api/v1/runs/{self.run_id}/energy"
                copies = 2 if self.random.random() < args.duplicate_share else 1
                for _ in range(copies):
                    answer = self._post(client, path, body)
                    self.sent_rows += args.batch_size
                    if answer is not None and args.kind != "emissions":
                        self.inserted += int(answer["inserted"])  # type: ignore[call-overload]
                        self.duplicates += int(answer["duplicates"])  # type: ignore[call-overload]
                    elif answer is not None:
                        self.inserted += 1
                self.unique_rows += args.batch_size
                seq += args.batch_size

    def _create_run(self, client: httpx.Client) -> str:
        if self.args.kind == "emissions":
            response = client.post(
                "/codecarbon/runs",
                json={"timestamp": T0.isoformat(), "experiment_id": str(uuid.uuid4())},
            )
            response.raise_for_status()
            return str(response.json()["id"])
        run_id = str(uuid.uuid4())
        response = client.post(
            "/api/v1/runs",
            json={
                "id": run_id,
                "name": f"load-{self.args.batch_size}",
                "model": "bench",
                "started_at": T0.isoformat(),
                "carbon_intensity_g_per_kwh": 400.0,
                "carbon_intensity_source": "benchmark",
            },
        )
        response.raise_for_status()
        return run_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--kind", choices=["energy", "emissions"], default="energy")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--duplicate-share", type=float, default=0.1)
    args = parser.parse_args()
    if args.kind == "emissions":
        # CodeCarbon's client posts each interval once and has no idempotency key to re-send.
        args.batch_size = 1
        args.duplicate_share = 0.0

    start_at = time.perf_counter() + 1.0  # time for every sender to create its run
    stop_at = start_at + args.duration
    senders = [Sender(args, start_at, stop_at) for _ in range(args.senders)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    elapsed = time.perf_counter() - start_at
    errors: dict[str, int] = {}
    for sender in senders:
        for key, count in sender.errors.items():
            errors[key] = errors.get(key, 0) + count
    print(
        json.dumps(
            {
                "elapsed_s": elapsed,
                "runs": {s.run_id: s.unique_rows for s in senders},
                "unique_rows": sum(s.unique_rows for s in senders),
                "sent_rows": sum(s.sent_rows for s in senders),
                "inserted": sum(s.inserted for s in senders),
                "duplicates": sum(s.duplicates for s in senders),
                "errors": errors,
                "latencies_ms": [x for s in senders for x in s.latencies_ms],
            }
        )
    )


if __name__ == "__main__":
    main()
