"""Sending spooled operations to the service, in batches, retried with backoff.

Every operation the service offers is idempotent (client run ids, unique sample and metric
keys), so a batch whose answer was lost is simply sent again.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from greenaudit.errors import GreenauditError, ServiceError, ServiceNotConfigured
from greenaudit.http import WRITE_KEY_HINT, ServiceHttp
from greenaudit.settings import Settings

from .spool import RunSpool, SpooledOp, spooled_runs

logger = logging.getLogger("greenaudit")

BATCH_ITEMS = 1000
# Order in which a run's pending operations are sent: the run must exist before anything
# refers to it, and it is finished only after all its data is in.
PHASE = {
    "create_run": 0,
    "update_run": 1,
    "dataset_profile": 1,
    "energy": 2,
    "metric": 2,
    "finish_run": 3,
    "end_rank": 3,
}
RETRYABLE_STATUS = {408, 425, 429}
#: The last operation of a spool: the run's finish (rank 0), or the end of another rank's part
#: (spooled so the spool is known to be complete, never sent).
END_OPS = ("finish_run", "end_rank")


class TransientError(GreenauditError):
    """The service could not be reached or failed; try again later."""


class RejectedError(GreenauditError):
    """The service refused the operation as invalid; sending it again will not help."""


def classify(error: ServiceError) -> TransientError | RejectedError:
    """The transport's policy for a failed request: retry it later, or set it aside.

    No answer, a server error or a "slow down" (408, 425, 429) is worth retrying. So is a
    refused key (401, 403): nothing is wrong with the data, so it is kept for a retry with the
    right key rather than set aside. Any other refusal is the data's fault.
    """
    status = error.status_code
    if status is None or status >= 500 or status in RETRYABLE_STATUS or status in (401, 403):
        return TransientError(str(error))
    return RejectedError(str(error))


def backoff_s(failures: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Exponential backoff with jitter: about base·2^failures, capped, spread ±50%."""
    delay_s: float = min(cap_s, base_s * 2 ** max(failures - 1, 0))
    return delay_s * random.uniform(0.5, 1.5)


class ServiceClient:
    """Sends one run's operations to the greenaudit service."""

    def __init__(self, url: str, api_key: str, timeout_s: float = 10.0) -> None:
        self._http = ServiceHttp(url, api_key, timeout_s=timeout_s, key_hint=WRITE_KEY_HINT)

    def close(self) -> None:
        self._http.close()

    def send(self, run_id: str, ops: Iterable[SpooledOp]) -> list[tuple[str, dict[str, Any]]]:
        """Send operations in dependency order, batching samples and metric points.

        Returns the requests the service rejected as invalid, with the reason; the others
        still go. Raises :class:`TransientError` when the service cannot be reached.
        """
        ordered = sorted(ops, key=lambda o: PHASE[o.op])
        energy = [o.body for o in ordered if o.op == "energy"]
        metrics = [o.body for o in ordered if o.op == "metric"]
        requests: list[tuple[str, str, dict[str, Any]]] = []
        for op in ordered:
            if op.op == "create_run":
                requests.append(("POST", "/runs", op.body))
            elif op.op == "update_run":
                requests.append(("PATCH", f"/runs/{run_id}", op.body))
            elif op.op == "dataset_profile":
                requests.append(("POST", "/datasets/profiles", op.body))
            elif op.op == "finish_run":
                requests += self._batches(run_id, energy, metrics)
                energy, metrics = [], []
                requests.append(("POST", f"/runs/{run_id}/finish", op.body))
        requests += self._batches(run_id, energy, metrics)
        rejected = []
        for index, (method, path, body) in enumerate(requests):
            try:
                self._request(method, path, body)
            except RejectedError as error:
                if path == "/runs":
                    # Without its run, nothing else of it can be stored: keep it all together.
                    return [(str(error), b) for _, _, b in requests[index:]]
                rejected.append((str(error), body))
        return rejected

    @staticmethod
    def _batches(
        run_id: str, energy: list[dict[str, Any]], metrics: list[dict[str, Any]]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            ("POST", f"/runs/{run_id}/energy", {"samples": energy[i : i + BATCH_ITEMS]})
            for i in range(0, len(energy), BATCH_ITEMS)
        ] + [
            ("POST", f"/runs/{run_id}/metrics", {"points": metrics[i : i + BATCH_ITEMS]})
            for i in range(0, len(metrics), BATCH_ITEMS)
        ]

    def heartbeat(self, run_id: str) -> None:
        """Say the run is alive (not spooled: a late heartbeat means nothing)."""
        self._http.post(f"/runs/{run_id}/heartbeat")

    def forecast(self, run_id: str) -> dict[str, Any]:
        """The run's forecast, plateau and budgets, as the service answers them now.

        Raises :class:`~greenaudit.errors.ServiceError` when it cannot be had.
        """
        answer: dict[str, Any] = self._http.get(f"/runs/{run_id}/forecast")
        return answer

    def _request(self, method: str, path: str, body: dict[str, Any]) -> None:
        try:
            self._http.request(method, path, json=body)
        except ServiceError as error:
            raise classify(error) from error


def deliver(spool: RunSpool, client: ServiceClient) -> tuple[bool, int]:
    """Send what ``spool`` holds beyond its acknowledged count.

    Returns whether the run is complete (its finish was sent) and how many requests the
    service rejected. Rejected requests are copied, with the reason, to
    ``<run_id>.rejected`` and not sent again. Raises :class:`TransientError` when the
    service is unreachable.
    """
    ops = spool.read()
    pending = ops[spool.acked() :]
    rejected = client.send(spool.run_id, pending) if pending else []
    if rejected:
        path = spool.rejected_path
        try:
            with open(path, "a", encoding="utf-8") as handle:
                for reason, body in rejected:
                    handle.write(json.dumps({"reason": reason, "body": body}) + "\n")
        except OSError as error:
            logger.error("greenaudit: could not keep the rejected requests in %s (%s)", path, error)
        logger.error(
            "greenaudit: the service rejected %d request(s) of run %s, first: %s. "
            "They are kept in %s",
            len(rejected),
            spool.run_id,
            rejected[0][0],
            path,
        )
    if pending:
        spool.set_acked(len(ops))
    return any(o.op in END_OPS for o in ops), len(rejected)


def flush_spool(folder: Path, settings: Settings) -> tuple[int, int]:
    """Deliver every spooled run in ``folder`` (``greenaudit flush``).

    Returns (runs completed and removed from the spool, runs still pending).
    """
    if not settings.url or not settings.api_key:
        raise ServiceNotConfigured("set GREENAUDIT_URL and GREENAUDIT_API_KEY to send the spool")
    client = ServiceClient(settings.url, settings.api_key)
    completed = pending = 0
    try:
        for spool in spooled_runs(folder):
            if not spool.lock():
                pending += 1  # its process is still running and sends it itself
                continue
            for attempt in range(1, 4):
                try:
                    finished, _ = deliver(spool, client)
                    break
                except TransientError as error:
                    if attempt == 3:
                        raise
                    logger.warning("greenaudit: %s; retrying", error)
                    time.sleep(backoff_s(attempt))
            if finished:
                spool.remove()
                completed += 1
            else:
                spool.close()
                pending += 1
    finally:
        client.close()
    return completed, pending
