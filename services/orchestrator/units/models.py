"""The LLM unit's gateway: its calls with their deadlines, and models kept for a short while."""

from __future__ import annotations

import time

from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from services.common.readcache import ReadCache
from services.orchestrator.units.channels import GENERATION_DEADLINE_S
from services.orchestrator.units.deadlined import DeadlinedStub

# Seconds a model read from the LLM unit is used without reading it again, by default (the
# setting LLMCHATLINKER_MODEL_CACHE_TTL_MS). A model changed or deleted through this orchestrator
# is read afresh by the next instruction; through another replica, it is seen within this many
# seconds (the LLM unit checks the model again itself before it calls the provider).
MODEL_TTL_S = 2.0
# Models kept at most; past it the oldest go.
MODEL_ENTRIES = 1_000


class ModelGateway(DeadlinedStub):
    """LlmService's methods (each with the unit-call deadline), a generation with its own deadline,
    and models as the LLM unit last described them, each kept for `ttl_s`: concurrent misses of one
    model share a single GetLlm call, and a failed read is not kept."""

    def __init__(self, stub, ttl_s: float = MODEL_TTL_S, clock=time.monotonic):
        super().__init__(stub)
        self._models: ReadCache[llm_pb2.Llm] = ReadCache(ttl_s, max_entries=MODEL_ENTRIES, clock=clock)

    async def model(self, llm_id: str) -> llm_pb2.Llm:
        return await self._models.get(llm_id, lambda: self._read(llm_id))

    def models_changed(self) -> None:
        """A model or provider was changed through this process: read every model afresh."""
        self._models.clear()

    async def _read(self, llm_id: str) -> llm_pb2.Llm:
        return (await self.GetLlm(llm_pb2.GetLlmRequest(llm_id=llm_id))).llm

    def generate_reply(self, request: llm_pb2.GenerateReplyRequest):
        """The streamed GenerateReply call, bounded by the whole-generation deadline."""
        return self._stub.GenerateReply(request, timeout=GENERATION_DEADLINE_S)
