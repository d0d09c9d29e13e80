"""Legacy JSON instruction bodies to typed `Instruction` messages.

Every field of a typed request is also accepted in JSON under its proto name (the legacy names are
the proto names), so legacy bodies and bodies using the newer optional fields (`kind`,
`context_max_messages`, `page_size`, ...) parse the same way. `null` means "not given".
"""

import json

from google.protobuf import message as protobuf_message
from google.protobuf.descriptor import FieldDescriptor

from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.wire.names import JSON_TYPES, field_of

# Reasons a body is refused, UPPER_SNAKE as in google.rpc.ErrorInfo.
MALFORMED_INSTRUCTION = "MALFORMED_INSTRUCTION"
UNKNOWN_INSTRUCTION_TYPE = "UNKNOWN_INSTRUCTION_TYPE"
INVALID_FIELD = "INVALID_FIELD"

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_TOP_LEVEL_KEYS = ("type", "data")

# Fields that must be present and not null; every other field is optional.
REQUIRED: dict[str, tuple[str, ...]] = {
    "USER_CREATE": ("username",),
    "USER_UPDATE": ("user_id",),
    "USER_DELETE": ("user_id",),
    "USER_INSTRUCTION_RECORDING_ENABLE": ("user_id",),
    "USER_INSTRUCTION_RECORDING_DISABLE": ("user_id",),
    "USER_INSTRUCTION_RECORDS_DELETE": ("user_id",),
    "USER_INSTRUCTION_RECORDS_LIST": ("user_id",),
    "CHAT_CREATE": ("title", "user_ids"),
    "CHAT_UPDATE": ("chat_id",),
    "CHAT_DELETE": ("chat_id",),
    "CHAT_LOAD": ("chat_id",),
    "CHAT_LIST_BY_USER": ("user_id",),
    "LLM_RESPONSE_GENERATE": ("user_id", "chat_id", "llm_id", "user_input"),
    "LLM_RESPONSE_REGENERATE": ("message_id",),
    "LLM_PROVIDER_ADD": ("name", "api_endpoint"),
    "LLM_PROVIDER_UPDATE": ("provider_id",),
    "LLM_PROVIDER_DELETE": ("provider_id",),
    "LLM_ADD": ("provider_id", "llm_name"),
    "LLM_UPDATE": ("llm_id",),
    "LLM_DELETE": ("llm_id",),
    "LLM_LIST_BY_PROVIDER": ("provider_id",),
    "USAGE_LIST": ("group_by",),
    "USER_LIMITS_SET": ("user_id",),
    "USER_LIMITS_GET": ("user_id",),
}

# Types that need at least one of several fields (USER_GET: by id or by username).
REQUIRED_ONE_OF: dict[str, tuple[str, ...]] = {"USER_GET": ("user_id", "username")}

# `kind` in JSON: the protocol's short name, case-insensitive.
PROVIDER_KINDS = {"openai": llm_pb2.PROVIDER_KIND_OPENAI, "ollama": llm_pb2.PROVIDER_KIND_OLLAMA}
# `group_by` of USAGE_LIST in JSON, case-insensitive.
USAGE_GROUPINGS = {"user": llm_pb2.USAGE_GROUPING_USER, "llm": llm_pb2.USAGE_GROUPING_LLM,
                   "provider": llm_pb2.USAGE_GROUPING_PROVIDER}


class WireError(ValueError):
    """A body that is not a valid instruction; the message says what is wrong."""

    def __init__(self, message: str, reason: str = INVALID_FIELD, instruction_type: str | None = None,
                 field: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        # The JSON type name ("USER_CREATE") when the body named a known one.
        self.instruction_type = instruction_type
        # The offending data field, when one is to blame.
        self.field = field


def instruction_from_json(body: dict | bytes | str) -> orchestrator_pb2.Instruction:
    """`{"type": "USER_CREATE", "data": {...}}` as an Instruction; instruction_id is left empty."""
    document = _parsed(body)
    if not isinstance(document, dict):
        raise WireError(f'an instruction must be a JSON object {{"type": ..., "data": {{...}}}}, '
                        f"not {_json_kind(document)}", MALFORMED_INSTRUCTION)
    json_type = document.get("type")
    if not isinstance(json_type, str):
        raise WireError('an instruction needs "type", a string such as "USER_CREATE"', MALFORMED_INSTRUCTION)
    if json_type not in JSON_TYPES:
        raise WireError(f"unknown instruction type {json_type!r}", UNKNOWN_INSTRUCTION_TYPE)
    extra = sorted(set(document) - set(_TOP_LEVEL_KEYS))
    if extra:
        raise WireError(f"{json_type}: unknown key(s) {', '.join(map(repr, extra))} beside \"type\" and \"data\"",
                        MALFORMED_INSTRUCTION, json_type)
    data = document.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WireError(f'{json_type}: "data" must be a JSON object, not {_json_kind(data)}',
                        INVALID_FIELD, json_type, "data")

    instruction = orchestrator_pb2.Instruction()
    request = getattr(instruction, field_of(json_type))
    request.SetInParent()
    _fill(request, data, json_type)
    if json_type == "LLM_PROVIDER_ADD" and not request.kind:
        request.kind = llm_pb2.PROVIDER_KIND_OPENAI  # the original only knew OpenAI-style endpoints
    return instruction


def _parsed(body: dict | bytes | str) -> object:
    if isinstance(body, dict):
        return body
    if not isinstance(body, (bytes, bytearray, str)):
        raise WireError(f"an instruction body must be JSON text, not {type(body).__name__}", MALFORMED_INSTRUCTION)
    try:
        return json.loads(body)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise WireError(f"the body is not valid UTF-8 JSON: {error}", MALFORMED_INSTRUCTION) from None


def _fill(request: protobuf_message.Message, data: dict, json_type: str) -> None:
    fields = request.DESCRIPTOR.fields_by_name
    unknown = sorted(name for name in data if name not in fields)
    if unknown:
        known = ", ".join(fields) or "none"
        raise WireError(f"{json_type}: unknown field(s) {', '.join(map(repr, unknown))} in data (known: {known})",
                        INVALID_FIELD, json_type, unknown[0])
    for name in REQUIRED.get(json_type, ()):
        if data.get(name) is None:
            raise WireError(f"{json_type}: data.{name} is required", INVALID_FIELD, json_type, name)
    alternatives = REQUIRED_ONE_OF.get(json_type)
    if alternatives and all(data.get(name) is None for name in alternatives):
        raise WireError(f"{json_type}: data needs {' or '.join(alternatives)}", INVALID_FIELD, json_type,
                        alternatives[0])
    for name, value in data.items():
        if value is not None:
            _set(request, fields[name], value, json_type)


def _set(request: protobuf_message.Message, field: FieldDescriptor, value: object, json_type: str) -> None:
    def refuse(expected: str) -> WireError:
        return WireError(f"{json_type}: data.{field.name} must be {expected}, not {_json_kind(value)}",
                         INVALID_FIELD, json_type, field.name)

    if field.type == FieldDescriptor.TYPE_MESSAGE and _is_id_list(field.message_type):
        # A list of ids wrapped in a message so that an update can tell "unchanged" (absent) from
        # "none" ([]): the JSON form is the bare list.
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise refuse("a list of strings")
        wrapper = getattr(request, field.name)
        wrapper.SetInParent()
        getattr(wrapper, wrapper.DESCRIPTOR.fields[0].name).extend(value)
    elif field.is_repeated:
        if field.type != FieldDescriptor.TYPE_STRING:
            raise AssertionError(f"no JSON form for repeated {field.full_name}")
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise refuse("a list of strings")
        getattr(request, field.name).extend(value)
    elif field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise refuse("a string")
        setattr(request, field.name, value)
    elif field.type == FieldDescriptor.TYPE_INT32:
        if not isinstance(value, int) or isinstance(value, bool):
            raise refuse("a whole number")
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise WireError(f"{json_type}: data.{field.name} is out of range ({value})",
                            INVALID_FIELD, json_type, field.name)
        setattr(request, field.name, value)
    elif field.type == FieldDescriptor.TYPE_ENUM and field.enum_type.full_name == "llmchatlinker.llm.v1.UsageGrouping":
        grouping = USAGE_GROUPINGS.get(value.lower()) if isinstance(value, str) else None
        if grouping is None:
            raise refuse(" or ".join(map(repr, USAGE_GROUPINGS)))
        setattr(request, field.name, grouping)
    elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name == "google.protobuf.Timestamp":
        if not isinstance(value, str):
            raise refuse("an RFC 3339 time string")
        try:
            getattr(request, field.name).FromJsonString(value)
        except ValueError:
            raise WireError(f"{json_type}: data.{field.name} must be an RFC 3339 time such as "
                            f"'2026-12-01T00:00:00Z', not {value[:40]!r}", INVALID_FIELD, json_type, field.name) from None
    elif field.type == FieldDescriptor.TYPE_ENUM and field.enum_type.full_name == "llmchatlinker.llm.v1.ProviderKind":
        kind = PROVIDER_KINDS.get(value.lower()) if isinstance(value, str) else None
        if kind is None:
            shown = repr(value) if isinstance(value, str) else _json_kind(value)
            raise WireError(f"{json_type}: data.{field.name} must be {' or '.join(map(repr, PROVIDER_KINDS))}, "
                            f"not {shown}", INVALID_FIELD, json_type, field.name)
        setattr(request, field.name, kind)
    else:
        raise AssertionError(f"no JSON form for {field.full_name}")


def _is_id_list(descriptor) -> bool:
    """A message whose one field is a repeated string (llm.v1.FallbackLlmIds)."""
    fields = descriptor.fields
    return len(fields) == 1 and fields[0].is_repeated and fields[0].type == FieldDescriptor.TYPE_STRING


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
