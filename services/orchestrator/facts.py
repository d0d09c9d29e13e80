"""What an instruction names: its chat (to apply a chat's instructions in order) and its users (to record it)."""

import hashlib

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2

# The units take request ids of at most this many characters.
MAX_REQUEST_ID_LENGTH = 128

# Instruction field -> the request field holding the chat it acts on. CHAT_CREATE names no chat
# yet, and REGENERATE names a message whose chat is known only once the message is read.
_CHAT_FIELDS = {
    "chat_update": "chat_id",
    "chat_delete": "chat_id",
    "chat_load": "chat_id",
    "llm_response_generate": "chat_id",
}

# Instruction field -> the request field holding the user (or users) it names.
_USER_FIELDS = {
    "user_update": "user_id",
    "user_delete": "user_id",
    "user_get": "user_id",
    "user_instruction_recording_enable": "user_id",
    "user_instruction_recording_disable": "user_id",
    "user_instruction_records_delete": "user_id",
    "user_instruction_records_list": "user_id",
    "chat_create": "user_ids",
    "chat_list_by_user": "user_id",
    "llm_response_generate": "user_id",
}


def chat_id_of(instruction: orchestrator_pb2.Instruction) -> str:
    """The chat the instruction acts on; '' when it names none."""
    kind = instruction.WhichOneof("instruction")
    field = _CHAT_FIELDS.get(kind or "")
    return getattr(getattr(instruction, kind), field) if field else ""


def user_ids_of(instruction: orchestrator_pb2.Instruction) -> list[str]:
    """The ids of the users the instruction names, each once, in order; [] when it names none.

    USER_GET by username and USER_CREATE name no user id, so they are not counted.
    """
    kind = instruction.WhichOneof("instruction")
    field = _USER_FIELDS.get(kind or "")
    if not field:
        return []
    value = getattr(getattr(instruction, kind), field)
    ids = [value] if isinstance(value, str) else list(value)
    return list(dict.fromkeys(user_id for user_id in ids if user_id))


def request_id(instruction_id: str, step: str) -> str:
    """The unit request id of one step of an instruction: `{instruction_id}:{step}`.

    An instruction without an id gets '' (no de-duplication): sharing ':step' between unrelated
    instructions would answer all of them with the first one's response. An id too long for the
    units is replaced by its SHA-256, which is as unique and always fits.
    """
    if not instruction_id:
        return ""
    composed = f"{instruction_id}:{step}"
    if len(composed) <= MAX_REQUEST_ID_LENGTH:
        return composed
    return "sha256:" + hashlib.sha256(composed.encode()).hexdigest()
