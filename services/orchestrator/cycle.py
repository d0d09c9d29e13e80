"""The instruction cycle: fetch -> decode -> execute -> store, for many instructions at once.

Each fetched message becomes one asyncio task; the broker's prefetch bounds how many run. Messages
naming the same chat run one after another, in the order they were fetched; all others overlap.
A message is acknowledged only after its result is stored and its reply published.
"""

from __future__ import annotations

import asyncio
import logging
import random

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import instruction_type_of
from llmchatlinker.wire.names import instruction_type_named
from services.orchestrator import queues
from services.orchestrator.control import ControlUnit
from services.orchestrator.control_run import DOMAIN
from services.orchestrator.decode import DecodeError, decode
from services.orchestrator.facts import chat_id_of
from services.orchestrator.fetch import ConnectionLost
from services.orchestrator.queues import Message
from services.orchestrator.relay import BatchedDeltas, DropDeltas, LocalDeltas, Switchboard
from services.orchestrator.store import Store, instruction_id_for

log = logging.getLogger(__name__)

Result = orchestrator_pb2.Result
Instruction = orchestrator_pb2.Instruction

# A message whose cycle failed because a unit or the broker was unreachable goes back on the
# queue after a wait between these bounds, growing with the outage.
RETRY_FIRST_SECONDS = 0.5
RETRY_CAP_SECONDS = 30.0


class Chains:
    """Per-key serialisation: work on one key runs in submission order, different keys overlap."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task] = {}

    def run(self, key: str, work) -> asyncio.Task:
        previous = self._tails.get(key) if key else None

        async def after_previous():
            if previous is not None:
                await asyncio.wait({previous})
            return await work()

        task = asyncio.create_task(after_previous())
        if key:
            self._tails[key] = task
            task.add_done_callback(lambda done: self._tails.pop(key) if self._tails.get(key) is done else None)
        return task


class Cycle:
    def __init__(self, transport: queues.Transport, control: ControlUnit, store: Store, switchboard: Switchboard):
        self._transport = transport
        self._control = control
        self._store = store
        self._switchboard = switchboard
        self._chains = Chains()
        self._tasks: set[asyncio.Task] = set()
        # Instruction id -> the result of its run in progress here, so a duplicate joins it.
        self._running: dict[str, asyncio.Future[Result | None]] = {}
        # When messages began to fail because a unit or the broker was unreachable; None when fine.
        self._outage_since: float | None = None
        # Tasks waiting out an outage before giving their message back: cancelled first on drain.
        self._resting: set[asyncio.Task] = set()

    # ---- fetch ----

    def on_message(self, message: Message) -> None:
        """Called on the event loop for each fetched message, in delivery order."""
        try:
            instruction = decode(message.body, message.content_type)
        except DecodeError as error:
            self._track(asyncio.create_task(self._guarded(message, lambda failure=error: self._reject(message, failure))))
            return
        key = chat_id_of(instruction)
        self._track(self._chains.run(key, lambda: self._guarded(message, lambda: self._cycle(message, instruction))))

    def _track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Waits for the messages in progress; those still running after `timeout` are cancelled
        unacknowledged, so the broker gives them to another replica."""
        for task in list(self._resting):
            task.cancel()  # not acknowledged: redelivered like any other unfinished message
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _guarded(self, message: Message, work) -> None:
        """Runs one message's cycle. A failure outside the message (a unit or the broker down)
        puts it back after a back-off that grows with the outage; any other failure counts as a
        delivery, so a message that keeps failing ends on the dead-letter queue."""
        try:
            await work()
            self._outage_since = None
        except asyncio.CancelledError:
            raise  # shutting down: not acknowledged, so redelivered
        except Exception as error:  # noqa: BLE001 - the cycle's own boundary
            if not _is_outage(error):
                log.exception("message %s: the cycle failed", _name(message))
                await self._count_failure(message, f"the cycle failed: {_describe(error)}", "CYCLE_FAILED")
                return
            now = asyncio.get_running_loop().time()
            self._outage_since = self._outage_since or now
            # As long again as the outage has lasted so far, within bounds, with jitter.
            delay = min(RETRY_CAP_SECONDS, max(RETRY_FIRST_SECONDS, now - self._outage_since)) * random.uniform(0.5, 1)
            log.warning("message %s: %s; back on the queue in %.1f s", _name(message), _describe(error), delay)
            resting = asyncio.current_task()
            self._resting.add(resting)
            try:
                await asyncio.sleep(delay)
            finally:
                self._resting.discard(resting)
            self._transport.requeue(message)

    async def _count_failure(self, message: Message, failure: str, reason: str, instruction_type: int = 0) -> None:
        """Republishes the message with its delivery count raised; past the limit, dead-letters it."""
        deliveries = message.deliveries + 1
        try:
            if deliveries >= queues.MAX_DELIVERIES:
                failure = f"{failure}; gave up after {deliveries} deliveries"
                instruction_id = queues.bounded_id(message.message_id or message.correlation_id or "")
                await self._store.dead_letter(message, failure, reason)
                await self._answer(message, _final(instruction_id, instruction_type, grpc.StatusCode.ABORTED, failure, reason))
            else:
                await self._store.republish(message, deliveries)
        except Exception:  # noqa: BLE001 - the broker is gone too: leave the message to it
            log.exception("message %s: cannot republish; requeueing", _name(message))
            self._transport.requeue(message)
            return
        self._transport.ack(message)

    # ---- decode failures ----

    async def _reject(self, message: Message, error: DecodeError) -> None:
        instruction_id = queues.bounded_id(message.message_id or message.correlation_id or "")
        result = _final(instruction_id, instruction_type_named(error.instruction_type or ""),
                        grpc.StatusCode.INVALID_ARGUMENT, error.message, error.reason)
        log.warning("poison message %s: %s", instruction_id or "(no id)", error.message)
        await self._store.dead_letter(message, error.message, error.reason)
        await self._store.reply(message, result)
        self._transport.ack(message)

    # ---- one instruction ----

    async def _cycle(self, message: Message, instruction: Instruction) -> None:
        instruction.instruction_id = instruction_id_for(instruction, message)
        if message.redelivered and await self._settle_redelivery(message, instruction):
            return
        result = await self._result_of(message, instruction)
        if result is not None:
            await self._answer(message, result)
        self._transport.ack(message)

    async def _settle_redelivery(self, message: Message, instruction: Instruction) -> bool:
        """A message delivered before and never acknowledged: maybe it finished (answer from the
        ledger), maybe it kills whoever runs it. Unfinished ones go back on the queue with their
        delivery count raised, and at MAX_DELIVERIES to the dead-letter queue."""
        if instruction.instruction_id in self._running:
            return False  # still running here (our connection dropped meanwhile): join it
        stored = await self._store.lookup(instruction.instruction_id)
        if stored is None:
            await self._count_failure(message, "the message was delivered and not finished", "DELIVERY_LIMIT_REACHED",
                                      instruction_type_of(instruction))
            return True
        await self._answer(message, stored)
        self._transport.ack(message)
        return True

    async def _result_of(self, message: Message, instruction: Instruction) -> Result | None:
        """The instruction's final result: from a run in progress here, the ledger, or a new run."""
        instruction_id = instruction.instruction_id
        running = self._running.get(instruction_id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Result | None] = asyncio.get_running_loop().create_future()
        self._running[instruction_id] = future
        try:
            result = await self._store.lookup(instruction_id)
            if result is None and not self._withdrawn(message, instruction_id):
                result = await self._execute(message, instruction)
                if result is not None:
                    result = await self._store.keep(instruction, result)
            future.set_result(result)
            return result
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # a duplicate may not be waiting; don't warn about it
            raise
        finally:
            del self._running[instruction_id]

    def _withdrawn(self, message: Message, instruction_id: str) -> bool:
        """A Submit call of this replica that was cancelled before its instruction ran here."""
        return message.reply_to == self._transport.reply_queue and self._switchboard.is_withdrawn(instruction_id)

    async def _execute(self, message: Message, instruction: Instruction) -> Result | None:
        """Runs the Control Unit; None when the Submit caller cancelled it meanwhile."""
        instruction_id = instruction.instruction_id
        deltas = self._delta_relay(message, instruction_id)
        sequence = 0  # 0 is the accepted event

        async def emit(event: Result) -> None:
            nonlocal sequence
            sequence += 1
            event.instruction_id, event.sequence = instruction_id, sequence
            deltas.delta(event)

        execution = asyncio.create_task(self._control.execute(instruction, emit))
        self._switchboard.executing(instruction_id, execution)
        try:
            await asyncio.wait({execution})
        except asyncio.CancelledError:
            execution.cancel()
            raise
        finally:
            self._switchboard.executed(instruction_id, execution)
            deltas.flush()
        if execution.cancelled():
            return None
        result = execution.result()
        result.instruction_id, result.sequence, result.final = instruction_id, sequence + 1, True
        return result

    def _delta_relay(self, message: Message, instruction_id: str):
        if message.reply_to == self._transport.reply_queue and self._switchboard.is_listening(instruction_id):
            return LocalDeltas(self._switchboard, instruction_id)
        if message.reply_to and queues.is_protobuf(message.content_type):
            return BatchedDeltas(self._transport, message.reply_to, message.correlation_id)
        return DropDeltas()

    async def _answer(self, message: Message, result: Result) -> None:
        """The final result to its caller: in-process to a Submit call of this replica, else to reply_to."""
        if message.reply_to == self._transport.reply_queue:
            self._switchboard.deliver(result.instruction_id, result)
            return  # our own reply queue: nobody else reads it
        await self._store.reply(message, result)


def _is_outage(error: Exception) -> bool:
    """Failures of the infrastructure, not of the message: retried without counting."""
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return isinstance(error, (ConnectionLost, TimeoutError, ConnectionError))


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


def _name(message: Message) -> str:
    return message.message_id or message.correlation_id or "(no id)"


def _final(instruction_id: str, instruction_type: int, code: grpc.StatusCode, message: str, reason: str) -> Result:
    return Result(
        instruction_id=instruction_id,
        instruction_type=instruction_type,
        sequence=1,
        final=True,
        status=orchestrator_pb2.Status(code=code.value[0], message=message, reason=reason, domain=DOMAIN),
    )
