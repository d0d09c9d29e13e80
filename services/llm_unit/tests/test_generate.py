"""GenerateReply against stand-in providers over real HTTP (SQLite only)."""

import asyncio
import random

import grpc
from aiohttp import web

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from testkit.llm_unit import (
    HELLO, OLLAMA, SECRET, add_llm, add_model, assert_whole_tokens, expect_error, fake_provider, generate, kit_json,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_openai_reply_streams_deltas_then_the_whole_text_with_usage(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url)

    deltas, final = await generate(sqlite_unit.stub, llm.llm_id)

    assert_whole_tokens(deltas, ["echo: ", "hello ", "big ", "world"])
    assert final.content == "".join(deltas) == "echo: hello big world"
    assert final.finish_reason == "stop"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (5, 4)


async def test_openai_request_carries_model_conversation_and_streaming(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="gpt-x")

    await generate(sqlite_unit.stub, llm.llm_id)

    [seen] = await kit_json(provider_server, "/_testkit/requests")
    assert seen["model"] == "gpt-x" and seen["stream"] is True
    assert seen["messages"] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "hello big world"}]
    assert seen["authorization"] is None


async def test_provider_sees_the_bearer_key(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model=f"m@require_key={SECRET}",
                          api_key=SECRET)

    _, final = await generate(sqlite_unit.stub, llm.llm_id)

    assert final.content == "echo: hello big world"
    [seen] = await kit_json(provider_server, "/_testkit/requests")
    assert seen["authorization"] == f"Bearer {SECRET}"


async def test_ollama_reply_streams_deltas_then_final_with_counts(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.ollama_url, kind=OLLAMA, model="llama@tokens=6")

    deltas, final = await generate(sqlite_unit.stub, llm.llm_id)

    assert_whole_tokens(deltas, [f"t{i} " for i in range(6)])
    assert final.content == "".join(deltas)
    assert final.finish_reason == "stop"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (5, 6)
    [seen] = await kit_json(provider_server, "/_testkit/requests")
    assert seen["path"] == "/api/chat" and seen["stream"] is True


async def test_paced_stream_arrives_as_many_deltas(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@tokens=20,interval_ms=20")

    deltas, final = await generate(sqlite_unit.stub, llm.llm_id)

    assert_whole_tokens(deltas, [f"t{i} " for i in range(20)])
    assert len(deltas) > 10  # tokens 20 ms apart mostly go alone; a busy moment may join a few
    assert final.content == "".join(deltas)


async def test_a_burst_goes_as_fewer_deltas_and_a_slow_reader_loses_nothing(sqlite_unit, provider_server):
    """Tokens that come together (one network read) go as one delta; a reader that takes its time
    gets every token, in order."""
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@tokens=400")

    deltas = []
    async for event in sqlite_unit.stub.GenerateReply(pb.GenerateReplyRequest(
            llm_id=llm.llm_id, messages=[pb.ConversationMessage(role="user", content="go")]), timeout=30):
        if event.WhichOneof("event") == "delta":
            deltas.append(event.delta.content)
            await asyncio.sleep(0.002 * random.random())

    assert_whole_tokens(deltas, [f"t{i} " for i in range(400)])
    assert len(deltas) < 400

