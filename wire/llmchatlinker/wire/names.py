"""The instruction type names (the original's 26, USAGE_LIST and USER_LIMITS_SET/_GET): JSON name, InstructionType value and Instruction oneof field."""

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2

_ENUM_PREFIX = "INSTRUCTION_TYPE_"
_ONEOF = orchestrator_pb2.Instruction.DESCRIPTOR.oneofs_by_name["instruction"]

# The oneof field of each type is its JSON name in lower case (USER_CREATE -> user_create).
JSON_TYPES: tuple[str, ...] = tuple(field.name.upper() for field in _ONEOF.fields)


def field_of(json_type: str) -> str:
    """The Instruction oneof field of a JSON type name (no check that it exists)."""
    return json_type.lower()


def json_type_of(instruction: orchestrator_pb2.Instruction) -> str:
    """"USER_CREATE" and so on; "" when no instruction is set."""
    field = instruction.WhichOneof("instruction")
    return field.upper() if field else ""


def instruction_type_of(instruction: orchestrator_pb2.Instruction) -> orchestrator_pb2.InstructionType.ValueType:
    """The InstructionType of an instruction; INSTRUCTION_TYPE_UNSPECIFIED when none is set."""
    return instruction_type_named(json_type_of(instruction))


def instruction_type_named(json_type: str) -> orchestrator_pb2.InstructionType.ValueType:
    """The InstructionType of a JSON type name; INSTRUCTION_TYPE_UNSPECIFIED when unknown."""
    if json_type not in JSON_TYPES:
        return orchestrator_pb2.INSTRUCTION_TYPE_UNSPECIFIED
    return orchestrator_pb2.InstructionType.Value(_ENUM_PREFIX + json_type)


def json_type_named(instruction_type: int) -> str:
    """The JSON type name of an InstructionType value; "" for unspecified or unknown values."""
    try:
        name = orchestrator_pb2.InstructionType.Name(instruction_type)
    except ValueError:
        return ""
    json_type = name.removeprefix(_ENUM_PREFIX)
    return json_type if json_type in JSON_TYPES else ""
