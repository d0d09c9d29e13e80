"""Joining calls: the calls many requests make at once travel as one batch (a unit call, a transaction).

Hundreds of instructions in flight each need the same kinds of small reads and writes (the
orchestrator's ledger lookup and store, user check, chat context and turn append; the llm_unit's
admission of a generation against its user's limits). One gRPC call, or one transaction, costs a
fixed amount however little it carries, so calls made in the same event-loop turn, or while the
earlier batches are still in flight, go together in the next batch. A lone call goes at once:
batching adds no wait when there is nothing to join.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

# Items of one batch call; the units accept up to 1,000.
MAX_BATCH = 256
# Batch calls of one kind in flight at once; more items wait and join the next batch.
MAX_IN_FLIGHT = 2
# Bytes of items in one batch call (by the batcher's `weigh`), well inside gRPC's 32 MiB message
# limit; an item heavier than this goes alone.
MAX_BATCH_BYTES = 8 * 1024 * 1024


class Batcher(Generic[Item, Outcome]):
    """Collects `call(item)`s and answers them with `send(items)`, one outcome per item in order.

    An outcome that is an exception is raised to that item's caller alone; an exception raised by
    `send` goes to every caller of that batch. A caller that is cancelled leaves its item's outcome
    unread; the batch it rides in is not cancelled.
    """

    def __init__(self, send: Callable[[list[Item]], Awaitable[Sequence[Outcome | BaseException]]], *,
                 weigh: Callable[[Item], int] = lambda item: 0, max_batch: int = MAX_BATCH,
                 max_in_flight: int = MAX_IN_FLIGHT):
        self._send = send
        self._weigh = weigh
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: collections.deque[tuple[Item, asyncio.Future[Outcome]]] = collections.deque()
        self._in_flight: set[asyncio.Task] = set()
        self._flush_scheduled = False

    async def call(self, item: Item) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._schedule_flush()
        return await future

    def _schedule_flush(self) -> None:
        # At the end of this loop turn, so that the calls made in the same turn join the batch.
        if self._waiting and not self._flush_scheduled and len(self._in_flight) < self._max_in_flight:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, weight = [], 0
        while self._waiting and len(batch) < self._max_batch:
            item, future = self._waiting[0]
            weight += self._weigh(item)
            if batch and weight > MAX_BATCH_BYTES:
                break
            self._waiting.popleft()
            if not future.done():  # else its caller was cancelled meanwhile
                batch.append((item, future))
        if batch:
            task = asyncio.get_running_loop().create_task(self._deliver(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._sent)
        self._schedule_flush()

    def _sent(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self._schedule_flush()

    async def _deliver(self, batch: list[tuple[Item, asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await self._send([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} was answered with {len(outcomes)} outcomes")
        except asyncio.CancelledError:  # shutting down: so are its callers
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - handed to every caller of the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), outcome in zip(batch, outcomes):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
