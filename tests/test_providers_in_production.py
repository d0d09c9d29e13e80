"""Retries, Retry-After, fallbacks, the circuit breaker and the concurrency bound through the whole
suite, with the stand-in provider's failure modes, as the README's "Providers in production" shows."""

import threading
import time

import grpc
import pytest

from llmchatlinker.client import LLMChatLinkerError
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from testkit.ports import closed_port


def add_model(client, unique, endpoint: str, model: str, **provider_fields) -> llm_pb2.Llm:
    provider = client.submit(pb.LlmProviderAdd(name=unique("provider"), api_endpoint=endpoint,
                                               **provider_fields)).provider
    return client.submit(pb.LlmAdd(provider_id=provider.provider_id, llm_name=model)).llm


def test_a_provider_failing_before_the_first_token_is_asked_again_and_the_reply_stored(
        client, provider_server, conversation, chat_messages, testkit):
    chat = conversation(provider_server.openai_url, model="m@fail=500,fail_first=2")

    reply = client.submit(chat.generate("Third time lucky?")).llm_response

    assert reply.message.content == "echo: Third time lucky?"
    assert len(testkit(provider_server, "requests")) == 3
    assert [content for _, content, _ in chat_messages(chat.chat_id)] == ["Third time lucky?",
                                                                          "echo: Third time lucky?"]


def test_retry_after_is_honoured(client, provider_server, conversation):
    chat = conversation(provider_server.openai_url, model="m@fail=429,fail_first=1,retry_after=1.2")

    started = time.monotonic()
    reply = client.submit(chat.generate("Slow down")).llm_response

    assert time.monotonic() - started >= 1.2
    assert reply.message.content == "echo: Slow down"


def test_a_dead_provider_falls_back_to_another_and_the_message_records_the_model_that_answered(
        client, provider_server, conversation, chat_messages, unique):
    backup = add_model(client, unique, provider_server.openai_url, "backup")
    chat = conversation(f"http://127.0.0.1:{closed_port()}/v1/chat/completions", model="primary",
                        fallback_llm_ids=[backup.llm_id])

    reply = client.submit(chat.generate("Anyone?")).llm_response

    assert (reply.message.content, reply.message.llm_id) == ("echo: Anyone?", backup.llm_id)
    stored = client.submit(pb.ChatLoad(chat_id=chat.chat_id)).chat.messages
    assert [m.llm_id for m in stored] == ["", backup.llm_id]


def test_after_the_first_token_nothing_is_retried_nor_sent_to_the_fallback(
        client, provider_server, conversation, chat_messages, testkit, unique):
    backup = add_model(client, unique, provider_server.openai_url, "backup")
    chat = conversation(provider_server.openai_url, model="m@fail=cut,tokens=20", fallback_llm_ids=[backup.llm_id])

    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(chat.generate("Half a reply"))

    assert raised.value.reason == "PROVIDER_STREAM_CUT"
    assert [r["model"] for r in testkit(provider_server, "requests")] == ["m@fail=cut,tokens=20"]
    assert chat_messages(chat.chat_id) == []


def test_fallbacks_are_set_and_changed_with_the_legacy_json_instructions(legacy, provider_server, unique):
    provider = legacy.call("LLM_PROVIDER_ADD", {"name": unique("legacy"), "api_endpoint": provider_server.openai_url,
                                                "max_in_flight": 8})["data"]["provider"]
    backup = legacy.call("LLM_ADD", {"provider_id": provider["provider_id"], "llm_name": "backup"})["data"]["llm"]
    added = legacy.call("LLM_ADD", {"provider_id": provider["provider_id"], "llm_name": "main",
                                    "fallback_llm_ids": [backup["llm_id"]]})
    assert added["status"] == "success", added

    cleared = legacy.call("LLM_UPDATE", {"llm_id": added["data"]["llm"]["llm_id"], "fallback_llm_ids": []})
    refused = legacy.call("LLM_UPDATE", {"llm_id": added["data"]["llm"]["llm_id"], "fallback_llm_ids": ["nope"]})

    assert cleared["status"] == "success", cleared
    assert refused["status"] == "error" and "nope" in refused["message"]


def test_a_provider_that_keeps_failing_is_skipped_and_its_list_entry_says_so(client, provider_server, conversation,
                                                                             testkit):
    chat = conversation(provider_server.openai_url, model="m@fail=500")
    for _ in range(5):  # 3 tries each; the fifth failed generation in a row opens the breaker (the default)
        with pytest.raises(LLMChatLinkerError) as raised:
            client.submit(chat.generate("Again?"))
        assert raised.value.reason == "PROVIDER_ERROR"
    asked = len(testkit(provider_server, "requests"))

    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(chat.generate("And now?"))

    assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_CIRCUIT_OPEN")
    assert len(testkit(provider_server, "requests")) == asked == 15
    entry = client.submit(pb.LlmProviderList(page_size=1000)).providers.providers
    (provider,) = [p for p in entry if p.provider_id == chat.provider_id]
    assert provider.circuit_state == llm_pb2.CIRCUIT_STATE_OPEN and provider.HasField("circuit_retry_time")


def test_past_max_in_flight_a_generation_waits_and_past_max_waiting_it_is_refused(client, provider_server, unique):
    llm = add_model(client, unique, provider_server.openai_url, "m@latency_ms=1500", max_in_flight=1, max_waiting=1)
    user = client.submit(pb.UserCreate(username=unique("user"))).user
    chats = [client.submit(pb.ChatCreate(title=f"c{i}", user_ids=[user.user_id])).chat.chat for i in range(3)]

    def generate(chat) -> pb.LlmResponseGenerate:
        return pb.LlmResponseGenerate(user_id=user.user_id, chat_id=chat.chat_id, llm_id=llm.llm_id, user_input="hi")

    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, client.submit(generate(chats[i]))))
               for i in range(2)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(generate(chats[2]))
    for thread in threads:
        thread.join()

    assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_BUSY")
    assert [results[i].llm_response.message.content for i in range(2)] == ["echo: hi"] * 2
    assert time.monotonic() - started >= 3.0  # the second waited for the first


def test_usage_per_user_matches_the_tokens_the_provider_reported(client, provider_server, conversation, testkit,
                                                                 legacy):
    chat = conversation(provider_server.openai_url, model="echo@tokens=4")
    started = time.time()
    for words in ("one two", "three four five"):
        client.submit(chat.generate(words))

    summaries = client.submit(pb.UsageList(group_by=llm_pb2.USAGE_GROUPING_USER, page_size=1000)).usage.summaries
    (mine,) = [s for s in summaries if s.key == chat.user_id]
    # The stand-in counts the words of the messages it was sent, history included, and sends 4 tokens.
    sent = [sum(len(m["content"].split()) for m in r["messages"]) for r in testkit(provider_server, "requests")]
    assert (mine.generations, mine.prompt_tokens, mine.completion_tokens) == (2, sum(sent), 8)
    assert mine.estimated_generations == 0 and mine.duration_ms >= 0

    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - 1))
    reply = legacy.call("USAGE_LIST", {"group_by": "llm", "start_time": since, "page_size": 1000})
    assert reply["status"] == "success", reply
    assert {"key": chat.llm_id, "generations": 2} in [{k: u[k] for k in ("key", "generations")}
                                                      for u in reply["data"]["usage"]]


def test_a_user_over_their_rate_is_refused_before_the_provider_is_asked_and_told_when_to_try_again(
        client, provider_server, conversation, testkit):
    chat = conversation(provider_server.openai_url)
    limits = client.submit(pb.UserLimitsSet(user_id=chat.user_id, requests_per_minute=1, tokens_per_day=100_000))
    assert (limits.user_limits.requests_per_minute, limits.user_limits.tokens_per_month) == (1, 0)
    client.submit(chat.generate("first"))

    final = client.final_result(chat.generate("second"))

    assert (final.status.code, final.status.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                                                        "USER_RATE_LIMITED")
    assert "try again at" in final.status.message and final.status.metadata["retryTime"].endswith(":00Z")
    assert 0 < int(final.status.metadata["retryAfterSeconds"]) <= 60
    assert len(testkit(provider_server, "requests")) == 1
    with pytest.raises(LLMChatLinkerError) as raised:
        client.submit(pb.UserLimitsGet(user_id="no-such-user"))
    assert raised.value.reason == "USER_NOT_FOUND"
