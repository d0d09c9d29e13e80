"""Token deltas as the user sees them: through Submit they arrive while the provider is still
writing; leaving the stream hangs up on the provider; the legacy AMQP caller gets one final reply."""

import time

SLOW_STREAM = "writer@tokens=40,interval_ms=75"  # 3 s of writing
WHOLE_TEXT = "".join(f"t{i} " for i in range(40))


def eventually(predicate, what: str, timeout: float = 30):
    """Polls `predicate` until it returns something truthy, and returns that; bounded."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)
    return value


def test_the_first_delta_reaches_the_caller_while_the_provider_is_still_generating(
        client, provider_server, conversation, testkit):
    chat = conversation(provider_server.openai_url, model=SLOW_STREAM)
    deltas, stats_at_first_delta, final = [], None, None

    for result in client.stream(chat.generate("Write slowly")):
        if result.WhichOneof("payload") == "delta":
            if not deltas:
                stats_at_first_delta = testkit(provider_server, "stats")
            deltas.append(result.delta.content)
        if result.final:
            final = result

    assert stats_at_first_delta["in_flight"] >= 1
    assert stats_at_first_delta["completed"] == 0  # the provider had not finished writing
    assert len(deltas) > 1  # not one lump at the end
    assert "".join(deltas) == WHOLE_TEXT == final.llm_response.message.content
    assert testkit(provider_server, "stats")["completed"] == 1


def test_leaving_the_stream_early_hangs_up_on_the_provider_and_stores_nothing(
        client, provider_server, conversation, testkit, chat_messages):
    chat = conversation(provider_server.openai_url, model=SLOW_STREAM)

    for result in client.stream(chat.generate("Never mind")):
        if result.WhichOneof("payload") == "delta":
            break  # the caller goes away after the first delta

    stats = eventually(lambda: (s := testkit(provider_server, "stats"))["in_flight"] == 0 and s,
                       "the provider's request to end")
    assert (stats["client_disconnected"], stats["completed"]) == (1, 0)
    assert chat_messages(chat.chat_id) == []


def test_the_legacy_amqp_caller_gets_one_reply_with_the_whole_text(legacy, provider_server, conversation,
                                                                   chat_messages, unique):
    chat = conversation(provider_server.openai_url, model="writer@tokens=10,interval_ms=20")

    generation = legacy.send("LLM_RESPONSE_GENERATE", chat.legacy_generate("Tell me ten things"))
    legacy.wait([generation])
    # Replies to one caller come in order: once a later call is answered, nothing of the
    # generation can still be on its way.
    assert legacy.call("USER_CREATE", {"username": unique("barrier")})["status"] == "success"

    (reply,) = legacy.replies[generation]
    assert reply["status"] == "success", reply
    whole = "".join(f"t{i} " for i in range(10))
    assert reply["data"]["llm_response"]["content"] == whole
    assert [content for _, content, _ in chat_messages(chat.chat_id)] == ["Tell me ten things", whole]
