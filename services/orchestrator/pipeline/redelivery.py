"""Redelivery policy: what happens to a message whose cycle did not finish.

A failure outside the message (a unit or the broker unreachable, a deadline passed) is an outage:
the message goes back on the queue after a back-off that grows with the outage. Any other failure
counts as a delivery (a header, since classic queues do not count them); at MAX_DELIVERIES the
message goes to the dead-letter queue and its caller gets a final ABORTED. A body that is no
instruction is dead-lettered at once and answered INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire.names import instruction_type_named
from services.common.limits import bounded_id
from services.orchestrator.errors import failed_result, orchestrator_status
from services.orchestrator.queue.bodies import DecodeError
from services.orchestrator.queue.replies import Outbox
from services.orchestrator.queue.transport import MAX_DELIVERIES, ConnectionLost, Message, Transport

log = logging.getLogger(__name__)

Result = orchestrator_pb2.Result
Answer = Callable[[Message, Result], Awaitable[None]]

# A message whose cycle failed because a unit or the broker was unreachable goes back on the
# queue after a wait between these bounds, growing with the outage.
RETRY_FIRST_SECONDS = 0.5
RETRY_CAP_SECONDS = 30.0


class DeliveryPolicy:
    """Settles the messages whose cycle failed: back on the queue, counted, or dead-lettered."""

    def __init__(self, transport: Transport, outbox: Outbox, answer: Answer):
        self._transport = transport
        self._outbox = outbox
        self._answer = answer
        # When messages began to fail because a unit or the broker was unreachable; None when fine.
        self._outage_since: float | None = None
        # Tasks waiting out an outage before giving their message back: cancelled first on drain.
        self._resting: set[asyncio.Task] = set()

    async def guarded(self, message: Message, work: Callable[[], Awaitable[None]]) -> None:
        """Runs one message's cycle and settles the message when the cycle fails."""
        try:
            await work()
            self._outage_since = None
        except asyncio.CancelledError:
            raise  # shutting down: not acknowledged, so redelivered
        except Exception as error:  # noqa: BLE001 - the cycle's own boundary
            if not is_outage(error):
                log.exception("message %s: the cycle failed", name_of(message))
                await self.count_failure(message, f"the cycle failed: {describe(error)}", "CYCLE_FAILED")
                return
            await self._wait_out(message, error)

    async def _wait_out(self, message: Message, error: Exception) -> None:
        now = asyncio.get_running_loop().time()
        self._outage_since = self._outage_since or now
        # As long again as the outage has lasted so far, within bounds, with jitter.
        delay = min(RETRY_CAP_SECONDS, max(RETRY_FIRST_SECONDS, now - self._outage_since)) * random.uniform(0.5, 1)
        log.warning("message %s: %s; back on the queue in %.1f s", name_of(message), describe(error), delay)
        resting = asyncio.current_task()
        self._resting.add(resting)
        try:
            await asyncio.sleep(delay)
        finally:
            self._resting.discard(resting)
        self._transport.requeue(message)

    def stop_resting(self) -> None:
        """Shutting down: messages waiting out an outage are left unacknowledged (redelivered)."""
        for task in list(self._resting):
            task.cancel()

    async def count_failure(self, message: Message, failure: str, reason: str, instruction_type: int = 0) -> None:
        """Republishes the message with its delivery count raised; past the limit, dead-letters it."""
        deliveries = message.deliveries + 1
        try:
            if deliveries >= MAX_DELIVERIES:
                failure = f"{failure}; gave up after {deliveries} deliveries"
                await self._outbox.dead_letter(message, failure, reason)
                await self._answer(message, failed_result(
                    _id_of(message), instruction_type, orchestrator_status(grpc.StatusCode.ABORTED, failure, reason),
                    sequence=1))
            else:
                await self._outbox.republish(message, deliveries)
        except Exception:  # noqa: BLE001 - the broker is gone too: leave the message to it
            log.exception("message %s: cannot republish; requeueing", name_of(message))
            self._transport.requeue(message)
            return
        self._transport.ack(message)

    async def reject(self, message: Message, error: DecodeError) -> None:
        """A body that is no instruction: dead-lettered, answered INVALID_ARGUMENT, acknowledged."""
        instruction_id = _id_of(message)
        result = failed_result(instruction_id, instruction_type_named(error.instruction_type or ""),
                               orchestrator_status(grpc.StatusCode.INVALID_ARGUMENT, error.message, error.reason),
                               sequence=1)
        log.warning("poison message %s: %s", instruction_id or "(no id)", error.message)
        await self._outbox.dead_letter(message, error.message, error.reason)
        await self._outbox.reply(message, result)
        self._transport.ack(message)


def is_outage(error: Exception) -> bool:
    """Failures of the infrastructure, not of the message: retried without counting."""
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return isinstance(error, (ConnectionLost, TimeoutError, ConnectionError))


def describe(error: Exception) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


def name_of(message: Message) -> str:
    return message.message_id or message.correlation_id or "(no id)"


def _id_of(message: Message) -> str:
    return bounded_id(message.message_id or message.correlation_id or "")
