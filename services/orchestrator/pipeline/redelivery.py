"""Redelivery policy: what happens to a message whose cycle did not finish.

A failure outside the message (a unit or the broker unreachable, a deadline passed) is an outage:
the message goes back on the queue after a back-off that grows with the outage. So does an
instruction whose result is an outage (errors.is_outage) before it streamed anything, for up to
the outage wait; a try failing after that is its final answer. An instruction of a chat waits in
its place instead, unacknowledged, so that the chat's later instructions still run after it. A
message this replica put back is not counted as a delivery when it comes round again. Any other failure
counts as a delivery (a header, since classic queues do not count them); at MAX_DELIVERIES the
message goes to the dead-letter queue and its caller gets a final ABORTED. A body that is no
instruction is dead-lettered at once and answered INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire.names import instruction_type_named
from services.common.limits import bounded_id
from services.orchestrator.errors import failed_result, is_outage as is_outage_status, orchestrator_status
from services.orchestrator.queue.bodies import DecodeError
from services.orchestrator.queue.replies import Outbox
from services.orchestrator.queue.transport import MAX_DELIVERIES, ConnectionLost, Message, Transport

log = logging.getLogger(__name__)

Result = orchestrator_pb2.Result
Answer = Callable[[Message, Result], Awaitable[None]]
# Tells a message's caller that it waits: (message, the outage, when it runs again, when it gives up).
Notify = Callable[[Message, "InstructionOutage", float, float], None]

# A message whose cycle failed because a unit or the broker was unreachable goes back on the
# queue after a wait between these bounds, growing with the outage.
RETRY_FIRST_SECONDS = 0.5
RETRY_CAP_SECONDS = 30.0
# Messages put back on the queue (and instructions waiting out an outage) remembered at most.
REMEMBERED = 100_000


class InstructionOutage(Exception):
    """An instruction's result says a part it needs is down: it goes back on the queue to run again."""

    def __init__(self, instruction_id: str, result: Result):
        super().__init__(f"{result.status.reason}: {result.status.message}")
        self.instruction_id = instruction_id
        self.result = result


class DeliveryPolicy:
    """Settles the messages whose cycle failed: back on the queue, counted, or dead-lettered."""

    def __init__(self, transport: Transport, outbox: Outbox, answer: Answer, notify: Notify,
                 outage_wait_s: float):
        self._transport = transport
        self._outbox = outbox
        self._answer = answer
        self._notify = notify
        self._outage_wait_s = outage_wait_s
        # Instruction id -> when (loop time) it first failed with an outage; cleared when it ends.
        self._waiting_since: collections.OrderedDict[str, float] = collections.OrderedDict()
        # Messages this replica gave back to the queue: not a delivery that failed when they return.
        self._put_back: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        # When messages began to fail because a unit or the broker was unreachable; None when fine.
        self._outage_since: float | None = None
        # Tasks waiting out an outage before giving their message back: cancelled first on drain.
        self._resting: set[asyncio.Task] = set()

    async def guarded(self, message: Message, work: Callable[[], Awaitable[None]], *, in_place: bool = False) -> None:
        """Runs one message's cycle and settles the message when the cycle fails.

        `in_place`: an instruction that waits out an outage waits where it is, unacknowledged,
        and runs again there, so the work queued after it on its key (its chat) still comes
        after it; otherwise it goes back on the queue."""
        while True:
            try:
                await work()
                self._outage_since = None
                return
            except asyncio.CancelledError:
                raise  # shutting down: not acknowledged, so redelivered
            except Exception as error:  # noqa: BLE001 - the cycle's own boundary
                if not is_outage(error):
                    log.exception("message %s: the cycle failed", name_of(message))
                    await self.count_failure(message, f"the cycle failed: {describe(error)}", "CYCLE_FAILED")
                    return
                if not (in_place and isinstance(error, InstructionOutage)):
                    await self._wait_out(message, error)
                    return
                await self._rest(message, error)
                log.debug("running again where it waited: message %s, instruction %s", name_of(message),
                          error.instruction_id)

    def waits_out(self, instruction_id: str, result: Result) -> bool:
        """Whether this final result is an outage to wait out (the instruction then goes back on the
        queue) rather than the instruction's answer. Call with every final result of a run."""
        if not (result.final and result.sequence <= 1 and is_outage_status(result.status)):
            self._waiting_since.pop(instruction_id, None)  # done, or it streamed: this is the answer
            return False
        now = asyncio.get_running_loop().time()
        since = self._waiting_since.setdefault(instruction_id, now)
        _trim(self._waiting_since)
        if now - since < self._outage_wait_s:
            return True
        del self._waiting_since[instruction_id]
        log.warning("instruction %s: %s for %.0f s; giving up", instruction_id, result.status.reason, now - since)
        result.status.message += f" (waited {now - since:.0f} s for it to come back)"
        return False

    async def _wait_out(self, message: Message, error: Exception) -> None:
        """Rests, then gives the message back to the queue to run again."""
        await self._rest(message, error)
        self._put_back[_identity(message)] = None
        _trim(self._put_back)
        self._transport.requeue(message)
        log_settled("requeued to wait out an outage", message)

    async def _rest(self, message: Message, error: Exception) -> None:
        """Waits as long again as the outage has lasted so far (within bounds, with jitter); an
        instruction's caller hears when it runs again and when it gives up."""
        now = asyncio.get_running_loop().time()
        self._outage_since = self._outage_since or now
        # An instruction's own outage is timed from its first failure (other instructions may be
        # doing fine meanwhile); the infrastructure's from the first message it failed.
        since = self._outage_since
        if isinstance(error, InstructionOutage):
            since = self._waiting_since.get(error.instruction_id, now)
        # As long again as the outage has lasted so far, within bounds, with jitter.
        delay = min(RETRY_CAP_SECONDS, max(RETRY_FIRST_SECONDS, now - since)) * random.uniform(0.5, 1)
        if isinstance(error, InstructionOutage):
            give_up_in = since + self._outage_wait_s - now
            delay = max(0.0, min(delay, give_up_in))  # the last try comes when the wait is over, not later
            self._notify(message, error, time.time() + delay, time.time() + give_up_in)
        log.warning("message %s: %s; runs again in %.1f s", name_of(message), describe(error), delay)
        resting = asyncio.current_task()
        self._resting.add(resting)
        try:
            await asyncio.sleep(delay)
        finally:
            self._resting.discard(resting)

    def put_back_here(self, message: Message) -> bool:
        """Whether this redelivered message is one this replica gave back (it killed nobody)."""
        identity = _identity(message)
        if identity not in self._put_back:
            return False
        del self._put_back[identity]
        return True

    def stop_resting(self) -> None:
        """Shutting down: messages waiting out an outage are left unacknowledged (redelivered)."""
        for task in list(self._resting):
            task.cancel()

    async def count_failure(self, message: Message, failure: str, reason: str, instruction_type: int = 0) -> None:
        """Republishes the message with its delivery count raised; past the limit, dead-letters it."""
        deliveries = message.deliveries + 1
        if deliveries >= MAX_DELIVERIES:
            await self.give_up(message, failure, reason, instruction_type, deliveries)
            return
        await self._publish_then_ack(message, lambda: self._outbox.republish(message, deliveries), "republish",
                                     f"republished as delivery {deliveries}, acked")

    async def give_up(self, message: Message, failure: str, reason: str, instruction_type: int,
                      deliveries: int) -> None:
        """A message past MAX_DELIVERIES: dead-lettered, answered ABORTED, acknowledged."""
        failure = f"{failure}; gave up after {deliveries} deliveries"

        async def dead_letter_and_answer() -> None:
            await self._outbox.dead_letter(message, failure, reason)
            await self._answer(message, failed_result(
                _id_of(message), instruction_type, orchestrator_status(grpc.StatusCode.ABORTED, failure, reason),
                sequence=1))

        await self._publish_then_ack(message, dead_letter_and_answer, "dead-letter",
                                     f"dead-lettered after {deliveries} deliveries, answered ABORTED, acked")

    async def _publish_then_ack(self, message: Message, publish: Callable[[], Awaitable[None]], what: str,
                                settled: str) -> None:
        """Acknowledges once `publish` has put what stands for the message on the broker; when it
        cannot (the broker is gone too), gives the message back to the broker instead."""
        try:
            await publish()
        except Exception:  # noqa: BLE001 - the broker is gone too: leave the message to it
            log.exception("message %s: cannot %s; requeueing", name_of(message), what)
            self._transport.requeue(message)
            log_settled(f"requeued (cannot {what})", message)
            return
        self._transport.ack(message)
        log_settled(settled, message)

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
        log_settled("refused as poison, dead-lettered, acked", message)


def log_settled(how: str, message: Message, instruction_id: str = "") -> None:
    """Every settle of a delivery, at DEBUG: what became of which message (and its instruction)."""
    log.debug("%s: message %s, instruction %s", how, name_of(message), instruction_id or _id_of(message) or "(no id)")


def is_outage(error: Exception) -> bool:
    """Failures of the infrastructure, not of the message: retried without counting."""
    if isinstance(error, InstructionOutage):
        return True
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return isinstance(error, (ConnectionLost, TimeoutError, ConnectionError))


def describe(error: Exception) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


def name_of(message: Message) -> str:
    return message.message_id or message.correlation_id or "(no id)"


def _identity(message: Message) -> tuple:
    return message.message_id, message.correlation_id, hash(message.body)


def _trim(remembered: collections.OrderedDict) -> None:
    while len(remembered) > REMEMBERED:
        remembered.popitem(last=False)


def _id_of(message: Message) -> str:
    return bounded_id(message.message_id or message.correlation_id or "")
