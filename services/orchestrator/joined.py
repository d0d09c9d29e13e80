"""The unit calls every generation makes, joined across the instructions in flight.

An LLM generation needs its user (alive?), its model (which provider, what context limits) and
its chat's recent messages (with the membership check) before the provider is asked, and stores
its turn after. Under many generations at once these would be four unit calls each; here users,
contexts and turns ride in shared batch calls, and a model is read once per MODEL_TTL_S.
"""

from __future__ import annotations

import time

import grpc

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from services.common.readcache import ReadCache
from services.orchestrator import record
from services.orchestrator.batching import Batcher
from services.orchestrator.channels import UNARY_DEADLINE_S, UnitChannels
from services.orchestrator.control_run import get_user, require

# Seconds a model read from the LLM unit is used without reading it again, by default (the
# setting LLMCHATLINKER_MODEL_CACHE_TTL_MS). A model changed or deleted through this orchestrator
# is read afresh by the next instruction; through another replica, it is seen within this many
# seconds (the LLM unit checks the model again itself before it calls the provider).
MODEL_TTL_S = 2.0
# Models kept at most; past it the oldest go.
MODEL_ENTRIES = 1_000


class JoinedCalls:
    """One per orchestrator process, shared by every instruction in flight. Each batched call
    answers exactly as its single form would, errors included: an entry that fails in a batch
    is asked again alone, so the caller gets the unit's own status (rare: unknown ids, refusals)."""

    def __init__(self, channels: UnitChannels, model_ttl_s: float = MODEL_TTL_S, clock=time.monotonic):
        self._channels = channels
        self._users: Batcher[str, user_pb2.User | None] = Batcher(self._live_users)
        self._contexts: Batcher[chat_pb2.ListRecentMessagesRequest, list[chat_pb2.Message] | None] = Batcher(
            self._recent_messages)
        self._turns: Batcher[chat_pb2.AppendMessagesRequest, list[chat_pb2.Message] | None] = Batcher(
            self._append_messages, weigh=lambda request: request.ByteSize())
        self.models = ModelCatalog(channels, model_ttl_s, clock)

    async def recent_messages(self, request: chat_pb2.ListRecentMessagesRequest) -> list[chat_pb2.Message]:
        """What ListRecentMessages answers to `request`: the messages, or the chat unit's error."""
        messages = await self._contexts.call(request)
        if messages is None:
            # Rare (unknown chat, not a member): asked alone, the unit answers with its own status.
            return list((await self._channels.chats.ListRecentMessages(request, timeout=UNARY_DEADLINE_S)).messages)
        return messages

    async def _recent_messages(self, requests: list[chat_pb2.ListRecentMessagesRequest]) -> list:
        try:
            response = await self._channels.chats.BatchListRecentMessages(
                chat_pb2.BatchListRecentMessagesRequest(requests=requests), timeout=UNARY_DEADLINE_S)
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
            return list((await self._channels.chats.AppendMessages(request, timeout=UNARY_DEADLINE_S)).messages)
        return messages

    async def _append_messages(self, requests: list[chat_pb2.AppendMessagesRequest]) -> list:
        response = await self._channels.chats.BatchAppendMessages(
            chat_pb2.BatchAppendMessagesRequest(requests=requests), timeout=UNARY_DEADLINE_S)
        return [None if result.HasField("failure") else list(result.messages) for result in response.results]

    async def live_user(self, user_id: str) -> user_pb2.User:
        """The user, if live; else the user unit's own error (NOT_FOUND, INVALID_ARGUMENT)."""
        user = await self._users.call(require(user_id, "user_id"))
        if user is None:
            # Rare: asked alone, the unit answers with its own code, reason and message.
            return await get_user(self._channels, user_id)
        return user

    async def _live_users(self, user_ids: list[str]) -> list[user_pb2.User | None]:
        unique = list(dict.fromkeys(user_ids))
        began = record.lookup_began()
        try:
            response = await self._channels.users.BatchGetUsers(
                user_pb2.BatchGetUsersRequest(user_ids=unique, omit_missing=True), timeout=UNARY_DEADLINE_S)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return [None] * len(user_ids)  # a malformed id among them: each caller asks alone
        record.users_read(began, unique, response.users)
        found = {user.user_id: user for user in response.users}
        return [found.get(user_id) for user_id in user_ids]


class ModelCatalog:
    """Models as the LLM unit last described them, each kept for `ttl_s`; concurrent misses of one
    model share a single GetLlm call, and a failed read is not kept."""

    def __init__(self, channels: UnitChannels, ttl_s: float, clock):
        self._channels = channels
        self._models: ReadCache[llm_pb2.Llm] = ReadCache(ttl_s, max_entries=MODEL_ENTRIES, clock=clock)

    async def get(self, llm_id: str) -> llm_pb2.Llm:
        return await self._models.get(llm_id, lambda: self._read(llm_id))

    def changed(self) -> None:
        """A model or provider was changed through this process: read every model afresh."""
        self._models.clear()

    async def _read(self, llm_id: str) -> llm_pb2.Llm:
        return (await self._channels.llms.GetLlm(llm_pb2.GetLlmRequest(llm_id=llm_id), timeout=UNARY_DEADLINE_S)).llm
