"""GenerateReply's model cache: reads it saves, and writes through the unit seen by the next generation."""

import asyncio
import time

import grpc

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.llm_unit import store
from testkit import LlmServer
from testkit.clock import Clock
from testkit.llm_unit import SECRET, add_model, expect_error, generate, kit_json, running_unit, settings_for

NOT_FOUND = grpc.StatusCode.NOT_FOUND


def sqlite_settings(tmp_path, **overrides):
    return settings_for(f"sqlite:///{tmp_path / 'unit.db'}", **overrides)


async def test_generations_within_the_ttl_read_the_model_once(sqlite_unit, provider_server, model_reads):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url)

    for _ in range(3):
        _, final = await generate(sqlite_unit.stub, llm.llm_id)
        assert final.content == "echo: hello big world"

    assert model_reads == [llm.llm_id]


async def test_the_model_is_read_again_once_the_ttl_has_passed(tmp_path, provider_server, model_reads):
    clock = Clock()
    async with running_unit(sqlite_settings(tmp_path, model_cache_ttl_ms=2_000), clock=clock) as unit:
        llm = await add_model(unit.stub, provider_server.openai_url)
        await generate(unit.stub, llm.llm_id)
        clock.now += 1.9
        await generate(unit.stub, llm.llm_id)
        assert len(model_reads) == 1

        clock.now += 0.1
        await generate(unit.stub, llm.llm_id)

    assert len(model_reads) == 2


async def test_a_ttl_of_zero_reads_the_model_for_every_generation(tmp_path, provider_server, model_reads):
    async with running_unit(sqlite_settings(tmp_path, model_cache_ttl_ms=0)) as unit:
        llm = await add_model(unit.stub, provider_server.openai_url)
        for _ in range(3):
            await generate(unit.stub, llm.llm_id)

    assert len(model_reads) == 3


async def test_concurrent_generations_of_an_unread_model_share_one_read(sqlite_unit, provider_server, model_reads,
                                                                        monkeypatch):
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url)
    counted = store.get_llm

    def slow(connection, llm_id):
        time.sleep(0.3)  # every generation arrives while the first read is still running
        return counted(connection, llm_id)

    monkeypatch.setattr(store, "get_llm", slow)

    results = await asyncio.gather(*(generate(sqlite_unit.stub, llm.llm_id) for _ in range(32)))

    assert all(final.content == "echo: hello big world" for _, final in results)
    assert model_reads == [llm.llm_id]


async def test_an_unknown_model_is_not_found_every_time_and_never_kept(sqlite_unit, model_reads):
    for _ in range(2):
        await expect_error(generate(sqlite_unit.stub, "no-such-llm"), NOT_FOUND, "LLM_NOT_FOUND")

    assert model_reads == ["no-such-llm"] * 2


async def test_a_deleted_model_is_not_found_by_the_next_generation(unit, provider_server):
    llm = await add_model(unit.stub, provider_server.openai_url)
    await generate(unit.stub, llm.llm_id)

    await unit.stub.DeleteLlm(pb.DeleteLlmRequest(llm_id=llm.llm_id))

    await expect_error(generate(unit.stub, llm.llm_id), NOT_FOUND, "LLM_NOT_FOUND")


async def test_a_deleted_providers_model_is_not_found_by_the_next_generation(unit, provider_server):
    llm = await add_model(unit.stub, provider_server.openai_url)
    await generate(unit.stub, llm.llm_id)

    await unit.stub.DeleteProvider(pb.DeleteProviderRequest(provider_id=llm.provider_id))

    await expect_error(generate(unit.stub, llm.llm_id), NOT_FOUND, "LLM_NOT_FOUND")


async def test_a_new_endpoint_and_key_are_used_by_the_next_generation(unit, provider_server):
    llm = await add_model(unit.stub, provider_server.openai_url, api_key=SECRET)
    await generate(unit.stub, llm.llm_id)

    async with LlmServer() as moved:
        await unit.stub.UpdateProvider(pb.UpdateProviderRequest(
            provider_id=llm.provider_id, api_endpoint=moved.openai_url, api_key=SECRET + "2"))
        _, final = await generate(unit.stub, llm.llm_id)
        [seen] = await kit_json(moved, "/_testkit/requests")

    assert final.content == "echo: hello big world"
    assert seen["authorization"] == f"Bearer {SECRET}2"
    assert len(await kit_json(provider_server, "/_testkit/requests")) == 1


async def test_a_renamed_model_is_asked_for_by_its_new_name(unit, provider_server):
    llm = await add_model(unit.stub, provider_server.openai_url, model="before")
    await generate(unit.stub, llm.llm_id)

    await unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, name="after"))
    await generate(unit.stub, llm.llm_id)

    assert [seen["model"] for seen in await kit_json(provider_server, "/_testkit/requests")] == ["before", "after"]
