"""Message bodies: a queue message's body (protobuf or legacy JSON) to a typed `Instruction`, and a `Result` back to a body in the same encoding."""

import json
import re

from google.protobuf import message as protobuf_message
from google.protobuf import unknown_fields

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire import WireError, instruction_from_json, result_to_json
from llmchatlinker.wire.instructions import INVALID_FIELD, MALFORMED_INSTRUCTION, UNKNOWN_INSTRUCTION_TYPE
from services.common.errors import InvalidArgument
from services.common.limits import (
    JSON, MAX_ID_CHARS, MAX_INSTRUCTION_BODY_BYTES, MAX_JSON_DEPTH, PROTOBUF, is_protobuf,
)

# In JSON text: an escape pair (skipped whole), a quote, or a bracket.
_JSON_STRUCTURE = re.compile(rb'\\.|["\[\]{}]', re.S)


class DecodeError(InvalidArgument):
    """A body that is no valid instruction; reason MALFORMED_INSTRUCTION, UNKNOWN_INSTRUCTION_TYPE or INVALID_FIELD."""

    def __init__(self, message: str, reason: str, instruction_type: str | None = None):
        # The message may quote the body; a lone surrogate there could be neither published in a
        # header nor serialized in a Result, so it is shown escaped.
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message, reason=reason)
        # The JSON type name ("USER_CREATE") when the body named a known type, else None.
        self.instruction_type = instruction_type


def decode(body: bytes, content_type: str | None) -> orchestrator_pb2.Instruction:
    """Protobuf media types (limits.PROTOBUF_MEDIA_TYPES) carry serialized Instructions; anything else is legacy JSON.

    Every way a body can be wrong ends in a DecodeError: the size and the nesting are checked
    before parsing, and whatever the parsers raise besides their own errors is a malformed body.
    """
    if len(body) > MAX_INSTRUCTION_BODY_BYTES:
        raise DecodeError(f"the body is {len(body):,} bytes; an instruction is at most "
                          f"{MAX_INSTRUCTION_BODY_BYTES:,}", MALFORMED_INSTRUCTION)
    if is_protobuf(content_type):
        instruction = _from_protobuf(body)
    else:
        instruction = _from_json(body)
    if len(instruction.instruction_id) > MAX_ID_CHARS:
        raise DecodeError(f"instruction_id is longer than {MAX_ID_CHARS} characters", INVALID_FIELD)
    return instruction


def encode_result(request_content_type: str | None, result: orchestrator_pb2.Result) -> tuple[bytes, str]:
    """The result in the request's encoding, with its content type: a protobuf Result, or the legacy JSON reply."""
    if is_protobuf(request_content_type):
        return result.SerializeToString(), PROTOBUF
    return json.dumps(result_to_json(result)).encode(), JSON


def _from_json(body: bytes) -> orchestrator_pb2.Instruction:
    if _nesting(body) > MAX_JSON_DEPTH:
        raise DecodeError(f"the body nests deeper than {MAX_JSON_DEPTH} levels", MALFORMED_INSTRUCTION)
    try:
        return instruction_from_json(body)
    except WireError as error:
        raise DecodeError(error.message, error.reason, error.instruction_type) from None
    except UnicodeError:
        # A string JSON can spell but UTF-8 cannot carry: a lone surrogate ("\ud800").
        raise DecodeError("the body holds a string that is not valid Unicode (a lone surrogate)",
                          INVALID_FIELD) from None
    except (ValueError, TypeError, RecursionError, OverflowError) as error:
        raise DecodeError(f"the body is not a valid instruction: {type(error).__name__}",
                          MALFORMED_INSTRUCTION) from None


def _nesting(body: bytes) -> int:
    """How deep the brackets of JSON text nest, outside strings (malformed text may count oddly:
    the parser refuses it anyway)."""
    depth = deepest = 0
    in_string = False
    for match in _JSON_STRUCTURE.finditer(bytes(body)):
        token = match.group()
        if token == b'"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _from_protobuf(body: bytes) -> orchestrator_pb2.Instruction:
    try:
        instruction = orchestrator_pb2.Instruction.FromString(bytes(body))
    except (protobuf_message.DecodeError, RecursionError) as error:
        raise DecodeError(f"the body is not a serialized llmchatlinker.orchestrator.v1.Instruction: {error}",
                          MALFORMED_INSTRUCTION) from None
    if instruction.WhichOneof("instruction") is None:
        if len(unknown_fields.UnknownFieldSet(instruction)):
            # A field this orchestrator does not know: most likely a newer client's instruction type.
            raise DecodeError("the instruction's type is unknown to this orchestrator", UNKNOWN_INSTRUCTION_TYPE)
        raise DecodeError("the instruction sets no instruction type", MALFORMED_INSTRUCTION)
    return instruction


# A JSON "api_key" member's string value, wherever it stands and whether or not the rest parses.
_JSON_API_KEY = re.compile(rb'("api_key"\s*:\s*)"(?:[^"\\]|\\.)*"', re.S)
REDACTED = "[redacted]"


def without_provider_keys(body: bytes, content_type: str | None) -> bytes:
    """The body with any provider API key it carries blanked out, for a copy that is kept (a dead
    letter): a key must not outlive its provider on the broker's disk. A protobuf body that does
    not parse is kept as it is (it names no field)."""
    if not is_protobuf(content_type):
        return _JSON_API_KEY.sub(rb'\1"' + REDACTED.encode() + rb'"', body)
    try:
        instruction = orchestrator_pb2.Instruction.FromString(body)
    except Exception:  # noqa: BLE001 - not an instruction: nothing to find in it
        return body
    changed = False
    for field in ("llm_provider_add", "llm_provider_update"):
        request = getattr(instruction, field)
        if instruction.HasField(field) and request.HasField("api_key"):
            request.api_key = REDACTED
            changed = True
    return instruction.SerializeToString() if changed else body
