"""The embedded default: named asyncio queues standing in for RabbitMQ, with the same message shape.

Without LLMCHATLINKER_AMQP_URL the cycle runs on this, so the suite works on a machine with no
broker. Nothing here survives the process: durability is what RabbitMQ adds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools

from services.orchestrator.queue.transport import Message, OnMessage, dead_letter_queue_name, reply_queue_name


class InProcessQueue:
    """Queues by name; the instruction queue is consumed with at most max_in_flight unacked."""

    def __init__(self, queue: str, max_in_flight: int, replica_id: str):
        self.queue = queue
        self.reply_queue = reply_queue_name(queue, replica_id)
        self.dead_letter_queue = dead_letter_queue_name(queue)
        self._queues: dict[str, asyncio.Queue[Message]] = collections.defaultdict(asyncio.Queue)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._unacked: set[int] = set()
        self._tags = itertools.count(1)
        self._consumers: dict[str, asyncio.Task] = {}
        # Never lost: nothing to recover (Transport.connections_lost).
        self.connections_lost = 0

    @property
    def consuming(self) -> bool:
        consumer = self._consumers.get(self.queue)
        return consumer is not None and not consumer.done()

    @property
    def connected(self) -> bool:
        return True

    @property
    def attached(self) -> bool:
        return self.consuming  # one process: nobody else to stand by for

    def queue_named(self, name: str) -> asyncio.Queue[Message]:
        """A queue by name, created on first use (tests read replies and dead letters here)."""
        return self._queues[name]

    def start(self, on_instruction: OnMessage, on_reply: OnMessage) -> None:
        self._consumers[self.queue] = asyncio.create_task(self._consume_instructions(on_instruction))
        self._consumers[self.reply_queue] = asyncio.create_task(self._consume(self.reply_queue, on_reply))

    async def ready(self, timeout: float = 0) -> None:
        return None

    async def publish(self, routing_key: str, message: Message, *, persistent: bool = True,
                      confirm: bool = True) -> None:
        self.publish_nowait(routing_key, message, persistent=persistent)

    def publish_nowait(self, routing_key: str, message: Message, *, persistent: bool = False) -> None:
        copy = dataclasses.replace(message, headers=dict(message.headers), redelivered=False, tag=None)
        self._queues[routing_key].put_nowait(copy)

    def ack(self, message: Message) -> None:
        if message.tag in self._unacked:
            self._unacked.discard(message.tag)
            self._slots.release()

    def requeue(self, message: Message) -> None:
        if message.tag in self._unacked:
            self.ack(message)
            self._queues[self.queue].put_nowait(dataclasses.replace(message, redelivered=True, tag=None))

    async def stop_consuming(self) -> None:
        await _cancel(self._consumers.pop(self.queue, None))

    async def close(self) -> None:
        for name in list(self._consumers):
            await _cancel(self._consumers.pop(name))

    async def _consume_instructions(self, on_instruction: OnMessage) -> None:
        source = self._queues[self.queue]
        while True:
            await self._slots.acquire()
            try:
                message = await source.get()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            message.tag = next(self._tags)
            self._unacked.add(message.tag)
            on_instruction(message)

    async def _consume(self, name: str, on_message: OnMessage) -> None:
        source = self._queues[name]
        while True:
            on_message(await source.get())


async def _cancel(task: asyncio.Task | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
