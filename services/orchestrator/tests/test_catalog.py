"""The instruction catalog: whole against the proto contract; what an instruction names (its chat, its users); the request ids of its steps."""

import pytest

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.wire import JSON_TYPES, instruction_from_json
from services.orchestrator.instructions.catalog import CATALOG, chat_id_of, missing_from_catalog, user_ids_of
from services.orchestrator.instructions.run import request_id

INSTRUCTION_ONEOF = pb.Instruction.DESCRIPTOR.oneofs_by_name["instruction"]

# For each type: a legacy body, the chat it names and the users it names.
CASES = {
    "USER_CREATE": ({"username": "ada"}, "", []),
    "USER_UPDATE": ({"user_id": "u1", "profile": "p"}, "", ["u1"]),
    "USER_DELETE": ({"user_id": "u1"}, "", ["u1"]),
    "USER_LIST": ({}, "", []),
    "USER_GET": ({"user_id": "u1"}, "", ["u1"]),
    "USER_INSTRUCTION_RECORDING_ENABLE": ({"user_id": "u1"}, "", ["u1"]),
    "USER_INSTRUCTION_RECORDING_DISABLE": ({"user_id": "u1"}, "", ["u1"]),
    "USER_INSTRUCTION_RECORDS_DELETE": ({"user_id": "u1"}, "", ["u1"]),
    "USER_INSTRUCTION_RECORDS_LIST": ({"user_id": "u1"}, "", ["u1"]),
    "CHAT_CREATE": ({"title": "t", "user_ids": ["u1", "u2", "u1"]}, "", ["u1", "u2"]),
    "CHAT_UPDATE": ({"chat_id": "c1", "title": "t"}, "c1", []),
    "CHAT_DELETE": ({"chat_id": "c1"}, "c1", []),
    "CHAT_LOAD": ({"chat_id": "c1"}, "c1", []),
    "CHAT_LIST": ({}, "", []),
    "CHAT_LIST_BY_USER": ({"user_id": "u1"}, "", ["u1"]),
    "LLM_RESPONSE_GENERATE": ({"user_id": "u1", "chat_id": "c1", "llm_id": "l1", "user_input": "hi"}, "c1", ["u1"]),
    "LLM_RESPONSE_REGENERATE": ({"message_id": "m1"}, "", []),
    "LLM_PROVIDER_ADD": ({"name": "n", "api_endpoint": "http://h"}, "", []),
    "LLM_PROVIDER_UPDATE": ({"provider_id": "p1"}, "", []),
    "LLM_PROVIDER_DELETE": ({"provider_id": "p1"}, "", []),
    "LLM_PROVIDER_LIST": ({}, "", []),
    "LLM_ADD": ({"provider_id": "p1", "llm_name": "m"}, "", []),
    "LLM_UPDATE": ({"llm_id": "l1"}, "", []),
    "LLM_DELETE": ({"llm_id": "l1"}, "", []),
    "LLM_LIST": ({}, "", []),
    "LLM_LIST_BY_PROVIDER": ({"provider_id": "p1"}, "", []),
    "USAGE_LIST": ({"group_by": "provider"}, "", []),
    "USER_LIMITS_SET": ({"user_id": "u1", "tokens_per_day": 100}, "", ["u1"]),
    "USER_LIMITS_GET": ({"user_id": "u1"}, "", ["u1"]),
}


def test_the_catalog_has_one_row_per_instruction_type_of_the_contract():
    assert missing_from_catalog() == set()
    assert set(CATALOG) == {field.name for field in INSTRUCTION_ONEOF.fields}


@pytest.mark.parametrize("field", sorted(CATALOG))
def test_each_row_names_fields_its_request_has(field):
    entry = CATALOG[field]
    request_fields = pb.Instruction.DESCRIPTOR.fields_by_name[field].message_type.fields_by_name
    for named in filter(None, (entry.chat_field, entry.user_field)):
        assert named in request_fields, f"{field}: no field {named!r}"


def test_a_type_missing_from_the_catalog_is_reported(monkeypatch):
    monkeypatch.delitem(CATALOG, "llm_list")
    assert missing_from_catalog() == {"llm_list"}


def test_the_cases_cover_every_type():
    assert set(CASES) == set(JSON_TYPES)


@pytest.mark.parametrize("json_type", sorted(CASES))
def test_chat_and_users_an_instruction_names(json_type):
    data, chat_id, user_ids = CASES[json_type]
    instruction = instruction_from_json({"type": json_type, "data": data})
    assert chat_id_of(instruction) == chat_id
    assert user_ids_of(instruction) == user_ids


def test_user_get_by_username_names_no_user_id():
    assert user_ids_of(instruction_from_json({"type": "USER_GET", "data": {"username": "ada"}})) == []


def test_an_empty_instruction_names_nothing():
    assert chat_id_of(pb.Instruction()) == "" and user_ids_of(pb.Instruction()) == []


def test_request_ids_join_instruction_and_step():
    assert request_id("i-1", "create-chat") == "i-1:create-chat"
    assert request_id("i-1", "record:u1") == "i-1:record:u1"


def test_an_instruction_without_id_gets_no_request_id():
    assert request_id("", "create-chat") == ""


def test_request_ids_too_long_for_the_units_are_hashed_and_stay_distinct():
    long_id = "x" * 128
    first, second = request_id(long_id, "record:u1"), request_id(long_id, "record:u2")
    assert len(first) <= 128 and len(second) <= 128 and first != second
    assert first == request_id(long_id, "record:u1")


def test_exactly_the_reads_skip_the_ledger():
    reads = {name.upper() for name, entry in CATALOG.items() if entry.reads_only}
    assert reads == {"USER_GET", "USER_LIST", "USER_INSTRUCTION_RECORDS_LIST", "CHAT_LOAD", "CHAT_LIST",
                     "CHAT_LIST_BY_USER", "LLM_PROVIDER_LIST", "LLM_LIST", "LLM_LIST_BY_PROVIDER", "USAGE_LIST",
                     "USER_LIMITS_GET"}
