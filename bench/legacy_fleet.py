"""The original's own load: N client processes, each with one persistent pika connection, each
waiting for its reply before the next call (as issue 18 measured the original side by side).

Processes, not threads: 32 pika clients in one process would spend the run waiting for its GIL.
The processes start once, connect, warm up, and then take one batch of calls per run.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import time
from dataclasses import dataclass, field

# A worker starts its share of a run at this many seconds after the parent hands it out, so all
# start together.
START_SKEW_S = 0.3
RUN_TIMEOUT_S = 300.0


@dataclass
class FleetResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def _worker(amqp_url: str, queue: str, inbox, outbox) -> None:
    """One client process: one connection and exclusive reply queue for its whole life."""
    from bench.legacy_client import LegacyClient  # in the child: only pika is imported

    try:
        client = LegacyClient(amqp_url, queue)
    except Exception as exc:  # noqa: BLE001 - the parent says why, instead of waiting for nothing
        outbox.put(("failed", f"cannot connect a legacy client: {type(exc).__name__}: {exc}"))
        return
    outbox.put(("ready", None))
    while True:
        job = inbox.get()
        if job is None:
            break
        start_at, calls = job
        time.sleep(max(0.0, start_at - time.monotonic()))
        latencies, errors, first_error = [], 0, ""
        for kind, data in calls:
            started = time.monotonic()
            try:
                reply = client.call(kind, data)
                ok, message = reply.get("status") == "success", reply.get("message")
            except Exception as exc:  # noqa: BLE001 - counted and shown, the load goes on
                ok, message = False, f"{type(exc).__name__}: {exc}"
            if ok:
                latencies.append(time.monotonic() - started)
            else:
                errors += 1
                first_error = first_error or str(message)[:200]
        outbox.put(("done", (time.monotonic(), latencies, errors, first_error)))
    client.close()


class LegacyFleet:
    """`size` legacy client processes; `run` spreads calls over the first `clients` of them."""

    def __init__(self, amqp_url: str, queue: str, size: int):
        context = multiprocessing.get_context("spawn")  # the parent runs threads and an event loop
        self._outbox = context.Queue()
        self._inboxes = [context.Queue() for _ in range(size)]
        self._processes = [context.Process(target=_worker, args=(amqp_url, queue, inbox, self._outbox), daemon=True)
                           for inbox in self._inboxes]
        for process in self._processes:
            process.start()
        for _ in self._processes:
            self._take("ready")

    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def run(self, clients: int, calls: list[tuple[str, dict]]) -> FleetResult:
        """Each of `clients` processes makes its share of `calls` one after another; the rate is
        over the wall time from the common start to the last reply."""
        start_at = time.monotonic() + START_SKEW_S
        for index in range(clients):
            self._inboxes[index].put((start_at, calls[index::clients]))
        result = FleetResult(0.0)
        last_end = start_at
        for _ in range(clients):
            end, latencies, errors, first_error = self._take("done")
            last_end = max(last_end, end)
            result.latencies += latencies
            result.errors += errors
            result.first_error = result.first_error or first_error
        result.seconds = last_end - start_at
        return result

    def _take(self, expected: str):
        try:
            what, payload = self._outbox.get(timeout=RUN_TIMEOUT_S)
        except queue_module.Empty:
            raise TimeoutError(f"a legacy client process gave no '{expected}' in {RUN_TIMEOUT_S:.0f} s") from None
        if what == "failed":
            raise RuntimeError(payload)
        if what != expected:
            raise RuntimeError(f"a legacy client process said {what!r}, expected {expected!r}")
        return payload

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()
