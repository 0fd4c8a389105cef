"""The per-run sender thread: spools every operation, then delivers it in batches."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from greenaudit.settings import Settings

from .spool import RunSpool, SpooledOp
from .transport import ServiceClient, TransientError, backoff_s, deliver

logger = logging.getLogger("greenaudit")

_CLOSE = object()
SEND_INTERVAL_S = 2.0
# The sender wakes this often to move queued items to the spool. Waking per item instead would
# cost the training thread a GIL hand-off and a write syscall per logged metric.
SPOOL_INTERVAL_S = 0.5
# Hardware detection (CodeCarbon's first start in a process) can take seconds; the run is
# created as soon as it is done, or after this long without it.
READY_WAIT_S = 30.0


class RunSender:
    """Takes operations from any thread; spools and sends them on a thread of its own.

    :meth:`submit` only puts an item on a queue, so it costs the training thread about a
    microsecond.
    """

    def __init__(
        self,
        settings: Settings,
        spool: RunSpool,
        make_create_body: Callable[[], dict[str, Any]],
        ready: threading.Event,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._make_create_body = make_create_body
        self._ready = ready
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._deadline = math.inf
        self._thread = threading.Thread(target=self._run, name="greenaudit-sender", daemon=True)
        # Made on the sender thread: an HTTP client loads TLS certificates (about 10 ms).
        self._client: ServiceClient | None = None
        self._warned: set[str] = set()
        self.delivered = False
        self._rejected = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, op: str, body: Any) -> None:
        self._queue.put((op, body))

    def close(self, timeout_s: float) -> bool:
        """Stop after delivering what is queued, trying for at most ``timeout_s``.

        Returns whether everything reached the service.
        """
        self._deadline = time.monotonic() + timeout_s
        self._queue.put(_CLOSE)
        self._wake.set()
        self._thread.join(timeout_s + READY_WAIT_S)
        return self.delivered

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def _run(self) -> None:
        try:
            if self._settings.url and self._settings.api_key:
                self._client = ServiceClient(self._settings.url, self._settings.api_key)
            self._ready.wait(READY_WAIT_S)
            self._spool.append([SpooledOp("create_run", self._make_create_body())])
            self._loop()
        except Exception:
            logger.exception(
                "greenaudit: the sender stopped; data so far is in %s", self._spool.path
            )
        finally:
            try:
                self._spool.close()
            except OSError:
                pass
            if self._client is not None:
                self._client.close()

    def _loop(self) -> None:
        closing = False
        failures = 0
        next_send = time.monotonic() + SEND_INTERVAL_S
        unsent = True
        while True:
            now = time.monotonic()
            if not closing:
                self._wake.wait(max(0.0, min(SPOOL_INTERVAL_S, next_send - now)))
            else:  # waiting out a backoff, never past the deadline
                time.sleep(max(0.0, min(next_send, self._deadline) - now))
            ops, close_now = self._drain()
            if ops:
                self._spool.append(ops)
                unsent = True
            if close_now and not closing:
                closing = True
                if failures == 0:
                    next_send = time.monotonic()  # deliver the rest at once
            if closing and self._client is None:
                return
            now = time.monotonic()
            if self._client is not None and unsent and now >= next_send:
                try:
                    complete, rejected = deliver(self._spool, self._client)
                except TransientError as error:
                    failures += 1
                    self.last_error = str(error)
                    self._warn_once(
                        "transient",
                        "greenaudit: cannot reach the service (%s); data is kept in %s and retried",
                        error,
                        self._spool.path,
                    )
                    next_send = now + backoff_s(failures)
                else:
                    failures, unsent = 0, False
                    self._rejected += rejected
                    if complete:
                        self.delivered = self._rejected == 0
                        if self.delivered:
                            self._spool.remove()
                        else:
                            self.last_error = f"{self._rejected} request(s) rejected"
                        return
            if now >= next_send:
                next_send = now + SEND_INTERVAL_S
            if closing and time.monotonic() >= self._deadline:
                return

    def _drain(self) -> tuple[list[SpooledOp], bool]:
        """Everything queued so far, and whether a close was asked for."""
        ops: list[SpooledOp] = []
        close = False
        try:
            item = self._queue.get_nowait()
            while True:
                if item is _CLOSE:
                    close = True
                else:
                    ops.extend(self._to_wire(*item))
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return ops, close

    def _to_wire(self, op: str, body: Any) -> list[SpooledOp]:
        if op != "log":
            return [SpooledOp(op, body)]
        # run.log calls arrive raw; they are checked and expanded here, off the training thread.
        step, epoch, logged_at, metrics = body
        time_iso = datetime.fromtimestamp(logged_at, timezone.utc).isoformat()
        points = []
        for name, raw in metrics.items():
            try:
                value = float(raw)
            except (TypeError, ValueError):
                self._warn_once(
                    f"type:{name}",
                    "greenaudit: metric %r has a value that is not a number (%r); such values "
                    "are not recorded",
                    name,
                    raw,
                )
                continue
            if not math.isfinite(value):
                self._warn_once(
                    f"nan:{name}",
                    "greenaudit: metric %r was %r at step %s; non-finite values are not recorded",
                    name,
                    value,
                    step,
                )
                continue
            points.append(
                SpooledOp(
                    "metric",
                    {"name": name, "step": step, "epoch": epoch, "value": value, "time": time_iso},
                )
            )
        return points
