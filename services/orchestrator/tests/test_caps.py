"""The front door's caps and posture: a request's bytes, the text a result echoes, a CHAT_LOAD
page's bytes, a caller's open streams; and no authentication only on loopback."""

import asyncio
import logging

import grpc
import pytest

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services.common import config
from services.common.errors import error_info
from services.orchestrator.config import Settings
from services.orchestrator.tests.test_keys import bearer, make_key


async def final(stub, key=None, **request) -> pb.Result:
    """The final result; the call's own error (the front door refused it) is raised."""
    events = [r.result async for r in stub.Submit(pb.SubmitRequest(instruction=pb.Instruction(**request)),
                                                   metadata=bearer(key), timeout=60)]
    return events[-1]


async def test_a_request_larger_than_the_cap_is_resource_exhausted_and_others_go_on(suite, orchestrators, submit_stub):
    server = await orchestrators(suite, None, max_request_bytes=64 * 1024)
    async with submit_stub(server) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await final(stub, user_create=pb.UserCreate(username="big", profile="x" * 100_000))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(64 * 1024) in caught.value.details()
        assert (await final(stub, user_create=pb.UserCreate(username="small"))).status.code == 0


async def test_a_failure_echoes_at_most_the_capped_text(suite, orchestrators, submit_stub):
    server = await orchestrators(suite, None, max_echo_chars=300)
    async with submit_stub(server) as stub:
        result = await final(stub, user_create=pb.UserCreate(username="!" * 100_000))
    assert result.status.reason == "INVALID_USERNAME"
    assert len(result.status.message) < 400 and "LLMCHATLINKER_MAX_ECHO_CHARS" in result.status.message


async def test_a_chat_load_answers_at_most_the_capped_bytes(suite, orchestrators, submit_stub):
    server = await orchestrators(suite, None, max_chat_load_bytes=8 * 1024)
    async with submit_stub(server) as stub:
        user = (await final(stub, user_create=pb.UserCreate(username="talker"))).user.user_id
        chat = (await final(stub, chat_create=pb.ChatCreate(title="t", user_ids=[user]))).chat.chat.chat_id
        provider = (await final(stub, llm_provider_add=pb.LlmProviderAdd(
            name="p", api_endpoint=suite.provider.openai_url))).provider.provider_id
        llm = (await final(stub, llm_add=pb.LlmAdd(provider_id=provider, llm_name="stand-in"))).llm.llm_id
        for turn in range(12):
            assert (await final(stub, llm_response_generate=pb.LlmResponseGenerate(
                user_id=user, chat_id=chat, llm_id=llm, user_input=f"{turn} " + "w" * 1_000))).status.code == 0
        everything = await final(stub, chat_load=pb.ChatLoad(chat_id=chat))
        too_big = await final(stub, chat_load=pb.ChatLoad(chat_id=chat, message_page_size=24))
        fits = await final(stub, chat_load=pb.ChatLoad(chat_id=chat, message_page_size=2))

    collected = everything.chat.messages
    assert 0 < len(collected) < 24 and sum(m.ByteSize() for m in collected) <= 8 * 1024
    assert collected[-1].content != "" and everything.chat.next_message_page_token  # the newest, and a way on
    assert too_big.status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert too_big.status.reason == "PAGE_TOO_LARGE" and f"{8 * 1024:,}" in too_big.status.message
    assert fits.status.code == 0 and len(fits.chat.messages) == 2


async def test_a_caller_past_its_open_streams_is_resource_exhausted_and_other_callers_are_not(
        suite, orchestrators, submit_stub, eventually):
    server = await orchestrators(suite, None, auth="keys", max_streams_per_caller=1)
    admin, busy, other = [await make_key(suite, "admin"), await make_key(suite, "app"), await make_key(suite, "app")]
    async with submit_stub(server) as stub:
        user = (await final(stub, admin, user_create=pb.UserCreate(username="streamer"))).user.user_id
        chat = (await final(stub, admin, chat_create=pb.ChatCreate(title="t", user_ids=[user]))).chat.chat.chat_id
        provider = (await final(stub, admin, llm_provider_add=pb.LlmProviderAdd(
            name="p", api_endpoint=suite.provider.openai_url))).provider.provider_id
        llm = (await final(stub, admin, llm_add=pb.LlmAdd(
            provider_id=provider, llm_name="paced@tokens=40,interval_ms=50"))).llm.llm_id
        long_one = asyncio.ensure_future(final(stub, busy, llm_response_generate=pb.LlmResponseGenerate(
            user_id=user, chat_id=chat, llm_id=llm, user_input="go on")))
        await eventually(lambda: suite.provider.stats.in_flight > 0, what="the first stream open")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await final(stub, busy, user_list=pb.UserList())
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(caught.value).reason == "TOO_MANY_STREAMS" and "1" in caught.value.details()
        assert (await final(stub, other, user_list=pb.UserList())).status.code == 0
        assert (await long_one).status.code == 0
        assert (await final(stub, busy, user_list=pb.UserList())).status.code == 0  # its stream ended


def settings(address: str, **fields) -> Settings:
    return Settings(address=address, user_unit_addr="u:1", chat_unit_addr="c:1", llm_unit_addr="l:1",
                    db_unit_addr="d:1", **fields)


@pytest.mark.parametrize("address", ["0.0.0.0:50051", "10.1.2.3:50051", "[::]:50051"])
def test_without_authentication_the_front_door_refuses_to_listen_beyond_loopback(address):
    with pytest.raises(config.SettingError, match="LLMCHATLINKER_AUTH=keys"):
        settings(address)
    assert settings(address, auth="keys").require_key
    assert not settings("127.0.0.1:50051").require_key


async def test_a_suite_without_authentication_says_so_once_at_start(suite, orchestrators, caplog):
    with caplog.at_level(logging.WARNING):
        await orchestrators(suite, None)
    assert [r.message for r in caplog.records].count(next(
        r.message for r in caplog.records if "not authenticated" in r.message)) == 1
