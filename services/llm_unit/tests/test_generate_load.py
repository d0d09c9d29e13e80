"""Many generations at once: every one completes with its own reply (results, not timings)."""

import asyncio

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from testkit.llm_unit import add_llm, add_model, assert_whole_tokens, generate, kit_json


async def test_hundred_concurrent_slow_generations_all_complete(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@latency_ms=300")

    async def ask(index: int):
        return await generate(sqlite_unit.stub, llm.llm_id,
                              messages=[pb.ConversationMessage(role="user", content=f"question {index}")])

    results = await asyncio.gather(*(ask(i) for i in range(100)))

    assert [final.content for _, final in results] == [f"echo: question {i}" for i in range(100)]
    assert all(final.usage.completion_tokens == 3 for _, final in results)
    stats = await kit_json(provider_server, "/_testkit/stats")
    assert stats["completed"] == 100 and stats["client_disconnected"] == 0


async def test_concurrent_token_streams_arrive_whole_and_in_order(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.ollama_url, kind=2, model="m@tokens=50,interval_ms=2")
    openai = await add_llm(sqlite_unit.stub, (await add_model(
        sqlite_unit.stub, provider_server.openai_url, name="openai", model="x")).provider_id, "m@tokens=50,interval_ms=2")

    results = await asyncio.gather(*(generate(sqlite_unit.stub, (llm, openai)[i % 2].llm_id) for i in range(60)))

    expected = [f"t{i} " for i in range(50)]
    for deltas, final in results:
        assert_whole_tokens(deltas, expected)
        assert final.content == "".join(expected)
