"""The result ledger on db_unit (RecordService.GetResults/PutResults, first writer wins), its
lookups and stores joined across the instructions in flight: every instruction reads it before
it runs and writes it after."""

from __future__ import annotations

import asyncio

import grpc

from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from services.common.batching import Batcher
from services.orchestrator.units.deadlined import DeadlinedStub


class Ledger:
    """Stored results by instruction id, as serialized bytes with the digest of the request each
    answers (this room knows no instruction types)."""

    def __init__(self, records_stub):
        self._records = DeadlinedStub(records_stub)
        self._lookups: Batcher[str, tuple[bytes, bytes] | None] = Batcher(self._get_results)
        self._puts: Batcher[db_pb2.PutResultRequest, db_pb2.PutResultResponse] = Batcher(
            self._put_results, weigh=lambda entry: len(entry.result))

    async def lookup(self, instruction_id: str) -> tuple[bytes, bytes] | None:
        """The stored result of an instruction and its request's digest, or None when none is stored."""
        return await self._lookups.call(instruction_id)

    async def put(self, instruction_id: str, result: bytes, request_digest: bytes = b"") -> tuple[bytes, bytes]:
        """Stores `result` unless a result is already stored; returns the one stored (maybe another
        run's) and the digest stored with it."""
        answer = await self._puts.call(db_pb2.PutResultRequest(instruction_id=instruction_id, result=result,
                                                               request_digest=request_digest))
        return (answer.result, answer.request_digest) if answer.already_stored else (result, request_digest)

    async def count_delivery(self, instruction_id: str) -> int:
        """Counts one more unfinished delivery of the instruction; returns how many are counted."""
        response = await self._records.CountDelivery(db_pb2.CountDeliveryRequest(instruction_id=instruction_id))
        return response.deliveries

    async def _get_results(self, instruction_ids: list[str]) -> list[tuple[bytes, bytes] | None]:
        try:
            response = await self._records.GetResults(
                db_pb2.GetResultsRequest(instruction_ids=list(dict.fromkeys(instruction_ids))))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT or len(instruction_ids) == 1:
                raise
            # One bad entry must not fail its neighbours: each asks alone and gets its own answer.
            return await _each_alone(self._get_results, instruction_ids)
        found = {stored.instruction_id: (stored.result, stored.request_digest) for stored in response.results}
        return [found.get(instruction_id) for instruction_id in instruction_ids]

    async def _put_results(self, entries: list[db_pb2.PutResultRequest]) -> list:
        try:
            response = await self._records.PutResults(db_pb2.PutResultsRequest(results=entries))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT or len(entries) == 1:
                raise
            return await _each_alone(self._put_results, entries)
        return list(response.results)


async def _each_alone(send_batch, items: list) -> list:
    """The outcome of each item sent as a batch of one; an item's error is its outcome."""
    async def alone(item):
        return (await send_batch([item]))[0]
    return await asyncio.gather(*(alone(item) for item in items), return_exceptions=True)
