"""The legacy JSON wire format both ways, over all 26 instruction types."""

import datetime
import json

import pytest
from google.protobuf import timestamp_pb2

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from llmchatlinker.wire import (
    JSON_TYPES, WireError, instruction_from_json, instruction_type_of, json_type_of, result_to_json,
)

U1, U2, C1, P1, L1, M1 = "u-1", "u-2", "c-1", "p-1", "l-1", "m-1"

# A body legacy clients send for each type, and the instruction it means.
LEGACY = {
    "USER_CREATE": ({"username": "ada", "display_name": None, "profile": "hi"},
                    pb.Instruction(user_create=pb.UserCreate(username="ada", profile="hi"))),
    "USER_UPDATE": ({"user_id": U1, "username": None, "display_name": "Ada L.", "profile": None},
                    pb.Instruction(user_update=pb.UserUpdate(user_id=U1, display_name="Ada L."))),
    "USER_DELETE": ({"user_id": U1}, pb.Instruction(user_delete=pb.UserDelete(user_id=U1))),
    "USER_LIST": ({}, pb.Instruction(user_list=pb.UserList())),
    "USER_GET": ({"username": "ada"}, pb.Instruction(user_get=pb.UserGet(username="ada"))),
    "USER_INSTRUCTION_RECORDING_ENABLE": (
        {"user_id": U1},
        pb.Instruction(user_instruction_recording_enable=pb.UserInstructionRecordingEnable(user_id=U1))),
    "USER_INSTRUCTION_RECORDING_DISABLE": (
        {"user_id": U1},
        pb.Instruction(user_instruction_recording_disable=pb.UserInstructionRecordingDisable(user_id=U1))),
    "USER_INSTRUCTION_RECORDS_DELETE": (
        {"user_id": U1}, pb.Instruction(user_instruction_records_delete=pb.UserInstructionRecordsDelete(user_id=U1))),
    "USER_INSTRUCTION_RECORDS_LIST": (
        {"user_id": U1}, pb.Instruction(user_instruction_records_list=pb.UserInstructionRecordsList(user_id=U1))),
    "CHAT_CREATE": ({"title": "Rivers", "user_ids": [U1, U2]},
                    pb.Instruction(chat_create=pb.ChatCreate(title="Rivers", user_ids=[U1, U2]))),
    "CHAT_UPDATE": ({"chat_id": C1, "title": "Lakes"},
                    pb.Instruction(chat_update=pb.ChatUpdate(chat_id=C1, title="Lakes"))),
    "CHAT_DELETE": ({"chat_id": C1}, pb.Instruction(chat_delete=pb.ChatDelete(chat_id=C1))),
    "CHAT_LOAD": ({"chat_id": C1}, pb.Instruction(chat_load=pb.ChatLoad(chat_id=C1))),
    "CHAT_LIST": ({}, pb.Instruction(chat_list=pb.ChatList())),
    "CHAT_LIST_BY_USER": ({"user_id": U1}, pb.Instruction(chat_list_by_user=pb.ChatListByUser(user_id=U1))),
    "LLM_RESPONSE_GENERATE": (
        {"user_id": U1, "chat_id": C1, "provider_id": P1, "llm_id": L1, "user_input": "Longest river?"},
        pb.Instruction(llm_response_generate=pb.LlmResponseGenerate(
            user_id=U1, chat_id=C1, provider_id=P1, llm_id=L1, user_input="Longest river?"))),
    "LLM_RESPONSE_REGENERATE": (
        {"message_id": M1}, pb.Instruction(llm_response_regenerate=pb.LlmResponseRegenerate(message_id=M1))),
    "LLM_PROVIDER_ADD": (
        {"name": "local", "api_endpoint": "http://127.0.0.1:1/v1/chat/completions", "api_key": "sk-1"},
        pb.Instruction(llm_provider_add=pb.LlmProviderAdd(
            name="local", api_endpoint="http://127.0.0.1:1/v1/chat/completions", api_key="sk-1",
            kind=llm_pb2.PROVIDER_KIND_OPENAI))),
    "LLM_PROVIDER_UPDATE": (
        {"provider_id": P1, "name": "renamed", "api_endpoint": None, "api_key": ""},
        pb.Instruction(llm_provider_update=pb.LlmProviderUpdate(provider_id=P1, name="renamed", api_key=""))),
    "LLM_PROVIDER_DELETE": ({"provider_id": P1},
                            pb.Instruction(llm_provider_delete=pb.LlmProviderDelete(provider_id=P1))),
    "LLM_PROVIDER_LIST": ({}, pb.Instruction(llm_provider_list=pb.LlmProviderList())),
    "LLM_ADD": ({"provider_id": P1, "llm_name": "llama"},
                pb.Instruction(llm_add=pb.LlmAdd(provider_id=P1, llm_name="llama"))),
    "LLM_UPDATE": ({"llm_id": L1, "llm_name": "llama2"},
                   pb.Instruction(llm_update=pb.LlmUpdate(llm_id=L1, llm_name="llama2"))),
    "LLM_DELETE": ({"llm_id": L1}, pb.Instruction(llm_delete=pb.LlmDelete(llm_id=L1))),
    "LLM_LIST": ({}, pb.Instruction(llm_list=pb.LlmList())),
    "LLM_LIST_BY_PROVIDER": ({"provider_id": P1},
                             pb.Instruction(llm_list_by_provider=pb.LlmListByProvider(provider_id=P1))),
    "USAGE_LIST": ({"group_by": "User", "start_time": "2026-12-01T00:00:00Z", "page_size": 10},
                   pb.Instruction(usage_list=pb.UsageList(group_by=llm_pb2.USAGE_GROUPING_USER,
                                                          start_time=timestamp_pb2.Timestamp(seconds=1796083200),
                                                          page_size=10))),
    "USER_LIMITS_SET": ({"user_id": U1, "requests_per_minute": 5, "tokens_per_month": 0},
                        pb.Instruction(user_limits_set=pb.UserLimitsSet(user_id=U1, requests_per_minute=5,
                                                                        tokens_per_month=0))),
    "USER_LIMITS_GET": ({"user_id": U1}, pb.Instruction(user_limits_get=pb.UserLimitsGet(user_id=U1))),
}

# The fields each type cannot do without (USER_GET needs one of two, tested on its own).
REQUIRED = {
    "USER_CREATE": ["username"], "USER_UPDATE": ["user_id"], "USER_DELETE": ["user_id"],
    "USER_INSTRUCTION_RECORDING_ENABLE": ["user_id"], "USER_INSTRUCTION_RECORDING_DISABLE": ["user_id"],
    "USER_INSTRUCTION_RECORDS_DELETE": ["user_id"], "USER_INSTRUCTION_RECORDS_LIST": ["user_id"],
    "CHAT_CREATE": ["title", "user_ids"], "CHAT_UPDATE": ["chat_id"], "CHAT_DELETE": ["chat_id"],
    "CHAT_LOAD": ["chat_id"], "CHAT_LIST_BY_USER": ["user_id"],
    "LLM_RESPONSE_GENERATE": ["user_id", "chat_id", "llm_id", "user_input"],
    "LLM_RESPONSE_REGENERATE": ["message_id"], "LLM_PROVIDER_ADD": ["name", "api_endpoint"],
    "LLM_PROVIDER_UPDATE": ["provider_id"], "LLM_PROVIDER_DELETE": ["provider_id"],
    "LLM_ADD": ["provider_id", "llm_name"], "LLM_UPDATE": ["llm_id"], "LLM_DELETE": ["llm_id"],
    "LLM_LIST_BY_PROVIDER": ["provider_id"], "USAGE_LIST": ["group_by"], "USER_LIMITS_SET": ["user_id"],
    "USER_LIMITS_GET": ["user_id"],
}


def test_the_cases_cover_all_29_types():
    assert len(JSON_TYPES) == 29  # the original's 26, USAGE_LIST, USER_LIMITS_SET and USER_LIMITS_GET
    assert set(LEGACY) == set(JSON_TYPES)


@pytest.mark.parametrize("json_type", sorted(LEGACY))
def test_legacy_body_becomes_its_typed_instruction(json_type):
    data, expected = LEGACY[json_type]
    instruction = instruction_from_json({"type": json_type, "data": data})
    assert instruction == expected
    assert instruction.instruction_id == ""
    assert json_type_of(instruction) == json_type
    assert instruction_type_of(instruction) == pb.InstructionType.Value("INSTRUCTION_TYPE_" + json_type)


@pytest.mark.parametrize("json_type", sorted(LEGACY))
def test_bytes_and_text_bodies_parse_like_dicts(json_type):
    data, expected = LEGACY[json_type]
    text = json.dumps({"type": json_type, "data": data})
    assert instruction_from_json(text) == expected
    assert instruction_from_json(text.encode()) == expected


@pytest.mark.parametrize("json_type", ["USER_LIST", "CHAT_LIST", "LLM_PROVIDER_LIST", "LLM_LIST"])
def test_lists_take_missing_or_null_data(json_type):
    assert json_type_of(instruction_from_json({"type": json_type})) == json_type
    assert json_type_of(instruction_from_json({"type": json_type, "data": None})) == json_type


def test_user_get_takes_user_id_or_username():
    assert instruction_from_json({"type": "USER_GET", "data": {"user_id": U1}}).user_get == pb.UserGet(user_id=U1)
    both = instruction_from_json({"type": "USER_GET", "data": {"user_id": U1, "username": "ada"}})
    assert both.user_get == pb.UserGet(user_id=U1, username="ada")


def test_null_optional_fields_stay_unset():
    update = instruction_from_json({"type": "USER_UPDATE", "data": {
        "user_id": U1, "username": None, "display_name": None, "profile": None}}).user_update
    assert not any(update.HasField(name) for name in ("username", "display_name", "profile"))


def test_provider_kind_and_newer_optional_fields_are_accepted():
    add = instruction_from_json({"type": "LLM_PROVIDER_ADD", "data": {
        "name": "o", "api_endpoint": "http://h/api/chat", "kind": "Ollama"}}).llm_provider_add
    assert add.kind == llm_pb2.PROVIDER_KIND_OLLAMA and not add.HasField("api_key")
    llm = instruction_from_json({"type": "LLM_ADD", "data": {
        "provider_id": P1, "llm_name": "m", "context_max_messages": 8, "context_max_chars": 4000}}).llm_add
    assert (llm.context_max_messages, llm.context_max_chars) == (8, 4000)
    page = instruction_from_json({"type": "USER_LIST", "data": {"page_size": 10, "page_token": "t"}}).user_list
    assert (page.page_size, page.page_token) == (10, "t")
    update = instruction_from_json({"type": "LLM_PROVIDER_UPDATE", "data": {"provider_id": P1}}).llm_provider_update
    assert update.kind == llm_pb2.PROVIDER_KIND_UNSPECIFIED  # unchanged, not reset to OpenAI


BAD_BODIES = [
    (b"{", "MALFORMED_INSTRUCTION", None, "not valid UTF-8 JSON"),
    (b"\xff\xfe\x00", "MALFORMED_INSTRUCTION", None, "not valid UTF-8 JSON"),
    ("[1, 2]", "MALFORMED_INSTRUCTION", None, "JSON object"),
    ("5", "MALFORMED_INSTRUCTION", None, "JSON object"),
    ({"data": {}}, "MALFORMED_INSTRUCTION", None, '"type"'),
    ({"type": 7}, "MALFORMED_INSTRUCTION", None, '"type"'),
    ({"type": "USER_FLY"}, "UNKNOWN_INSTRUCTION_TYPE", None, "'USER_FLY'"),
    ({"type": "user_create", "data": {"username": "ada"}}, "UNKNOWN_INSTRUCTION_TYPE", None, "'user_create'"),
    ({"type": "USER_LIST", "dta": {}}, "MALFORMED_INSTRUCTION", "USER_LIST", "'dta'"),
    ({"type": "USER_LIST", "data": []}, "INVALID_FIELD", "USER_LIST", '"data" must be a JSON object'),
    ({"type": "USER_CREATE", "data": {"username": 5}}, "INVALID_FIELD", "USER_CREATE",
     "data.username must be a string"),
    ({"type": "USER_CREATE", "data": {"username": "ada", "nickname": "a"}}, "INVALID_FIELD", "USER_CREATE",
     "unknown field(s) 'nickname'"),
    ({"type": "CHAT_CREATE", "data": {"title": "t", "user_ids": "x"}}, "INVALID_FIELD", "CHAT_CREATE",
     "data.user_ids must be a list of strings"),
    ({"type": "CHAT_CREATE", "data": {"title": "t", "user_ids": [U1, 2]}}, "INVALID_FIELD", "CHAT_CREATE",
     "data.user_ids must be a list of strings"),
    ({"type": "USER_GET", "data": {}}, "INVALID_FIELD", "USER_GET", "user_id or username"),
    ({"type": "USER_GET", "data": {"user_id": None, "username": None}}, "INVALID_FIELD", "USER_GET",
     "user_id or username"),
    ({"type": "LLM_PROVIDER_ADD", "data": {"name": "n", "api_endpoint": "http://h", "kind": "gpt"}},
     "INVALID_FIELD", "LLM_PROVIDER_ADD", "data.kind must be 'openai' or 'ollama', not 'gpt'"),
    ({"type": "USER_LIST", "data": {"page_size": 1.5}}, "INVALID_FIELD", "USER_LIST", "whole number"),
    ({"type": "USER_LIST", "data": {"page_size": True}}, "INVALID_FIELD", "USER_LIST", "whole number"),
    ({"type": "USER_LIST", "data": {"page_size": 2**31}}, "INVALID_FIELD", "USER_LIST", "out of range"),
    ({"type": "LLM_ADD", "data": {"provider_id": P1, "llm_name": "m", "context_max_messages": "8"}},
     "INVALID_FIELD", "LLM_ADD", "data.context_max_messages must be a whole number"),
]


@pytest.mark.parametrize("body, reason, json_type, words", BAD_BODIES)
def test_bad_bodies_are_refused_saying_why(body, reason, json_type, words):
    with pytest.raises(WireError) as caught:
        instruction_from_json(body)
    assert isinstance(caught.value, ValueError)
    assert caught.value.reason == reason
    assert caught.value.instruction_type == json_type
    assert words in str(caught.value)


@pytest.mark.parametrize("json_type, field", [(t, f) for t, fields in sorted(REQUIRED.items()) for f in fields])
def test_missing_or_null_required_field_is_named(json_type, field):
    data = dict(LEGACY[json_type][0])
    data.pop(field)
    with pytest.raises(WireError, match=f"data.{field} is required") as caught:
        instruction_from_json({"type": json_type, "data": data})
    error = caught.value
    assert (error.reason, error.instruction_type, error.field) == ("INVALID_FIELD", json_type, field)
    with pytest.raises(WireError, match=f"data.{field} is required"):
        instruction_from_json({"type": json_type, "data": {**data, field: None}})


# ---- replies ----------------------------------------------------------------------------------

T = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_000)
USER_KEYS = {"user_id", "username", "display_name", "profile", "record_instructions", "created_at", "updated_at"}
CHAT_KEYS = {"chat_id", "title", "users", "messages", "created_at", "updated_at"}
MESSAGE_KEYS = {"message_id", "chat_id", "user_id", "llm_id", "content", "role", "created_at", "updated_at"}
PROVIDER_KEYS = {"provider_id", "name", "api_endpoint", "created_at", "updated_at", "has_api_key", "kind"}
LLM_KEYS = {"llm_id", "name", "provider_id", "created_at", "updated_at"}
RECORD_KEYS = {"record_id", "user_id", "chat_id", "instruction", "created_at", "updated_at"}
LIMITS = llm_pb2.UserLimits(user_id="u-1", requests_per_minute=5)
LIMITS_KEYS = {"user_id", "requests_per_minute", "tokens_per_day", "tokens_per_month"}
USAGE_KEYS = {"key", "generations", "prompt_tokens", "completion_tokens", "estimated_generations",
              "mean_time_to_first_token_ms", "duration_ms"}

USER = user_pb2.User(user_id=U1, username="ada", display_name="Ada", profile="", record_instructions=True,
                     create_time=T, update_time=T)
CHAT = chat_pb2.Chat(chat_id=C1, title="Rivers", user_ids=[U1, U2], create_time=T, update_time=T)
ASKED = chat_pb2.Message(message_id="m-0", chat_id=C1, user_id=U1, content="Longest river?",
                         role=chat_pb2.MESSAGE_ROLE_USER, create_time=T, update_time=T)
ANSWER = chat_pb2.Message(message_id=M1, chat_id=C1, user_id=U1, llm_id=L1, content="The Nile.",
                          role=chat_pb2.MESSAGE_ROLE_ASSISTANT, create_time=T, update_time=T)
PROVIDER = llm_pb2.Provider(provider_id=P1, name="local", api_endpoint="http://h", kind=llm_pb2.PROVIDER_KIND_OPENAI,
                            has_api_key=True, create_time=T, update_time=T)
LLM = llm_pb2.Llm(llm_id=L1, name="llama", provider_id=P1, context_max_messages=50, context_max_chars=100_000,
                  create_time=T, update_time=T)
RECORD = db_pb2.Record(record_id="r-1", user_id=U1, chat_id="", instruction="USER_GET", instruction_id="i-1",
                       outcome="OK", create_time=T, update_time=T)
VIEW = pb.ChatView(chat=CHAT, users=[USER], messages=[ASKED, ANSWER])

# For each type: the payload the Control Unit returns, the reply message and the data it becomes.
REPLIES = {
    "USER_CREATE": ({"user": USER}, "User created.", {"user": USER_KEYS}),
    "USER_UPDATE": ({"user": USER}, "User updated.", {"user": USER_KEYS}),
    "USER_DELETE": ({}, "User deleted.", {}),
    "USER_LIST": ({"users": pb.UserPage(users=[USER, USER])}, "Users listed.", {"users": [USER_KEYS] * 2}),
    "USER_GET": ({"user": USER}, "User found.", {"user": USER_KEYS}),
    "USER_INSTRUCTION_RECORDING_ENABLE": ({"user": USER}, "Instruction recording enabled.", {}),
    "USER_INSTRUCTION_RECORDING_DISABLE": ({"user": USER}, "Instruction recording disabled.", {}),
    "USER_INSTRUCTION_RECORDS_DELETE": ({}, "Instruction records deleted.", {}),
    "USER_INSTRUCTION_RECORDS_LIST": ({"records": pb.RecordPage(records=[RECORD])}, "Instruction records listed.",
                                      {"records": [RECORD_KEYS]}),
    "CHAT_CREATE": ({"chat": VIEW}, "Chat created.", {"chat": CHAT_KEYS}),
    "CHAT_UPDATE": ({"chat": VIEW}, "Chat updated.", {"chat": CHAT_KEYS}),
    "CHAT_DELETE": ({}, "Chat deleted.", {}),
    "CHAT_LOAD": ({"chat": VIEW}, "Chat loaded.", {"chat": CHAT_KEYS}),
    "CHAT_LIST": ({"chats": pb.ChatPage(chats=[CHAT])}, "Chats listed.", {"chats": [CHAT_KEYS]}),
    "CHAT_LIST_BY_USER": ({"chats": pb.ChatPage(chats=[CHAT])}, "Chats listed.", {"chats": [CHAT_KEYS]}),
    "LLM_RESPONSE_GENERATE": ({"llm_response": pb.LlmResponse(message=ANSWER)}, "LLM response generated.",
                              {"llm_response": MESSAGE_KEYS}),
    "LLM_RESPONSE_REGENERATE": ({"llm_response": pb.LlmResponse(message=ANSWER)}, "LLM response regenerated.",
                                {"llm_response": MESSAGE_KEYS}),
    "LLM_PROVIDER_ADD": ({"provider": PROVIDER}, "LLM provider added.", {"provider": PROVIDER_KEYS}),
    "LLM_PROVIDER_UPDATE": ({"provider": PROVIDER}, "LLM provider updated.", {"provider": PROVIDER_KEYS}),
    "LLM_PROVIDER_DELETE": ({}, "LLM provider deleted.", {}),
    "LLM_PROVIDER_LIST": ({"providers": pb.ProviderPage(providers=[PROVIDER])}, "LLM providers listed.",
                          {"providers": [PROVIDER_KEYS]}),
    "LLM_ADD": ({"llm": LLM}, "LLM added.", {"llm": LLM_KEYS}),
    "LLM_UPDATE": ({"llm": LLM}, "LLM updated.", {"llm": LLM_KEYS}),
    "LLM_DELETE": ({}, "LLM deleted.", {}),
    "LLM_LIST": ({"llms": pb.LlmPage(llms=[LLM])}, "LLMs listed.", {"llms": [LLM_KEYS]}),
    "LLM_LIST_BY_PROVIDER": ({"llms": pb.LlmPage(llms=[LLM])}, "LLMs listed.", {"llms": [LLM_KEYS]}),
    "USAGE_LIST": ({"usage": pb.UsagePage(summaries=[llm_pb2.UsageSummary(key="u-1", generations=2)])},
                   "Usage listed.", {"usage": [USAGE_KEYS], "next_page_token": None}),
    "USER_LIMITS_SET": ({"user_limits": LIMITS}, "User limits set.", {"user_limits": LIMITS_KEYS}),
    "USER_LIMITS_GET": ({"user_limits": LIMITS}, "User limits found.", {"user_limits": LIMITS_KEYS}),
}


def _final(json_type: str, **payload) -> pb.Result:
    return pb.Result(instruction_id="i-1", instruction_type=pb.InstructionType.Value("INSTRUCTION_TYPE_" + json_type),
                     final=True, status=pb.Status(code=0), **payload)


def _shape(value):
    """Keys of objects (as sets), lists of shapes: what a reply's data looks like."""
    if isinstance(value, dict):
        return set(value)
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return value


def test_the_replies_cover_all_29_types():
    assert set(REPLIES) == set(JSON_TYPES)


@pytest.mark.parametrize("json_type", sorted(REPLIES))
def test_success_reply_has_the_legacy_shape(json_type):
    payload, message, shape = REPLIES[json_type]
    reply = result_to_json(_final(json_type, **payload))
    assert set(reply) == {"status", "message", "data"}
    assert reply["status"] == "success"
    assert reply["message"] == message
    assert {key: _shape(value) for key, value in reply["data"].items()} == shape
    json.dumps(reply)  # plain JSON types only


@pytest.mark.parametrize("json_type", sorted(REPLIES))
def test_error_reply_carries_the_readable_message_and_empty_data(json_type):
    result = pb.Result(instruction_id="i-1", instruction_type=pb.InstructionType.Value("INSTRUCTION_TYPE_" + json_type),
                       final=True, status=pb.Status(code=5, message="user 'x' not found", reason="USER_NOT_FOUND",
                                                    domain="user.llmchatlinker.dev"))
    assert result_to_json(result) == {"status": "error", "message": "user 'x' not found", "data": {}}


def test_error_without_message_still_reads():
    result = pb.Result(final=True, status=pb.Status(code=13, reason="INTERNAL"))
    reply = result_to_json(result)
    assert reply["status"] == "error" and "INTERNAL" in reply["message"] and reply["data"] == {}


def test_objects_carry_legacy_values():
    chat = result_to_json(_final("CHAT_LOAD", chat=VIEW))["data"]["chat"]
    assert chat["users"][0]["username"] == "ada" and chat["users"][0]["record_instructions"] is True
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]  # oldest first
    assert chat["messages"][0]["llm_id"] is None and chat["messages"][1]["llm_id"] == L1
    created = datetime.datetime.fromisoformat(chat["created_at"])
    assert created == datetime.datetime.fromtimestamp(1_700_000_000.000123, tz=datetime.timezone.utc)
    provider = result_to_json(_final("LLM_PROVIDER_ADD", provider=PROVIDER))["data"]["provider"]
    assert provider["has_api_key"] is True and provider["kind"] == "openai" and "api_key" not in provider
    record = result_to_json(_final("USER_INSTRUCTION_RECORDS_LIST", records=pb.RecordPage(records=[RECORD])))
    assert record["data"]["records"][0]["chat_id"] is None
    assert record["data"]["records"][0]["instruction"] == "USER_GET"


def test_chat_lists_name_members_by_id():
    chats = result_to_json(_final("CHAT_LIST", chats=pb.ChatPage(chats=[CHAT])))["data"]["chats"]
    assert [user["user_id"] for user in chats[0]["users"]] == [U1, U2]
    assert all(set(user) == USER_KEYS for user in chats[0]["users"])
    assert chats[0]["messages"] == []


def test_generation_reply_is_the_new_assistant_message():
    reply = result_to_json(_final("LLM_RESPONSE_GENERATE", llm_response=pb.LlmResponse(message=ANSWER)))
    assert reply["data"]["llm_response"]["message_id"] == M1
    assert reply["data"]["llm_response"]["content"] == "The Nile."


def test_fallback_llm_ids_of_an_update_are_a_list_and_an_empty_one_clears_them():
    cleared = instruction_from_json({"type": "LLM_UPDATE", "data": {"llm_id": L1, "fallback_llm_ids": []}})
    unchanged = instruction_from_json({"type": "LLM_UPDATE", "data": {"llm_id": L1}})
    added = instruction_from_json({"type": "LLM_ADD", "data": {"provider_id": P1, "llm_name": "m",
                                                               "fallback_llm_ids": [L1]}})

    assert cleared.llm_update.HasField("fallback_llm_ids") and not cleared.llm_update.fallback_llm_ids.llm_ids
    assert not unchanged.llm_update.HasField("fallback_llm_ids")
    assert list(added.llm_add.fallback_llm_ids) == [L1]
    with pytest.raises(WireError, match="fallback_llm_ids must be a list of strings"):
        instruction_from_json({"type": "LLM_UPDATE", "data": {"llm_id": L1, "fallback_llm_ids": L1}})


@pytest.mark.parametrize("data, words", [
    ({"group_by": "team"}, "data.group_by must be 'user' or 'llm' or 'provider'"),
    ({"group_by": "llm", "end_time": "yesterday"}, "data.end_time must be an RFC 3339 time"),
    ({"group_by": "llm", "end_time": 5}, "data.end_time must be an RFC 3339 time string"),
])
def test_usage_list_refuses_an_unknown_grouping_or_time(data, words):
    with pytest.raises(WireError, match=words):
        instruction_from_json({"type": "USAGE_LIST", "data": data})
