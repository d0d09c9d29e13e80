"""Client and AsyncClient against a real suite: typed instructions in, Results out, one exception."""

import time

import grpc
import pytest

from llmchatlinker.client import AsyncClient, Client, LLMChatLinkerError
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

MISSING_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def client(suite):
    with Client(suite.orchestrator) as client:
        yield client


@pytest.fixture
def conversation(client, unique, llm_server):
    """(user_id, chat_id, llm_id) of a chat whose model is the stand-in LLM."""
    user = client.submit(pb.UserCreate(username=unique("typed"))).user
    chat = client.submit(pb.ChatCreate(title="typed", user_ids=[user.user_id])).chat.chat
    provider = client.submit(pb.LlmProviderAdd(name=unique("typed"), api_endpoint=llm_server.openai_url)).provider
    llm = client.submit(pb.LlmAdd(provider_id=provider.provider_id, llm_name="echo")).llm
    return user.user_id, chat.chat_id, llm.llm_id


def test_submit_returns_the_final_result(client, unique):
    username = unique("typed")
    result = client.submit(pb.Instruction(user_create=pb.UserCreate(username=username, profile="p")))
    assert result.final and result.status.code == 0
    assert result.instruction_type == pb.INSTRUCTION_TYPE_USER_CREATE
    assert result.user.username == username and result.user.profile == "p"


def test_submit_keeps_the_callers_instruction_id(client, unique):
    instruction = pb.Instruction(instruction_id=unique("id"), user_create=pb.UserCreate(username=unique("typed")))
    assert client.submit(instruction).instruction_id == instruction.instruction_id


def test_a_repeated_instruction_id_is_answered_without_applying_it_twice(client, unique):
    instruction = pb.Instruction(instruction_id=unique("id"), user_create=pb.UserCreate(username=unique("typed")))
    first = client.submit(instruction)
    again = client.submit(instruction)  # a second create of the same name would be ALREADY_EXISTS
    assert again.user.user_id == first.user.user_id


def test_a_not_found_result_raises_with_code_and_reason(client):
    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(pb.UserGet(user_id=MISSING_ID))
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.reason.endswith("NOT_FOUND")
    assert raised.value.message


def test_an_invalid_argument_result_raises(client):
    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(pb.UserCreate(username="!"))
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_stream_yields_accepted_then_deltas_then_the_final_result(client, conversation):
    user_id, chat_id, llm_id = conversation
    results = list(client.stream(pb.LlmResponseGenerate(user_id=user_id, chat_id=chat_id, llm_id=llm_id,
                                                        user_input="alpha beta gamma")))
    assert results[0].WhichOneof("payload") == "accepted" and results[0].sequence == 0
    assert [r.sequence for r in results] == list(range(len(results)))
    deltas = [r.delta.content for r in results if r.WhichOneof("payload") == "delta"]
    final = results[-1]
    assert final.final and not any(r.final for r in results[:-1])
    assert "".join(deltas) == final.llm_response.message.content == "echo: alpha beta gamma"


def test_stream_raises_for_a_non_ok_final_result(client):
    with pytest.raises(LLMChatLinkerError) as raised:
        list(client.stream(pb.ChatLoad(chat_id=MISSING_ID)))
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_an_unreachable_suite_raises_the_same_exception():
    with Client("127.0.0.1:1", timeout=2) as client:
        with pytest.raises(LLMChatLinkerError) as raised:
            client.submit(pb.UserList())
    assert raised.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_the_address_comes_from_the_environment(suite, monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_ORCHESTRATOR_ADDR", suite.orchestrator)
    with Client() as client:
        assert client.address == suite.orchestrator
        assert client.submit(pb.UserList()).WhichOneof("payload") == "users"


def test_a_message_that_is_no_instruction_is_refused(client):
    with pytest.raises(TypeError):
        client.submit(pb.Status())


async def test_async_client_submits_and_streams(suite, conversation):
    user_id, chat_id, llm_id = conversation
    async with AsyncClient(suite.orchestrator) as client:
        listed = await client.submit(pb.ChatListByUser(user_id=user_id))
        assert [chat.chat_id for chat in listed.chats.chats] == [chat_id]

        results = [result async for result in client.stream(
            pb.LlmResponseGenerate(user_id=user_id, chat_id=chat_id, llm_id=llm_id, user_input="async words"))]
    assert results[0].WhichOneof("payload") == "accepted"
    deltas = "".join(r.delta.content for r in results if r.WhichOneof("payload") == "delta")
    assert deltas == results[-1].llm_response.message.content == "echo: async words"


async def test_async_client_raises_on_not_found(suite):
    async with AsyncClient(suite.orchestrator) as client:
        with pytest.raises(LLMChatLinkerError) as raised:
            await client.submit(pb.LlmDelete(llm_id=MISSING_ID))
        assert raised.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(LLMChatLinkerError):
            async for _ in client.stream(pb.ChatLoad(chat_id=MISSING_ID)):
                pass


def test_leaving_a_stream_early_cancels_the_generation(client, unique, llm_server):
    user = client.submit(pb.UserCreate(username=unique("leaver"))).user
    chat = client.submit(pb.ChatCreate(title="slow", user_ids=[user.user_id])).chat.chat
    provider = client.submit(pb.LlmProviderAdd(name=unique("slow"), api_endpoint=llm_server.openai_url)).provider
    # The stand-in reads options from the model name: 50 tokens, 200 ms apart (10 s in all).
    llm = client.submit(pb.LlmAdd(provider_id=provider.provider_id, llm_name="slow@tokens=50,interval_ms=200")).llm
    disconnected_before = llm_server.server.stats.client_disconnected

    for result in client.stream(pb.LlmResponseGenerate(user_id=user.user_id, chat_id=chat.chat_id,
                                                       llm_id=llm.llm_id, user_input="go")):
        if result.WhichOneof("payload") == "delta":
            break

    deadline = time.monotonic() + 5
    while llm_server.server.stats.client_disconnected == disconnected_before:
        assert time.monotonic() < deadline, "the provider call went on after the client left"
        time.sleep(0.05)
    history = client.submit(pb.ChatLoad(chat_id=chat.chat_id)).chat.messages
    assert list(history) == []  # nothing stored for a cancelled generation
