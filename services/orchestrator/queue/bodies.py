"""Message bodies: a queue message's body (protobuf or legacy JSON) to a typed `Instruction`, and a `Result` back to a body in the same encoding."""

import json

from google.protobuf import message as protobuf_message
from google.protobuf import unknown_fields

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import WireError, instruction_from_json, result_to_json
from llmchatlinker.wire.instructions import INVALID_FIELD, MALFORMED_INSTRUCTION, UNKNOWN_INSTRUCTION_TYPE
from services.common.errors import InvalidArgument
from services.common.limits import JSON, MAX_ID_CHARS, PROTOBUF, is_protobuf


class DecodeError(InvalidArgument):
    """A body that is no valid instruction; reason MALFORMED_INSTRUCTION, UNKNOWN_INSTRUCTION_TYPE or INVALID_FIELD."""

    def __init__(self, message: str, reason: str, instruction_type: str | None = None):
        super().__init__(message, reason=reason)
        # The JSON type name ("USER_CREATE") when the body named a known type, else None.
        self.instruction_type = instruction_type


def decode(body: bytes, content_type: str | None) -> orchestrator_pb2.Instruction:
    """Protobuf media types (limits.PROTOBUF_MEDIA_TYPES) carry serialized Instructions; anything else is legacy JSON."""
    if is_protobuf(content_type):
        instruction = _from_protobuf(body)
    else:
        try:
            instruction = instruction_from_json(body)
        except WireError as error:
            raise DecodeError(error.message, error.reason, error.instruction_type) from None
    if len(instruction.instruction_id) > MAX_ID_CHARS:
        raise DecodeError(f"instruction_id is longer than {MAX_ID_CHARS} characters", INVALID_FIELD)
    return instruction


def encode_result(request_content_type: str | None, result: orchestrator_pb2.Result) -> tuple[bytes, str]:
    """The result in the request's encoding, with its content type: a protobuf Result, or the legacy JSON reply."""
    if is_protobuf(request_content_type):
        return result.SerializeToString(), PROTOBUF
    return json.dumps(result_to_json(result)).encode(), JSON


def _from_protobuf(body: bytes) -> orchestrator_pb2.Instruction:
    try:
        instruction = orchestrator_pb2.Instruction.FromString(bytes(body))
    except protobuf_message.DecodeError as error:
        raise DecodeError(f"the body is not a serialized llmchatlinker.orchestrator.v1.Instruction: {error}",
                          MALFORMED_INSTRUCTION) from None
    if instruction.WhichOneof("instruction") is None:
        if len(unknown_fields.UnknownFieldSet(instruction)):
            # A field this orchestrator does not know: most likely a newer client's instruction type.
            raise DecodeError("the instruction's type is unknown to this orchestrator", UNKNOWN_INSTRUCTION_TYPE)
        raise DecodeError("the instruction sets no instruction type", MALFORMED_INSTRUCTION)
    return instruction
