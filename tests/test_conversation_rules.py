"""Who may generate, what REGENERATE answers, and how much history a model is sent."""

import grpc
import pytest

from llmchatlinker.client import LLMChatLinkerError
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb


def sent(request: dict) -> list[tuple[str, str]]:
    """The conversation one provider request carried, as (role, content)."""
    return [(message["role"], message["content"]) for message in request["messages"]]


def test_a_non_member_cannot_generate_in_a_chat(client, provider_server, conversation, chat_messages, testkit,
                                                unique):
    chat = conversation(provider_server.openai_url)
    client.submit(chat.generate("Members only"))
    before = chat_messages(chat.chat_id)
    outsider = client.submit(pb.UserCreate(username=unique("outsider"))).user

    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(chat.generate("Let me in", user_id=outsider.user_id))

    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert raised.value.reason == "NOT_A_CHAT_MEMBER"
    assert chat_messages(chat.chat_id) == before
    assert len(testkit(provider_server, "requests")) == 1  # only the member's turn reached the provider


def test_a_non_member_on_the_legacy_path_gets_an_error_reply(legacy, provider_server, conversation, chat_messages,
                                                             unique):
    chat = conversation(provider_server.openai_url)
    outsider = legacy.call("USER_CREATE", {"username": unique("outsider")})["data"]["user"]

    reply = legacy.call("LLM_RESPONSE_GENERATE", {**chat.legacy_generate("Let me in"),
                                                  "user_id": outsider["user_id"]})

    assert (reply["status"], reply["data"]) == ("error", {})
    assert "not a member" in reply["message"]
    assert chat_messages(chat.chat_id) == []


def test_regenerate_answers_the_history_strictly_before_the_given_message(client, provider_server, conversation,
                                                                         chat_messages, testkit):
    chat = conversation(provider_server.openai_url)
    for words in ("first question", "second question", "third question"):
        client.submit(chat.generate(words))
    history = chat_messages(chat.chat_id)
    second_answer_id = history[3][2]

    regenerated = client.submit(pb.LlmResponseRegenerate(message_id=second_answer_id)).llm_response.message

    assert sent(testkit(provider_server, "requests")[-1]) == [
        ("user", "first question"), ("assistant", "echo: first question"), ("user", "second question")]
    assert regenerated.content == "echo: second question"
    assert regenerated.llm_id == chat.llm_id
    assert chat_messages(chat.chat_id) == history + [("assistant", "echo: second question", regenerated.message_id)]


def test_regenerating_the_first_message_has_nothing_to_answer(client, provider_server, conversation, chat_messages):
    chat = conversation(provider_server.openai_url)
    client.submit(chat.generate("only question"))
    history = chat_messages(chat.chat_id)

    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(pb.LlmResponseRegenerate(message_id=history[0][2], llm_id=chat.llm_id))

    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert chat_messages(chat.chat_id) == history


def test_a_model_is_sent_only_the_newest_messages_that_fit_its_context_oldest_first(
        client, provider_server, conversation, chat_messages, testkit):
    chat = conversation(provider_server.openai_url, context_max_messages=5)
    for turn in range(12):
        client.submit(chat.generate(f"question {turn}"))

    client.submit(chat.generate("question 12"))

    requests = testkit(provider_server, "requests")
    assert len(requests) == 13
    assert all(len(request["messages"]) <= 5 for request in requests)
    stored = [(role, content) for role, content, _ in chat_messages(chat.chat_id)]
    assert len(stored) == 26
    # The 24 messages before the last turn: the newest four of them, then the new input.
    assert sent(requests[-1]) == stored[20:24] + [("user", "question 12")]
    assert sent(requests[-1]) == [("user", "question 10"), ("assistant", "echo: question 10"),
                                  ("user", "question 11"), ("assistant", "echo: question 11"),
                                  ("user", "question 12")]
