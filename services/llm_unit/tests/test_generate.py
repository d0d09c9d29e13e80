"""GenerateReply against stand-in providers over real HTTP (SQLite only)."""

import asyncio

import grpc
from aiohttp import web

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from testkit.llm_unit import HELLO, OLLAMA, SECRET, add_llm, add_model, expect_error, fake_provider, generate, kit_json

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_openai_reply_streams_deltas_then_the_whole_text_with_usage(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url)

    deltas, final = await generate(sqlite_unit.stub, llm.llm_id)

    assert deltas == ["echo: ", "hello ", "big ", "world"]
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

    assert deltas == [f"t{i} " for i in range(6)]
    assert final.content == "".join(deltas)
    assert final.finish_reason == "stop"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (5, 6)
    [seen] = await kit_json(provider_server, "/_testkit/requests")
    assert seen["path"] == "/api/chat" and seen["stream"] is True


async def test_paced_stream_arrives_as_many_deltas(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@tokens=20,interval_ms=5")

    deltas, final = await generate(sqlite_unit.stub, llm.llm_id)

    assert deltas == [f"t{i} " for i in range(20)]
    assert final.content == "".join(deltas)


async def test_openai_json_answer_is_accepted_as_one_delta(sqlite_unit):
    completion = {"id": "c1", "object": "chat.completion",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"},
                               "finish_reason": "length"}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}

    async def answer(request):
        return web.json_response(completion)

    async with fake_provider(answer) as url:
        llm = await add_model(sqlite_unit.stub, url)
        deltas, final = await generate(sqlite_unit.stub, llm.llm_id)

    assert deltas == ["whole answer"]
    assert (final.content, final.finish_reason) == ("whole answer", "length")
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (3, 2)


async def test_sse_comments_crlf_and_split_chunks_are_understood(sqlite_unit):
    async def answer(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        for piece in (b": keep-alive\r\n\r\ndata:{\"choices\":[{\"delta\":{\"content\":\"Hel", b"lo\"}}]}\r\n\r\n",
                      b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", b"data: [DONE]\n\n"):
            await response.write(piece)
        await response.write_eof()
        return response

    async with fake_provider(answer) as url:
        llm = await add_model(sqlite_unit.stub, url)
        deltas, final = await generate(sqlite_unit.stub, llm.llm_id)

    assert deltas == ["Hello"]
    assert (final.content, final.finish_reason, final.usage.prompt_tokens) == ("Hello", "stop", 0)


async def test_generation_of_a_missing_or_deleted_model_is_not_found(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url)
    await sqlite_unit.stub.DeleteLlm(pb.DeleteLlmRequest(llm_id=llm.llm_id))

    await expect_error(generate(sqlite_unit.stub, llm.llm_id), grpc.StatusCode.NOT_FOUND, "LLM_NOT_FOUND")
    await expect_error(generate(sqlite_unit.stub, "no-such-llm"), grpc.StatusCode.NOT_FOUND, "LLM_NOT_FOUND")


async def test_generation_of_a_deleted_providers_model_is_not_found(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url)
    await sqlite_unit.stub.DeleteProvider(pb.DeleteProviderRequest(provider_id=llm.provider_id))

    await expect_error(generate(sqlite_unit.stub, llm.llm_id), grpc.StatusCode.NOT_FOUND, "LLM_NOT_FOUND")


async def test_provider_id_must_be_the_models_own(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url)
    other = await add_model(sqlite_unit.stub, provider_server.openai_url, name="other")

    _, final = await generate(sqlite_unit.stub, llm.llm_id, provider_id=llm.provider_id)
    assert final.content
    await expect_error(generate(sqlite_unit.stub, llm.llm_id, provider_id=other.provider_id),
                       INVALID, "PROVIDER_MISMATCH")


async def test_generation_rejects_a_bad_conversation_or_timeout(sqlite_unit, provider_server):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url)

    await expect_error(generate(sqlite_unit.stub, llm.llm_id, messages=[]), INVALID, "INVALID_MESSAGES")
    await expect_error(generate(sqlite_unit.stub, llm.llm_id, messages=[pb.ConversationMessage(role="robot")]),
                       INVALID, "INVALID_MESSAGES")
    await expect_error(generate(sqlite_unit.stub, llm.llm_id, timeout_ms=-1), INVALID, "INVALID_TIMEOUT")
    await expect_error(generate(sqlite_unit.stub, ""), INVALID, "MISSING_ID")
    assert await kit_json(provider_server, "/_testkit/requests") == []


async def test_one_model_of_a_provider_is_asked_by_its_own_name(sqlite_unit, provider_server):
    first = await add_model(sqlite_unit.stub, provider_server.openai_url, model="alpha")
    second = await add_llm(sqlite_unit.stub, first.provider_id, "beta")

    await generate(sqlite_unit.stub, second.llm_id, messages=HELLO[1:])

    [seen] = await kit_json(provider_server, "/_testkit/requests")
    assert seen["model"] == "beta" and len(seen["messages"]) == 1


async def test_sequential_generations_reuse_one_provider_connection(sqlite_unit):
    client_ports = []

    async def answer(request):
        client_ports.append(request.transport.get_extra_info("peername")[1])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)  # chunked, like a real streaming provider
        await response.write(b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n')
        await response.write(b"data: [DONE]\n\n")
        await asyncio.sleep(0.01)  # the body's end trails the end marker
        await response.write_eof()
        return response

    async with fake_provider(answer) as url:
        llm = await add_model(sqlite_unit.stub, url)
        for _ in range(5):
            assert (await generate(sqlite_unit.stub, llm.llm_id))[1].content == "hi"

    assert len(client_ports) == 5 and len(set(client_ports)) == 1
