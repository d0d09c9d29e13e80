"""The instruction cycle: fetch -> decode -> execute -> store, for many instructions at once.

Each fetched message becomes one asyncio task; the broker's prefetch bounds how many run. Messages
naming the same chat run one after another, in the order they were fetched; all others overlap.
A message is acknowledged only after its result is stored and its reply published.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import instruction_type_of
from services.common.errors import DomainError
from services.common.keys import Caller, scoped
from services.orchestrator.errors import failed_result, status_of
from services.orchestrator.instructions.access import HEADER, Gate
from services.orchestrator.instructions.catalog import chat_id_of, looked_up_alongside
from services.orchestrator.instructions.control import ControlUnit
from services.orchestrator.instructions.run import AlreadyAnswered, EffectsGate
from services.orchestrator.pipeline.chains import Chains
from services.orchestrator.pipeline.deltas import delta_route
from services.orchestrator.pipeline.observe import answered, caller_known, observed
from services.orchestrator.pipeline.redelivery import DeliveryPolicy, InstructionOutage, log_settled
from services.orchestrator.pipeline.results import Results, conflict, digest_of, instruction_id_for
from services.orchestrator.queue.bodies import DecodeError, decode
from services.orchestrator.queue.replies import Outbox
from services.orchestrator.queue.switchboard import Switchboard
from services.orchestrator.queue.transport import MAX_DELIVERIES, Message, Transport

log = logging.getLogger(__name__)

Result = orchestrator_pb2.Result
Instruction = orchestrator_pb2.Instruction
LEDGER_OUTAGES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Cycle:
    def __init__(self, transport: Transport, control: ControlUnit, results: Results, switchboard: Switchboard,
                 outage_wait_s: float, gate: Gate):
        self._transport = transport
        self._control = control
        self._results = results
        self._switchboard = switchboard
        self._gate = gate
        self._outbox = Outbox(transport)
        self._policy = DeliveryPolicy(transport, self._outbox, self._answer, self._tell_waiting, outage_wait_s)
        self._chains = Chains()
        self._tasks: set[asyncio.Task] = set()
        # When (loop time) a message last finished its cycle here: how long the slots have been stuck.
        self._last_finished = asyncio.get_running_loop().time()
        # Instruction id as its caller's own (keys.scoped) -> the digest of its request and the
        # result of its run in progress here, so a duplicate joins it.
        self._running: dict[str, tuple[bytes, asyncio.Future[Result | None]]] = {}

    # ---- fetch ----

    def on_message(self, message: Message) -> None:
        """Called on the event loop for each fetched message, in delivery order."""
        try:
            instruction = decode(message.body, message.content_type)
        except Exception as error:  # noqa: BLE001 - whatever a body does to the decoder, it is settled
            if not isinstance(error, DecodeError):
                log.exception("message %s: the decoder failed", message.message_id or message.correlation_id)
                error = DecodeError("the body could not be decoded", "MALFORMED_INSTRUCTION")
            self._track(asyncio.create_task(
                self._policy.guarded(message, lambda failure=error: self._policy.reject(message, failure))))
            return
        key = chat_id_of(instruction)
        tries = itertools.count()  # a try again in place (an outage waited out) is no redelivery

        async def cycle(message: Message, instruction: Instruction) -> None:
            await self._cycle(message, instruction, first_try=next(tries) == 0)

        work = observed(message, instruction, cycle)  # counted, timed, traced and logged
        # An instruction of a chat waits out an outage in its place: the chat's next ones wait for it.
        self._track(self._chains.run(key, lambda: self._policy.guarded(message, work, in_place=bool(key))))

    def _track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._last_finished = asyncio.get_running_loop().time()

    def stuck_for(self, slots: int) -> float:
        """Seconds for which all `slots` (the prefetch) have been taken with none finishing; 0 when
        a slot is free. A health check turns a long stretch of this into NOT_SERVING."""
        if len(self._tasks) < slots:
            return 0.0
        return asyncio.get_running_loop().time() - self._last_finished

    async def drain(self, timeout: float) -> None:
        """Waits for the messages in progress; those still running after `timeout` are cancelled
        unacknowledged, so the broker gives them to another replica."""
        self._policy.stop_resting()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    # ---- one instruction ----

    async def _cycle(self, message: Message, instruction: Instruction, first_try: bool = True) -> None:
        instruction.instruction_id = instruction_id_for(instruction, message)
        # The id as its caller's own: the key of its run, its stored result and its Submit stream.
        key = scoped(self._gate.scope(message.headers.get(HEADER)), instruction.instruction_id)
        try:
            if first_try and message.redelivered and await self._settle_redelivery(message, instruction, key):
                return
            result = await self._result_of(message, instruction, key)
        except grpc.aio.AioRpcError as error:
            if error.code() not in LEDGER_OUTAGES:
                raise
            # The ledger (db_unit) out of reach is an outage like any unit's: waited out for as
            # long, then the answer (a "try again" one, which nothing stores).
            result = failed_result(instruction.instruction_id, instruction_type_of(instruction), status_of(error),
                                   sequence=1)
            if self._policy.waits_out(key, result):
                raise InstructionOutage(key, result) from None
        if result is not None:
            await self._answer(message, result)
        self._transport.ack(message)
        log_settled("answered, acked" if result is not None else "withdrawn by its caller, acked", message,
                    instruction.instruction_id)

    async def _settle_redelivery(self, message: Message, instruction: Instruction, key: str) -> bool:
        """A message delivered before and never acknowledged: maybe it finished (answer from the
        ledger), maybe it kills whoever runs it. An unfinished one runs again where it is, so its
        chat's later instructions still come after it; its delivery is counted in db_unit (a
        crash cannot lose that count), and at MAX_DELIVERIES it goes to the dead-letter queue. A
        read has no ledger entry: it is counted the same way (a read that kills its worker must
        end too) and reads again."""
        instruction_id = instruction.instruction_id
        if key in self._running:
            return False  # still running here (our connection dropped meanwhile): join it
        if self._policy.put_back_here(message):
            return False  # this replica gave it back to wait out an outage: a try like any other
        stored = await self._results.lookup(instruction, key, digest_of(instruction))
        if stored is None:
            deliveries = message.deliveries + await self._results.count_delivery(key)
            if deliveries < MAX_DELIVERIES:
                return False
            await self._policy.give_up(message, "the message was delivered and not finished",
                                       "DELIVERY_LIMIT_REACHED", instruction_type_of(instruction), deliveries)
            return True
        await self._answer(message, stored)
        self._transport.ack(message)
        log_settled("redelivered, answered from the ledger, acked", message, instruction_id)
        return True

    async def _result_of(self, message: Message, instruction: Instruction, key: str) -> Result | None:
        """The instruction's final result: a refusal of its caller, or from a run in progress here,
        the ledger (effects only), or a new run. Refusals and a reused id's conflict are answered,
        not stored."""
        try:
            caller = await self._gate.caller(message.headers.get(HEADER), queued=True)
            caller_known(caller.role)
            await self._gate.authorize(caller, instruction)
        except DomainError as refusal:  # no key, a key not valid, a role or a user that may not
            return failed_result(instruction.instruction_id, instruction_type_of(instruction), status_of(refusal),
                                 sequence=1)
        digest = digest_of(instruction)
        running = self._running.get(key)
        if running is not None:
            return conflict(instruction) if running[0] != digest else await asyncio.shield(running[1])
        future: asyncio.Future[Result | None] = asyncio.get_running_loop().create_future()
        self._running[key] = (digest, future)
        try:
            if looked_up_alongside(instruction):
                result, ran = await self._looked_up_alongside(message, instruction, caller, key, digest)
            else:
                result = await self._results.lookup(instruction, key, digest)
                ran = result is None and not self._withdrawn(message, key)
                if ran:
                    result = await self._execute(message, instruction, caller, key)
            if ran and result is not None:
                if self._policy.waits_out(key, result):
                    raise InstructionOutage(key, result)
                result = await self._results.keep(instruction, result, key, digest)
            future.set_result(result)
            return result
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # a duplicate may not be waiting; don't warn about it
            raise
        finally:
            del self._running[key]

    async def _looked_up_alongside(self, message: Message, instruction: Instruction, caller: Caller, key: str,
                                   digest: bytes) -> tuple[Result | None, bool]:
        """Runs the instruction while its ledger lookup is under way: its handler reads meanwhile
        and waits for the lookup before its first effect (Run.before_effects). Returns the result
        and whether it is this run's (else it came from the ledger, or the caller withdrew)."""
        lookup = asyncio.ensure_future(self._results.lookup(instruction, key, digest))

        async def effects_gate() -> None:
            if await asyncio.shield(lookup) is not None:
                raise AlreadyAnswered()

        try:
            if self._withdrawn(message, key):
                return None, False
            result = await self._execute(message, instruction, caller, key, effects_gate)
        finally:
            if not lookup.done():  # a run that ended before its gate (an error in its reads)
                await asyncio.wait({lookup})
        stored = lookup.result()  # a failed lookup raises here: the ledger is out of reach
        if stored is not None:
            return stored, False  # it ran before: whatever this run read is dropped
        return result, True

    def _withdrawn(self, message: Message, key: str) -> bool:
        """A Submit call of this replica that was cancelled before its instruction ran here."""
        return message.reply_to == self._transport.reply_queue and self._switchboard.is_withdrawn(key)

    async def _execute(self, message: Message, instruction: Instruction, caller: Caller, key: str,
                       effects_gate: EffectsGate | None = None) -> Result | None:
        """Runs the Control Unit; None when the Submit caller cancelled it meanwhile."""
        instruction_id = instruction.instruction_id
        deltas = delta_route(self._transport, self._switchboard, message, key)
        sequence = 0  # 0 is the accepted event

        async def emit(event: Result) -> None:
            nonlocal sequence
            sequence += 1
            event.instruction_id, event.sequence = instruction_id, sequence
            deltas.delta(event)

        execution = asyncio.create_task(self._control.execute(instruction, emit, caller, effects_gate))
        self._switchboard.executing(key, execution)
        try:
            await asyncio.wait({execution})
        except asyncio.CancelledError:
            execution.cancel()
            raise
        finally:
            self._switchboard.executed(key, execution)
            deltas.flush()
        if execution.cancelled():
            return None
        result = execution.result()
        result.instruction_id, result.sequence, result.final = instruction_id, sequence + 1, True
        return result

    def _tell_waiting(self, message: Message, outage: InstructionOutage, retry_at: float, give_up_at: float) -> None:
        """A progress event for the caller of an instruction that went back on the queue."""
        event = Result(instruction_id=outage.result.instruction_id, instruction_type=outage.result.instruction_type,
                       status=orchestrator_pb2.Status(code=0))
        event.waiting.message, event.waiting.reason = outage.result.status.message, outage.result.status.reason
        event.waiting.retry_time.FromNanoseconds(int(retry_at * 1e9))
        event.waiting.give_up_time.FromNanoseconds(int(give_up_at * 1e9))
        route = delta_route(self._transport, self._switchboard, message, outage.instruction_id)
        route.delta(event)
        route.flush()

    async def _answer(self, message: Message, result: Result) -> None:
        """The final result to its caller: in-process to a Submit call of this replica, else to reply_to."""
        answered(result)
        if message.reply_to == self._transport.reply_queue:
            # Its Submit call listens under the correlation id: the instruction id as the caller's own.
            self._switchboard.deliver(message.correlation_id or result.instruction_id, result)
            return  # our own reply queue: nobody else reads it
        await self._outbox.reply(message, result)
