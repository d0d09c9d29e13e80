"""LLMChatLinkerClient over gRPC against a real suite: the original API's 26 methods and streaming."""

import pytest

from llmchatlinker.client import LLMChatLinkerClient

USER_KEYS = {"user_id", "username", "display_name", "profile", "record_instructions", "created_at", "updated_at"}
CHAT_KEYS = {"chat_id", "title", "users", "messages", "created_at", "updated_at"}
MESSAGE_KEYS = {"message_id", "chat_id", "user_id", "llm_id", "content", "role", "created_at", "updated_at"}
LLM_KEYS = {"llm_id", "name", "provider_id", "created_at", "updated_at"}


@pytest.fixture
def client(suite):
    with LLMChatLinkerClient(address=suite.orchestrator) as client:
        yield client


def ok(reply: dict) -> dict:
    assert reply["status"] == "success", reply
    assert set(reply) == {"status", "message", "data"}
    return reply["data"]


def failed(reply: dict) -> str:
    assert reply["status"] == "error", reply
    assert reply["data"] == {}
    assert reply["message"]
    return reply["message"]


@pytest.fixture
def user(client, unique):
    return ok(client.create_user(username=unique("ada")))["user"]


@pytest.fixture
def model(client, unique, llm_server):
    """A provider pointing at the stand-in LLM, and one of its models: (provider, llm)."""
    provider = ok(client.add_llm_provider(name=unique("testkit"), api_endpoint=llm_server.openai_url))["provider"]
    llm = ok(client.add_llm(provider_id=provider["provider_id"], llm_name="echo-model"))["llm"]
    return provider, llm


@pytest.fixture
def chat(client, user, unique):
    return ok(client.create_chat(title=unique("chat"), user_ids=[user["user_id"]]))["chat"]


# Users.

def test_create_user_returns_the_user_with_the_legacy_keys(client, unique):
    username = unique("Grace")
    created = ok(client.create_user(username=username, profile="Sample profile"))["user"]
    assert set(created) == USER_KEYS
    assert created["username"] == username.lower()
    assert created["display_name"] == username.lower()  # none given: the username
    assert created["profile"] == "Sample profile"
    assert created["record_instructions"] is False


def test_create_user_with_an_invalid_username_is_an_error_reply(client):
    assert "username" in failed(client.create_user(username="x"))


def test_get_user_finds_a_user_by_username_and_by_id(client, user):
    assert ok(client.get_user(username=user["username"]))["user"]["user_id"] == user["user_id"]
    assert ok(client.get_user(user_id=user["user_id"]))["user"]["username"] == user["username"]


def test_update_user_changes_only_the_fields_given(client, user):
    updated = ok(client.update_user(user_id=user["user_id"], display_name="Ada L."))["user"]
    assert updated["display_name"] == "Ada L."
    assert updated["username"] == user["username"]
    assert updated["profile"] == user["profile"]


def test_delete_user_hides_it_from_get_and_list(client, user):
    assert user["user_id"] in {u["user_id"] for u in ok(client.list_users())["users"]}
    assert ok(client.delete_user(user_id=user["user_id"])) == {}
    failed(client.get_user(user_id=user["user_id"]))
    assert user["user_id"] not in {u["user_id"] for u in ok(client.list_users())["users"]}


def test_unknown_user_id_is_an_error_reply(client):
    assert failed(client.get_user(user_id="00000000-0000-4000-8000-000000000000"))


def test_instruction_recording_records_and_deletes_a_users_instructions(client, user, chat):
    user_id = user["user_id"]
    assert ok(client.enable_instruction_recording(user_id=user_id)) == {}
    assert ok(client.get_user(user_id=user_id))["user"]["record_instructions"] is True

    ok(client.list_user_chats(user_id=user_id))
    records = ok(client.list_user_instructions(user_id=user_id))["records"]
    assert records and all(record["user_id"] == user_id for record in records)
    assert set(records[0]) == {"record_id", "user_id", "chat_id", "instruction", "created_at", "updated_at"}

    assert ok(client.disable_instruction_recording(user_id=user_id)) == {}
    assert ok(client.get_user(user_id=user_id))["user"]["record_instructions"] is False
    assert ok(client.delete_user_instructions(user_id=user_id)) == {}
    assert ok(client.list_user_instructions(user_id=user_id))["records"] == []


# Chats.

def test_create_chat_returns_the_chat_with_its_members(client, user, chat):
    assert set(chat) == CHAT_KEYS
    assert [member["user_id"] for member in chat["users"]] == [user["user_id"]]
    assert chat["messages"] == []


def test_update_chat_changes_the_title(client, chat):
    assert ok(client.update_chat(chat_id=chat["chat_id"], title="Renamed"))["chat"]["title"] == "Renamed"
    assert ok(client.get_chat(chat_id=chat["chat_id"]))["chat"]["title"] == "Renamed"


def test_list_chats_and_list_user_chats_include_a_new_chat(client, user, chat):
    assert chat["chat_id"] in {c["chat_id"] for c in ok(client.list_chats())["chats"]}
    assert [c["chat_id"] for c in ok(client.list_user_chats(user_id=user["user_id"]))["chats"]] == [chat["chat_id"]]


def test_delete_chat_hides_it(client, chat):
    assert ok(client.delete_chat(chat_id=chat["chat_id"])) == {}
    failed(client.get_chat(chat_id=chat["chat_id"]))
    assert chat["chat_id"] not in {c["chat_id"] for c in ok(client.list_chats())["chats"]}


def test_create_chat_with_a_malformed_member_list_is_an_error_reply(client):
    assert "user_ids" in failed(client.create_chat(title="t", user_ids="not-a-list"))


# Providers and models.

def test_provider_lifecycle_never_returns_the_api_key(client, unique, llm_server):
    name = unique("provider")
    provider = ok(client.add_llm_provider(name=name, api_endpoint=llm_server.openai_url, api_key="sk-secret"))[
        "provider"]
    assert "api_key" not in provider and provider["has_api_key"] is True
    assert {"provider_id", "name", "api_endpoint", "created_at", "updated_at"} <= set(provider)

    renamed = ok(client.update_llm_provider(provider_id=provider["provider_id"], name=name + "_b"))["provider"]
    assert renamed["name"] == name + "_b"
    assert renamed["api_endpoint"] == llm_server.openai_url
    listed = {p["provider_id"]: p for p in ok(client.list_llm_providers())["providers"]}
    assert listed[provider["provider_id"]]["name"] == name + "_b"
    assert "sk-secret" not in repr(listed)

    assert ok(client.delete_llm_provider(provider_id=provider["provider_id"])) == {}
    assert provider["provider_id"] not in {p["provider_id"] for p in ok(client.list_llm_providers())["providers"]}


def test_llm_lifecycle(client, model):
    provider, llm = model
    assert set(llm) == LLM_KEYS
    assert llm["name"] == "echo-model" and llm["provider_id"] == provider["provider_id"]

    assert ok(client.update_llm(llm_id=llm["llm_id"], llm_name="echo-model-2"))["llm"]["name"] == "echo-model-2"
    assert llm["llm_id"] in {m["llm_id"] for m in ok(client.list_llms())["llms"]}
    by_provider = ok(client.list_llms_by_provider(provider_id=provider["provider_id"]))["llms"]
    assert [(m["llm_id"], m["name"]) for m in by_provider] == [(llm["llm_id"], "echo-model-2")]

    assert ok(client.delete_llm(llm_id=llm["llm_id"])) == {}
    assert ok(client.list_llms_by_provider(provider_id=provider["provider_id"]))["llms"] == []


# Generation.

def test_generate_stores_the_turn_and_returns_the_assistant_message(client, user, chat, model):
    provider, llm = model
    reply = ok(client.generate_llm_response(user_id=user["user_id"], chat_id=chat["chat_id"],
                                            provider_id=provider["provider_id"], llm_id=llm["llm_id"],
                                            user_input="What is the longest river?"))["llm_response"]
    assert set(reply) == MESSAGE_KEYS
    assert reply["role"] == "assistant"
    assert reply["content"] == "echo: What is the longest river?"

    messages = ok(client.get_chat(chat_id=chat["chat_id"]))["chat"]["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "What is the longest river?"), ("assistant", "echo: What is the longest river?")]


def test_regenerate_adds_a_new_assistant_message(client, user, chat, model):
    provider, llm = model
    first = ok(client.generate_llm_response(user_id=user["user_id"], chat_id=chat["chat_id"],
                                            provider_id=provider["provider_id"], llm_id=llm["llm_id"],
                                            user_input="Hello there"))["llm_response"]
    again = ok(client.regenerate_llm_response(message_id=first["message_id"]))["llm_response"]
    assert again["message_id"] != first["message_id"]
    assert again["role"] == "assistant" and again["content"] == "echo: Hello there"


def test_stream_llm_response_yields_token_deltas_then_the_reply(client, user, chat, model):
    provider, _ = model
    # Tokens 80 ms apart, past the 50 ms in which deltas to a reply queue are joined: several arrive.
    llm = ok(client.add_llm(provider_id=provider["provider_id"], llm_name="echo-model@interval_ms=80"))["llm"]
    items = list(client.stream_llm_response(user_id=user["user_id"], chat_id=chat["chat_id"],
                                            provider_id=provider["provider_id"], llm_id=llm["llm_id"],
                                            user_input="one two three four"))
    *deltas, final = items
    assert all(isinstance(delta, str) for delta in deltas) and len(deltas) > 1
    reply = ok(final)["llm_response"]
    assert "".join(deltas) == reply["content"] == "echo: one two three four"


def test_generate_in_an_unknown_chat_is_an_error_reply(client, user, model):
    provider, llm = model
    failed(client.generate_llm_response(user_id=user["user_id"], chat_id="00000000-0000-4000-8000-000000000000",
                                        provider_id=provider["provider_id"], llm_id=llm["llm_id"], user_input="hi"))
