"""Background work that is done exactly once, however late (or never) its thread starts.

A run may end before the threads it started have begun: on a busy machine a thread can wait
seconds for its first slice of CPU, and a thread may not start at all (the process is at its
thread limit). ``Thread.join`` on such a thread raises. A :class:`OnceWorker` instead lets
whoever ends the run *claim* work that has not begun, and do it (or skip it) on its own
thread, so ending a run never depends on how soon a thread starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("greenaudit")


class OnceWorker:
    """Runs ``target`` once, on a daemon thread of its own unless a caller claims it first.

    Example:
        >>> done = []
        >>> worker = OnceWorker(lambda: done.append(1), name="example")
        >>> worker.claim()  # before start: the thread will never run it
        True
        >>> worker.start()
        True
        >>> worker.wait(1.0), done
        (True, [])

    """

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._taken = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._body, name=name, daemon=True)

    def start(self) -> bool:
        """Start the thread. Returns ``False``, after logging why, when it cannot start."""
        try:
            self._thread.start()
        except RuntimeError as error:  # "can't start new thread"
            logger.warning("greenaudit: could not start %s (%s)", self._thread.name, error)
            return False
        return True

    def claim(self) -> bool:
        """Take the work from the thread if it has not begun; then it never runs there.

        Returns ``True`` when the caller now owns the work (and may do it itself), ``False``
        when the thread has already begun it (wait for it with :meth:`wait`).
        """
        with self._lock:
            if self._taken:
                return False
            self._taken = True
        self._done.set()
        return True

    def wait(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the work to end; returns whether it has.

        Work claimed by a caller counts as ended here: the caller does it.
        """
        return self._done.wait(timeout_s)

    def _body(self) -> None:
        with self._lock:
            if self._taken:
                return
            self._taken = True
        try:
            self._target()
        finally:
            self._done.set()
