"""LLM_RESPONSE_GENERATE and _REGENERATE against the real units and the stand-in provider."""

import asyncio

import grpc
import pytest

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb

OK = grpc.StatusCode.OK.value[0]


async def _setup(units, model: str = "stand-in", **limits):
    ada = await units.user("ada")
    chat_id = await units.chat(ada)
    provider_id, llm_id = await units.model(model, **limits)
    return ada, chat_id, provider_id, llm_id


async def _messages(units, chat_id: str) -> list[tuple[str, int]]:
    loaded = await units.ok("CHAT_LOAD", chat_id=chat_id)
    return [(message.content, message.role) for message in loaded.chat.messages]


def _sent(units) -> list[tuple[str, str]]:
    """What the stand-in provider received last: (role, content) pairs."""
    return [(message["role"], message["content"]) for message in units.provider.requests[-1]["messages"]]


async def test_generate_streams_deltas_then_stores_the_turn(units):
    # Tokens 20 ms apart: each arrives alone, so each is relayed alone (a burst would go as one).
    ada, chat_id, provider_id, llm_id = await _setup(units, "stand-in@interval_ms=20")
    result = await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, provider_id=provider_id,
                            llm_id=llm_id, user_input="Which river is longest?")
    reply = result.llm_response.message
    assert (reply.content, reply.role, reply.user_id, reply.llm_id, reply.chat_id) == (
        "echo: Which river is longest?", chat_pb2.MESSAGE_ROLE_ASSISTANT, ada, llm_id, chat_id)
    assert result.final and result.instruction_type == pb.INSTRUCTION_TYPE_LLM_RESPONSE_GENERATE

    assert len(units.events) > 1  # the reply came in pieces, before the final result
    assert all(not event.final and event.WhichOneof("payload") == "delta" for event in units.events)
    assert all(event.status.code == OK and event.instruction_id == result.instruction_id for event in units.events)
    assert "".join(event.delta.content for event in units.events) == reply.content

    assert await _messages(units, chat_id) == [
        ("Which river is longest?", chat_pb2.MESSAGE_ROLE_USER), (reply.content, chat_pb2.MESSAGE_ROLE_ASSISTANT)]
    assert _sent(units) == [("user", "Which river is longest?")]


async def test_generate_sends_the_recent_history_within_the_model_limits(units):
    ada, chat_id, _, llm_id = await _setup(units, context_max_messages=3)
    for text in ("one", "two"):
        await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input=text)
    await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="three")
    # Three messages in all: the two newest of the history, then the new input.
    assert _sent(units) == [("user", "two"), ("assistant", "echo: two"), ("user", "three")]


async def test_a_model_limited_to_one_message_gets_only_the_input(units):
    ada, chat_id, _, llm_id = await _setup(units, context_max_messages=1)
    await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="one")
    await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="two")
    assert _sent(units) == [("user", "two")]


async def test_a_non_member_may_not_generate(units):
    ada, chat_id, _, llm_id = await _setup(units)
    bob = await units.user("bob")
    result = await units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": bob, "chat_id": chat_id, "provider_id": None, "llm_id": llm_id, "user_input": "hi"}})
    assert result.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert (result.status.reason, result.status.domain) == ("NOT_A_CHAT_MEMBER", "chat.llmchatlinker.dev")
    assert "GenerateReply" not in units.calls and await _messages(units, chat_id) == []


async def test_a_deleted_member_may_not_generate(units):
    ada, chat_id, _, llm_id = await _setup(units)
    await units.ok("USER_DELETE", user_id=ada)
    result = await units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": chat_id, "llm_id": llm_id, "user_input": "hi"}})
    assert result.status.code == grpc.StatusCode.NOT_FOUND.value[0] and result.status.reason == "USER_NOT_FOUND"


async def test_unknown_chat_and_model_keep_their_not_found(units):
    ada, chat_id, _, llm_id = await _setup(units)
    no_chat = await units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": "no-such-chat", "llm_id": "no-such-llm", "user_input": "hi"}})
    assert no_chat.status.code == grpc.StatusCode.NOT_FOUND.value[0] and no_chat.status.reason == "CHAT_NOT_FOUND"
    no_llm = await units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": chat_id, "llm_id": "no-such-llm", "user_input": "hi"}})
    assert no_llm.status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert no_llm.status.domain == "llm.llmchatlinker.dev"


async def test_a_provider_that_does_not_serve_the_model_is_refused(units):
    ada, chat_id, _, llm_id = await _setup(units)
    other_provider, _ = await units.model("other")
    result = await units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": chat_id, "provider_id": other_provider, "llm_id": llm_id, "user_input": "hi"}})
    assert result.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert result.status.reason == "LLM_PROVIDER_MISMATCH"
    assert "GenerateReply" not in units.calls


@pytest.mark.parametrize("user_input", ["", "   ", "\n\t "])
async def test_empty_or_blank_input_is_refused_before_the_model_is_asked(units, user_input):
    ada, chat_id, _, llm_id = await _setup(units)
    result = await units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": chat_id, "llm_id": llm_id, "user_input": user_input}})
    assert result.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert result.status.reason == "INVALID_FIELD"
    assert "GenerateReply" not in units.calls


async def test_provider_failure_is_unavailable_and_stores_nothing(units):
    ada, chat_id, _, llm_id = await _setup(units, model="flaky@fail=500")
    before = await _messages(units, chat_id)
    result = await units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": chat_id, "llm_id": llm_id, "user_input": "hi"}})
    assert result.final and result.status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert result.status.domain == "llm.llmchatlinker.dev" and result.status.message
    assert result.WhichOneof("payload") is None
    assert units.calls.count("GenerateReply") == 1  # a failing provider is not asked again by the channel
    assert "AppendMessages" not in units.calls
    assert await _messages(units, chat_id) == before


async def test_the_same_generation_executed_twice_stores_one_turn(units):
    ada, chat_id, _, llm_id = await _setup(units)
    body = {"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": chat_id, "llm_id": llm_id, "user_input": "once"}}
    first = await units.run(body, instruction_id="generate-1")
    second = await units.run(body, instruction_id="generate-1")
    assert first.llm_response.message.message_id == second.llm_response.message.message_id
    assert len(await _messages(units, chat_id)) == 2


async def test_a_failing_progress_listener_does_not_fail_the_generation(units):
    ada, chat_id, _, llm_id = await _setup(units)

    async def broken(event):
        raise ConnectionError("listener gone")

    instruction = pb.Instruction(instruction_id="g", llm_response_generate=pb.LlmResponseGenerate(
        user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="still here"))
    result = await units.control.execute(instruction, broken)
    assert result.status.code == OK and result.llm_response.message.content == "echo: still here"


async def test_cancelling_a_generation_stops_the_provider_and_stores_nothing(units):
    ada, chat_id, _, llm_id = await _setup(units, model="slow@tokens=200,interval_ms=20")
    task = asyncio.create_task(units.run({"type": "LLM_RESPONSE_GENERATE", "data": {
        "user_id": ada, "chat_id": chat_id, "llm_id": llm_id, "user_input": "long story"}}))
    for _ in range(500):
        if units.events:
            break
        await asyncio.sleep(0.01)
    assert units.events, "no delta arrived"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(500):
        if units.provider.stats.client_disconnected:
            break
        await asyncio.sleep(0.01)
    assert units.provider.stats.client_disconnected == 1
    assert "AppendMessages" not in units.calls
    assert await _messages(units, chat_id) == []


async def test_regenerate_answers_the_history_before_the_message_again(units):
    ada, chat_id, _, llm_id = await _setup(units)
    await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="one")
    answered = await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="two")
    _, other_llm = await units.model("other")

    again = await units.ok("LLM_RESPONSE_REGENERATE", message_id=answered.llm_response.message.message_id,
                           llm_id=other_llm)
    message = again.llm_response.message
    assert (message.content, message.role, message.llm_id, message.user_id) == (
        "echo: two", chat_pb2.MESSAGE_ROLE_ASSISTANT, other_llm, ada)
    assert units.events and "".join(event.delta.content for event in units.events) == "echo: two"
    assert _sent(units) == [("user", "one"), ("assistant", "echo: one"), ("user", "two")]
    assert units.provider.requests[-1]["model"] == "other"
    assert [content for content, _ in await _messages(units, chat_id)] == [
        "one", "echo: one", "two", "echo: two", "echo: two"]

    by_same_model = await units.ok("LLM_RESPONSE_REGENERATE", message_id=answered.llm_response.message.message_id)
    assert by_same_model.llm_response.message.llm_id == llm_id


async def test_regenerate_needs_a_model_and_something_to_answer(units):
    ada, chat_id, _, llm_id = await _setup(units)
    await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="one")
    first = (await units.ok("CHAT_LOAD", chat_id=chat_id)).chat.messages[0]  # the user's message

    no_model = await units.run({"type": "LLM_RESPONSE_REGENERATE", "data": {"message_id": first.message_id}})
    assert no_model.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert no_model.status.reason == "LLM_ID_REQUIRED"
    nothing = await units.run({"type": "LLM_RESPONSE_REGENERATE", "data": {
        "message_id": first.message_id, "llm_id": llm_id}})
    assert nothing.status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert nothing.status.reason == "NOTHING_TO_REGENERATE"
    unknown = await units.run({"type": "LLM_RESPONSE_REGENERATE", "data": {"message_id": "no-such-message"}})
    assert unknown.status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert unknown.status.domain == "chat.llmchatlinker.dev"


async def test_regenerate_by_a_named_user_requires_membership(units):
    ada, chat_id, _, llm_id = await _setup(units)
    answered = await units.ok("LLM_RESPONSE_GENERATE", user_id=ada, chat_id=chat_id, llm_id=llm_id, user_input="one")
    message_id = answered.llm_response.message.message_id
    outsider = await units.user("eve")

    refused = await units.run({"type": "LLM_RESPONSE_REGENERATE", "data": {
        "message_id": message_id, "user_id": outsider}})
    assert refused.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert refused.status.reason == "NOT_A_CHAT_MEMBER"
    assert [content for content, _ in await _messages(units, chat_id)] == ["one", "echo: one"]

    again = await units.ok("LLM_RESPONSE_REGENERATE", message_id=message_id, user_id=ada)
    assert again.llm_response.message.user_id == ada
