"""The decode stage: protobuf and legacy JSON bodies to Instructions, and readable refusals."""

import json

import grpc
import pytest

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.wire import JSON_TYPES
from services.common.errors import InvalidArgument
from services.orchestrator.queue.bodies import DecodeError, decode

PROTOBUF = "application/x-protobuf"


def _every_type() -> list[pb.Instruction]:
    """One instruction of each of the 26 types (empty requests are still set)."""
    instructions = []
    for json_type in JSON_TYPES:
        instruction = pb.Instruction(instruction_id=f"id-{json_type.lower()}")
        getattr(instruction, json_type.lower()).SetInParent()
        instructions.append(instruction)
    return instructions


@pytest.mark.parametrize("instruction", _every_type(), ids=JSON_TYPES)
def test_protobuf_body_round_trips(instruction):
    assert decode(instruction.SerializeToString(), PROTOBUF) == instruction


def test_protobuf_content_type_may_carry_parameters():
    instruction = pb.Instruction(instruction_id="i", user_list=pb.UserList(page_size=3))
    assert decode(instruction.SerializeToString(), "Application/X-Protobuf; proto=x") == instruction


@pytest.mark.parametrize("content_type", [None, "", "application/json", "text/plain"])
def test_anything_else_is_legacy_json(content_type):
    body = json.dumps({"type": "USER_GET", "data": {"username": "ada"}}).encode()
    assert decode(body, content_type) == pb.Instruction(user_get=pb.UserGet(username="ada"))


@pytest.mark.parametrize("body, content_type, reason, words", [
    (b"\xff\xff\xff", PROTOBUF, "MALFORMED_INSTRUCTION", "not a serialized"),
    (b"", PROTOBUF, "MALFORMED_INSTRUCTION", "sets no instruction type"),
    (pb.Instruction(instruction_id="only-an-id").SerializeToString(), PROTOBUF, "MALFORMED_INSTRUCTION",
     "sets no instruction type"),
    (b"\xf8\x01\x01", PROTOBUF, "UNKNOWN_INSTRUCTION_TYPE", "unknown"),  # field 31: a newer type
    (pb.Instruction(instruction_id="x" * 129, user_list=pb.UserList()).SerializeToString(), PROTOBUF,
     "INVALID_FIELD", "longer than 128"),
    (b"not json", None, "MALFORMED_INSTRUCTION", "not valid UTF-8 JSON"),
    (b'{"type": "USER_FLY"}', None, "UNKNOWN_INSTRUCTION_TYPE", "'USER_FLY'"),
    (b'{"type": "USER_CREATE", "data": {"username": 5}}', None, "INVALID_FIELD", "data.username must be a string"),
    (b'{"type": "USER_CREATE", "data": {}}', None, "INVALID_FIELD", "data.username is required"),
    (b'{"type": "CHAT_CREATE", "data": {"title": "t", "user_ids": "x"}}', "application/json", "INVALID_FIELD",
     "list of strings"),
])
def test_bad_bodies_are_invalid_argument_with_a_reason(body, content_type, reason, words):
    with pytest.raises(DecodeError) as caught:
        decode(body, content_type)
    error = caught.value
    assert isinstance(error, InvalidArgument)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == reason
    assert words in error.message


def test_json_refusal_names_the_type_when_known():
    with pytest.raises(DecodeError) as caught:
        decode(b'{"type": "CHAT_LOAD", "data": {"chat": "c"}}', None)
    assert caught.value.instruction_type == "CHAT_LOAD"
    assert "'chat'" in caught.value.message
