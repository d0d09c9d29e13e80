"""The chat unit's gateway: its calls with their deadline, and the context reads and turn appends
of generations joined across instructions into batch calls."""

from __future__ import annotations

import grpc

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from services.common.batching import Batcher
from services.orchestrator.units.deadlined import DeadlinedStub


class ChatGateway(DeadlinedStub):
    """ChatService's methods (each with the unit-call deadline), plus joined forms of
    ListRecentMessages and AppendMessages. Each joined call answers exactly as its single form
    would, errors included: an entry that fails in a batch is asked again alone, so the caller
    gets the unit's own status (rare: unknown chats, non-members)."""

    def __init__(self, stub):
        super().__init__(stub)
        self._contexts: Batcher[chat_pb2.ListRecentMessagesRequest, list[chat_pb2.Message] | None] = Batcher(
            self._batch_recent_messages)
        self._turns: Batcher[chat_pb2.AppendMessagesRequest, list[chat_pb2.Message] | None] = Batcher(
            self._batch_append_messages, weigh=lambda request: request.ByteSize())

    async def recent_messages(self, request: chat_pb2.ListRecentMessagesRequest) -> list[chat_pb2.Message]:
        """What ListRecentMessages answers to `request`: the messages, or the chat unit's error."""
        messages = await self._contexts.call(request)
        if messages is None:
            return list((await self.ListRecentMessages(request)).messages)
        return messages

    async def _batch_recent_messages(self, requests: list[chat_pb2.ListRecentMessagesRequest]) -> list:
        try:
            response = await self.BatchListRecentMessages(chat_pb2.BatchListRecentMessagesRequest(requests=requests))
        except grpc.aio.AioRpcError as error:
            # Long chats whose contexts together outgrow a message: each caller asks alone.
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or len(requests) == 1:
                raise
            return [None] * len(requests)
        return [None if result.HasField("failure") else list(result.messages) for result in response.results]

    async def append_messages(self, request: chat_pb2.AppendMessagesRequest) -> list[chat_pb2.Message]:
        """What AppendMessages answers to `request`: the stored messages, or the chat unit's error."""
        messages = await self._turns.call(request)
        if messages is None:
            # A failed entry left nothing behind, so asking alone is safe and gives the unit's status.
            return list((await self.AppendMessages(request)).messages)
        return messages

    async def _batch_append_messages(self, requests: list[chat_pb2.AppendMessagesRequest]) -> list:
        response = await self.BatchAppendMessages(chat_pb2.BatchAppendMessagesRequest(requests=requests))
        return [None if result.HasField("failure") else list(result.messages) for result in response.results]
