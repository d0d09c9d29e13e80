"""The data every generation needs, made once through Submit: a user, chats, a provider, models."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

from bench import models
from bench.submit_client import SubmitClient

SETUP_CONCURRENCY = 16


def unique_name(prefix: str) -> str:
    """A valid username / provider name: lower-case letter first, then hex."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


async def bounded(coroutines, limit: int) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(coroutine):
        async with gate:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))


@dataclass
class World:
    user_id: str
    provider_id: str
    llm_ids: dict[str, str]       # stand-in model name -> llm id
    chats: list[str] = field(default_factory=list)
    speakers: dict[str, str] = field(default_factory=dict)  # chat id -> the user who speaks in it

    @classmethod
    async def build(cls, client: SubmitClient, provider_chat_url: str) -> World:
        user = await client.run(user_create=pb.UserCreate(username=unique_name("bench")))
        provider = await client.run(llm_provider_add=pb.LlmProviderAdd(
            name=unique_name("bench-"), api_endpoint=provider_chat_url))
        llm_ids = {}
        for model in models.ALL:
            llm = await client.run(llm_add=pb.LlmAdd(provider_id=provider.provider.provider_id, llm_name=model))
            llm_ids[model] = llm.llm.llm_id
        return cls(user.user.user_id, provider.provider.provider_id, llm_ids)

    async def ensure_chats(self, client: SubmitClient, count: int) -> list[str]:
        """At least `count` chats; instructions on one chat run in order, so each stream gets its own.

        Each chat has a user of its own who speaks in it (simultaneous streams come from as many
        users, as they would in use), and the world's user as a second member.
        """
        missing = count - len(self.chats)
        if missing > 0:
            made = await bounded((self._chat_of_its_own(client, i) for i in range(missing)), SETUP_CONCURRENCY)
            for chat_id, user_id in made:
                self.chats.append(chat_id)
                self.speakers[chat_id] = user_id
        return self.chats[:count]

    async def _chat_of_its_own(self, client: SubmitClient, i: int) -> tuple[str, str]:
        user = await client.run(user_create=pb.UserCreate(username=unique_name("speaker")))
        user_id = user.user.user_id
        chat = await client.run(chat_create=pb.ChatCreate(title=f"bench {i}", user_ids=[user_id, self.user_id]))
        return chat.chat.chat.chat_id, user_id
