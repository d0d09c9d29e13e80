"""Store: each result goes back linked to its instruction, into db_unit's ledger and to reply_to.

The ledger (RecordService.PutResults/GetResults, first writer wins) is what makes a redelivered
instruction answer from memory instead of running again. Every instruction reads it before it
runs and writes it after, so those calls are batched across the instructions in flight.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc

from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import result_to_json
from services.orchestrator import queues
from services.orchestrator.batching import Batcher
from services.orchestrator.channels import UNARY_DEADLINE_S, UnitChannels
from services.orchestrator.queues import Message
from services.orchestrator.record import record_instruction

Result = orchestrator_pb2.Result
Instruction = orchestrator_pb2.Instruction

# Status codes of a failed attempt that a retry may well get past.
RETRYABLE_CODES = frozenset(code.value[0] for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))


def instruction_id_for(instruction: Instruction, message: Message) -> str:
    """The proto instruction_id, else the AMQP message_id, else the correlation_id, else a new id."""
    for candidate in (instruction.instruction_id, message.message_id, message.correlation_id):
        if candidate:
            return queues.bounded_id(candidate)
    return str(uuid.uuid4())


def reply_body(message: Message, result: Result) -> tuple[bytes, str]:
    """The result in the request's encoding: a protobuf Result, or the legacy JSON reply."""
    if queues.is_protobuf(message.content_type):
        return result.SerializeToString(), queues.PROTOBUF
    return json.dumps(result_to_json(result)).encode(), queues.JSON


class Store:
    """The ledger on db_unit, instruction records, replies and dead letters."""

    def __init__(self, channels: UnitChannels, transport: queues.Transport):
        self._channels = channels
        self._transport = transport
        self._lookups: Batcher[str, bytes | None] = Batcher(self._get_results)
        self._puts: Batcher[db_pb2.PutResultRequest, db_pb2.PutResultResponse] = Batcher(
            self._put_results, weigh=lambda entry: len(entry.result))

    async def lookup(self, instruction_id: str) -> Result | None:
        """The stored final result of an instruction, or None when it has not finished."""
        stored = await self._lookups.call(instruction_id)
        return None if stored is None else Result.FromString(stored)

    async def keep(self, instruction: Instruction, result: Result) -> Result:
        """Records the instruction for its users, then stores the result; returns the stored one,
        which is another run's when that run stored first.

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
        await record_instruction(self._channels, instruction, result)
        answer = await self._puts.call(
            db_pb2.PutResultRequest(instruction_id=result.instruction_id, result=result.SerializeToString()))
        return Result.FromString(answer.result) if answer.already_stored else result

    async def _get_results(self, instruction_ids: list[str]) -> list[bytes | None]:
        try:
            response = await self._channels.records.GetResults(
                db_pb2.GetResultsRequest(instruction_ids=list(dict.fromkeys(instruction_ids))), timeout=UNARY_DEADLINE_S)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT or len(instruction_ids) == 1:
                raise
            # One bad entry must not fail its neighbours: each asks alone and gets its own answer.
            return await asyncio.gather(*(self._get_one(one) for one in instruction_ids), return_exceptions=True)
        found = {stored.instruction_id: stored.result for stored in response.results}
        return [found.get(instruction_id) for instruction_id in instruction_ids]

    async def _get_one(self, instruction_id: str) -> bytes | None:
        return (await self._get_results([instruction_id]))[0]

    async def _put_results(self, entries: list[db_pb2.PutResultRequest]) -> list:
        try:
            response = await self._channels.records.PutResults(
                db_pb2.PutResultsRequest(results=entries), timeout=UNARY_DEADLINE_S)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT or len(entries) == 1:
                raise
            return await asyncio.gather(*(self._put_one(entry) for entry in entries), return_exceptions=True)
        return list(response.results)

    async def _put_one(self, entry: db_pb2.PutResultRequest) -> db_pb2.PutResultResponse:
        return (await self._put_results([entry]))[0]

    async def reply(self, message: Message, result: Result) -> None:
        """Publishes the result to the request's reply_to, persistent and confirmed."""
        if not message.reply_to:
            return
        body, content_type = reply_body(message, result)
        await self._transport.publish(message.reply_to, Message(
            body=body,
            content_type=content_type,
            correlation_id=message.correlation_id,
            message_id=f"{result.instruction_id}/{result.sequence}",
        ))

    async def dead_letter(self, message: Message, failure: str, reason: str) -> None:
        """Keeps the raw message, with why it failed, on the dead-letter queue (confirmed)."""
        headers = dict(message.headers)
        headers.update({
            queues.FAILURE_HEADER: failure,
            queues.FAILURE_REASON_HEADER: reason,
            queues.ORIGIN_QUEUE_HEADER: self._transport.queue,
        })
        await self._transport.publish(queues.dead_letter_queue(self._transport.queue), Message(
            body=message.body,
            content_type=message.content_type,
            reply_to=message.reply_to,
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            headers=headers,
        ))

    async def republish(self, message: Message, deliveries: int) -> None:
        """Puts a message that was delivered and never finished back on the queue, counting it."""
        headers = dict(message.headers)
        headers[queues.DELIVERY_COUNT_HEADER] = deliveries
        await self._transport.publish(self._transport.queue, Message(
            body=message.body,
            content_type=message.content_type,
            reply_to=message.reply_to,
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            headers=headers,
        ))
