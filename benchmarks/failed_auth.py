"""Failed authentication against `greenaudit serve`: how many wrong admin tokens are answered.

Starts `greenaudit serve` on a fresh SQLite file, sends ``--attempts`` wrong admin tokens from
this process (one address) over HTTP, then the right one, and prints the statuses, the time they
took and the wait the service asked for. Issue 16, finding 13: before the throttle, 4,000 wrong
tokens took 3.5 s and none was refused.

Usage: .venv/bin/python benchmarks/failed_auth.py [--attempts 4000] [--workers 1]
"""

from __future__ import annotations

import argparse
import collections
import secrets
import socket
import tempfile
import time

import httpx
from common import serving


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attempts", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as home:
        env = {"GREENAUDIT_HOME": home, "GREENAUDIT_ADMIN_TOKEN": token}
        with serving(free_port(), env=env, workers=args.workers) as base, httpx.Client() as http:
            wrong = {"Authorization": "Bearer " + secrets.token_urlsafe(32)}
            statuses: collections.Counter[int] = collections.Counter()
            retry_after = set()
            started = time.perf_counter()
            for _ in range(args.attempts):
                answer = http.post(f"{base}/api/v1/projects", json={"name": "x"}, headers=wrong)
                statuses[answer.status_code] += 1
                if "retry-after" in answer.headers:
                    retry_after.add(int(answer.headers["retry-after"]))
            elapsed_s = time.perf_counter() - started
            right = http.post(
                f"{base}/api/v1/projects",
                json={"name": "mine"},
                headers={"Authorization": f"Bearer {token}"},
            )
    print(
        f"{args.attempts} wrong admin tokens, {args.workers} worker(s): "
        f"{dict(sorted(statuses.items()))} in {elapsed_s:.2f} s; "
        f"Retry-After {min(retry_after, default=None)}..{max(retry_after, default=None)} s; "
        f"then the right token from the same address: {right.status_code}"
    )


if __name__ == "__main__":
    main()
