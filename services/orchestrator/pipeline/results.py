"""Store: each final result is recorded for its users and, for an instruction with an effect,
kept in the ledger, linked to its instruction id as its caller's own.

The ledger is what makes a redelivered instruction answer from memory instead of applying its
effect again. A read has no effect to protect: it is never looked up nor kept, and a repeated
id reads again.
"""

from __future__ import annotations

import hashlib
import uuid

import grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import instruction_type_of, json_type_of
from services.common.limits import bounded_id
from services.orchestrator.errors import failed_result, orchestrator_status
from services.orchestrator.instructions.catalog import reads_only
from services.orchestrator.instructions.recording import record_instruction
from services.orchestrator.queue.transport import Message
from services.orchestrator.units.gateways import Units

Result = orchestrator_pb2.Result
Instruction = orchestrator_pb2.Instruction

# Status codes of a failed attempt that a retry may well get past.
RETRYABLE_CODES = frozenset(code.value[0] for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))


def instruction_id_for(instruction: Instruction, message: Message) -> str:
    """The proto instruction_id, else the AMQP message_id, else the correlation_id, else a new id."""
    for candidate in (instruction.instruction_id, message.message_id, message.correlation_id):
        if candidate:
            return bounded_id(candidate)
    return str(uuid.uuid4())


def kept(instruction: Instruction) -> bool:
    """Whether the instruction's result goes in the ledger: an effect's does, a read's does not."""
    return not reads_only(instruction)


def digest_of(instruction: Instruction) -> bytes:
    """What the request was, whatever its id: the SHA-256 of the instruction without its id."""
    request = Instruction()
    request.CopyFrom(instruction)
    request.instruction_id = ""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).digest()


def conflict(instruction: Instruction) -> Result:
    """The answer to an id sent again with another request: ALREADY_EXISTS (not stored)."""
    return failed_result(instruction.instruction_id, instruction_type_of(instruction), orchestrator_status(
        grpc.StatusCode.ALREADY_EXISTS,
        f"instruction id {instruction.instruction_id!r} was already used for another request; this "
        f"{json_type_of(instruction)} is not that request: send it under a new id", "INSTRUCTION_ID_REUSED"),
        sequence=1)


class Results:
    """Final results in db_unit's ledger (first writer wins), and the instruction records they make."""

    def __init__(self, units: Units):
        self._units = units

    async def lookup(self, instruction: Instruction, key: str, digest: bytes = b"") -> Result | None:
        """The stored final result of an instruction (under `key`, its id as its caller's own), or
        None when it has not finished or is a read (never stored). With the request's `digest`: a
        result stored for another request is answered `conflict(instruction)`."""
        if not kept(instruction):
            return None
        stored = await self._units.ledger.lookup(key)
        if stored is None:
            return None
        result, stored_digest = stored
        if digest and stored_digest and stored_digest != digest:
            return conflict(instruction)
        return Result.FromString(result)

    async def stored_under(self, key: str) -> Result | None:
        """The result stored under `key` (an instruction id as its caller's own), whatever the
        request was; None when there is none (an effect not finished, or a read)."""
        stored = await self._units.ledger.lookup(key)
        return None if stored is None else Result.FromString(stored[0])

    async def count_delivery(self, instruction_id: str) -> int:
        """Counts one more unfinished delivery of the instruction (durably); returns the count."""
        return await self._units.ledger.count_delivery(instruction_id)

    async def keep(self, instruction: Instruction, result: Result, key: str = "", digest: bytes = b"") -> Result:
        """Records the instruction for its users, then stores the result of an effect; returns the
        stored one, which is another run's when that run stored first. `key` is the instruction id
        as its caller's own (keys.scoped), `digest` the request's (digest_of).

        The record comes first because it is idempotent (keyed by the instruction id) while the
        ledger entry is what marks the instruction done: a crash between them repeats the record
        harmlessly instead of losing it.

        A result that says "try again" (a unit, its database or the provider unavailable, a
        deadline passed) is neither recorded nor stored: it is the outcome of this attempt, not of
        the instruction, so the same instruction sent again runs again (its unit calls carry
        request ids, so whatever the failed attempt applied is not applied twice).
        """
        if result.status.code in RETRYABLE_CODES:
            return result
        await record_instruction(self._units, instruction, result, key)
        if not kept(instruction):
            return result
        serialized = result.SerializeToString()
        stored, stored_digest = await self._units.ledger.put(key or result.instruction_id, serialized, digest)
        if digest and stored_digest and stored_digest != digest:
            return conflict(instruction)
        return result if stored == serialized else Result.FromString(stored)
