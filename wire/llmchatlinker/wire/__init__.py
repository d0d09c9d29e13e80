"""The legacy JSON wire format: `{"type", "data"}` instructions and `{"status", "message", "data"}` replies.

Clients of the original LLMChatLinker publish these bodies to RabbitMQ; the orchestrator turns them
into typed `Instruction` messages and its final `Result` back into the reply they expect. Only
protobuf and the generated code are imported here, so the Python client can use it too.
"""

from llmchatlinker.wire.instructions import WireError, instruction_from_json
from llmchatlinker.wire.names import (
    JSON_TYPES, instruction_type_named, instruction_type_of, json_type_named, json_type_of,
)
from llmchatlinker.wire.results import result_to_json

__all__ = [
    "JSON_TYPES",
    "WireError",
    "instruction_from_json",
    "instruction_type_named",
    "instruction_type_of",
    "json_type_named",
    "json_type_of",
    "result_to_json",
]
