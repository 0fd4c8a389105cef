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

from .spool import MemorySpool, RunSpool, SpooledOp
from .threads import OnceWorker
from .transport import END_OPS, ServiceClient, TransientError, backoff_s, deliver

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
        on_forecast: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._make_create_body = make_create_body
        self._ready = ready
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._deadline = math.inf
        self._worker = OnceWorker(self._run, name="greenaudit-sender")
        # Made on the sender thread: an HTTP client loads TLS certificates (about 10 ms).
        self._client: ServiceClient | None = None
        self._warned: set[str] = set()
        self._last_point: dict[str, tuple[int, float]] = {}
        self._created = False  # whether the service has the run, so heartbeats can find it
        self.lost = 0  # items dropped because the spool was full
        self._next_beat = 0.0
        self._on_forecast = on_forecast
        self._next_check = 0.0
        self.delivered = False
        self._rejected = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Start the sender thread; without one, :meth:`close` does its work."""
        self._worker.start()

    def submit(self, op: str, body: Any) -> None:
        self._queue.put((op, body))

    def close(self, timeout_s: float) -> bool:
        """Stop after delivering what is queued, trying for at most ``timeout_s``.

        Returns whether everything reached the service. Safe however soon it is called: when
        the sender thread has not begun (not started yet, or waiting for a CPU), its work is
        done here, on the caller's thread, within the same deadline.
        """
        self._deadline = time.monotonic() + timeout_s
        self._queue.put(_CLOSE)
        self._wake.set()
        if self._worker.claim():
            self._run()
        else:
            self._worker.wait(timeout_s + 1.0)
        return self.delivered

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def _run(self) -> None:
        try:
            # Wait for hardware detection, but not past the run's end: the run must be spooled.
            deadline = time.monotonic() + READY_WAIT_S
            while not self._ready.wait(0.05):
                if self._wake.is_set() or time.monotonic() > deadline:
                    break
            self._write([SpooledOp("create_run", self._make_create_body())])
            if self._settings.url and self._settings.api_key:
                try:
                    self._client = ServiceClient(
                        self._settings.url,
                        self._settings.api_key,
                        timeout_s=min(10.0, max(1.0, self._settings.flush_timeout_s)),
                    )
                except Exception as error:  # a malformed GREENAUDIT_URL
                    self.last_error = f"GREENAUDIT_URL is not usable: {error}"
                    self._warn_once(
                        "url",
                        "greenaudit: %s; data is kept in %s",
                        self.last_error,
                        self._spool.path,
                    )
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

    def _heartbeat(self, now: float) -> None:
        """Tell the service the run is alive; a missed beat only matters if they all stop."""
        if self._client is None or now < self._next_beat or not self._created:
            return
        self._next_beat = now + self._settings.heartbeat_interval_s
        try:
            self._client.heartbeat(self._spool.run_id)
        except Exception:
            pass

    def _check_policy(self, now: float) -> None:
        """Ask for the run's forecast and budgets, for a run with on_budget or on_plateau."""
        if self._on_forecast is None or self._client is None or not self._created:
            return
        if now < self._next_check:
            return
        self._next_check = now + self._settings.budget_check_interval_s
        try:
            answer = self._client.forecast(self._spool.run_id)
        except Exception as error:  # the next check may get through; data is unaffected
            self._warn_once("policy", "greenaudit: cannot check the run's budgets (%s)", error)
            return
        try:
            self._on_forecast(answer)
        except Exception:
            logger.exception("greenaudit: could not read the service's forecast")

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
                self._write(ops)
                unsent = True
            if close_now and not closing:
                closing = True
                # The run is over and its user is waiting: try at once, backoff or not.
                next_send = time.monotonic()
            if closing and self._client is None:
                return
            now = time.monotonic()
            if self._client is not None and unsent and now >= next_send:
                try:
                    complete, rejected = deliver(self._spool, self._client)
                except (TransientError, OSError, ValueError) as error:
                    # Unreachable service, or a spool that could not be read or updated: keep
                    # draining and spooling, and try again later.
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
                    self._created = True
                    try:
                        self._spool.compact()
                    except OSError:
                        pass  # a spool that cannot be cut only grows; nothing is lost
                    self._rejected += rejected
                    if complete:
                        self.delivered = self._rejected == 0
                        # Everything was sent; what the service refused is in .rejected.
                        self._spool.remove()
                        if not self.delivered:
                            self.last_error = (
                                f"{self._rejected} request(s) rejected, kept in "
                                f"{self._spool.rejected_path}"
                            )
                        return
            if now >= next_send:
                next_send = now + SEND_INTERVAL_S
            if not closing:
                self._heartbeat(now)
                self._check_policy(now)
            if closing and time.monotonic() >= self._deadline:
                return

    def _write(self, ops: list[SpooledOp]) -> None:
        """Spool ``ops``; on a disk that cannot be written, keep them in memory instead."""
        if ops and ops[-1].op in END_OPS and len(ops) > 1:
            # Write the rest first, so the finish can count what the spool had to drop.
            self._write(ops[:-1])
            ops = ops[-1:]
        if ops and ops[0].op in END_OPS:
            ops = [SpooledOp(ops[0].op, {**ops[0].body, "lost_items": self.lost})]
        try:
            skipped, dropped = self._spool.append(ops)
        except OSError as error:
            self._warn_once(
                "spool",
                "greenaudit: cannot write the spool at %s (%s); this run is sent from "
                "memory and lost if the process dies",
                self._spool.path,
                error,
            )
            previous = self._spool.read() if self._spool.path.exists() else []
            self._spool = MemorySpool(self._spool.folder, self._spool.run_id, previous + ops)
            return
        if skipped:
            self._warn_once(
                "json",
                "greenaudit: %d item(s) could not be written as JSON and were skipped",
                skipped,
            )
        if dropped:
            self.lost += dropped
            self._warn_once(
                "full",
                "greenaudit: the spool %s reached its limit of %.3g MB (GREENAUDIT_SPOOL_MAX_MB); "
                "further items are counted as lost, not kept",
                self._spool.path,
                self._settings.spool_max_mb,
            )

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
        # run.log calls arrive as plain numbers; they are checked here, off the training thread.
        step, epoch, logged_at, metrics = body
        time_iso = datetime.fromtimestamp(logged_at, timezone.utc).isoformat()
        points = []
        for name, value in metrics.items():
            if not math.isfinite(value):
                self._warn_once(
                    f"nan:{name}",
                    "greenaudit: metric %r was %r at step %s; non-finite values are not recorded",
                    name,
                    value,
                    step,
                )
                continue
            last = self._last_point.get(name)
            if last is not None and last[0] == step:
                if last[1] != value:
                    # The service keeps one value per (metric, step); a second, different one
                    # would be refused with everything sent beside it.
                    self._warn_once(
                        f"again:{name}",
                        "greenaudit: metric %r was logged twice "
                        "at step %s with different values; the first is kept",
                        name,
                        step,
                    )
                continue
            self._last_point[name] = (step, value)
            points.append(
                SpooledOp(
                    "metric",
                    {"name": name, "step": step, "epoch": epoch, "value": value, "time": time_iso},
                )
            )
        return points
