"""Handoff: calls from one thread run on another, batched into one wake-up per burst.

Between pika's I/O thread and the asyncio loop every delivery, ack and publish crosses threads;
one wake-up (a write to a self-pipe, and a GIL hand-over) per call costs more than the call.
"""

from __future__ import annotations

import collections
import logging
import threading

log = logging.getLogger(__name__)


class Handoff:
    """Calls from one thread to run on another, batched: one wake-up carries every call queued
    since the last, so a burst of deliveries or acks costs one cross-thread wake-up, not one each."""

    def __init__(self, wake):
        self._wake = wake  # schedules a callable on the target thread, thread-safely
        self._calls: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def call(self, function, *args) -> None:
        with self._lock:
            self._calls.append((function, args))
            if self._scheduled:
                return
            self._scheduled = True
        self._wake(self._run)

    def rewire(self, wake) -> None:
        """Targets a new thread loop (a new connection's ioloop); calls still queued go there."""
        with self._lock:
            self._wake = wake
            self._scheduled = bool(self._calls)
        if self._scheduled:
            wake(self._run)

    def _run(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, collections.deque()
            self._scheduled = False
        for function, args in calls:
            try:
                function(*args)
            except Exception:  # noqa: BLE001 - one bad call must not drop the others
                log.exception("handoff call %s failed", function)
