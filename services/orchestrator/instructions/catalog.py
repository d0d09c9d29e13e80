"""The instruction catalog: one row per instruction type, saying everything the orchestrator needs to know of it.

A row gives the handler, the request field naming the chat it acts on (so a chat's instructions
run in order), the field naming the users it concerns (for their instruction records), whether it
is recorded, and what it changes that this process keeps (models, users' recording flags).
Adding an instruction type: its message in the `Instruction` oneof, one row here, one handler.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.orchestrator.instructions import chats, generate, llms, users
from services.orchestrator.instructions.run import Payload, Run

Handler = Callable[[Run, object], Awaitable[Payload]]


class UserChange(enum.Enum):
    """What an instruction does to the users it names, for the recording flags this process keeps."""

    NONE = enum.auto()
    # Its result carries the user as it now is (result.user).
    UPDATES = enum.auto()
    # The user is gone: never recorded again.
    DELETES = enum.auto()


@dataclasses.dataclass(frozen=True)
class Entry:
    handler: Handler
    # The request field holding the chat the instruction acts on; '' when it names none (CHAT_CREATE
    # names no chat yet, REGENERATE a message whose chat is known only once the message is read).
    chat_field: str = ""
    # The request field holding the user id (or repeated user ids) the instruction names; ''
    # when it names none (USER_CREATE; USER_GET by username counts only when it gives the id).
    user_field: str = ""
    # Recorded for the users it names whose recording is on. Reading or clearing the records is
    # not: listing would grow the list, and deleting would leave a record behind.
    recorded: bool = True
    # Changes models or providers: the models this process keeps are read afresh after it,
    # whether or not it went through (a timed-out call may have).
    changes_models: bool = False
    user_change: UserChange = UserChange.NONE


# Keyed by the Instruction oneof field ("user_create"); the JSON type name is its upper case.
CATALOG: dict[str, Entry] = {
    "user_create": Entry(users.user_create),
    "user_update": Entry(users.user_update, user_field="user_id", user_change=UserChange.UPDATES),
    "user_delete": Entry(users.user_delete, user_field="user_id", user_change=UserChange.DELETES),
    "user_list": Entry(users.user_list),
    "user_get": Entry(users.user_get, user_field="user_id"),
    "user_instruction_recording_enable": Entry(users.recording_enable, user_field="user_id",
                                               user_change=UserChange.UPDATES),
    "user_instruction_recording_disable": Entry(users.recording_disable, user_field="user_id",
                                                user_change=UserChange.UPDATES),
    "user_instruction_records_delete": Entry(users.records_delete, user_field="user_id", recorded=False),
    "user_instruction_records_list": Entry(users.records_list, user_field="user_id", recorded=False),
    "chat_create": Entry(chats.chat_create, user_field="user_ids"),
    "chat_update": Entry(chats.chat_update, chat_field="chat_id"),
    "chat_delete": Entry(chats.chat_delete, chat_field="chat_id"),
    "chat_load": Entry(chats.chat_load, chat_field="chat_id"),
    "chat_list": Entry(chats.chat_list),
    "chat_list_by_user": Entry(chats.chat_list_by_user, user_field="user_id"),
    "llm_response_generate": Entry(generate.generate, chat_field="chat_id", user_field="user_id"),
    "llm_response_regenerate": Entry(generate.regenerate),
    "llm_provider_add": Entry(llms.provider_add),
    "llm_provider_update": Entry(llms.provider_update, changes_models=True),
    "llm_provider_delete": Entry(llms.provider_delete, changes_models=True),
    "llm_provider_list": Entry(llms.provider_list),
    "llm_add": Entry(llms.llm_add),
    "llm_update": Entry(llms.llm_update, changes_models=True),
    "llm_delete": Entry(llms.llm_delete, changes_models=True),
    "llm_list": Entry(llms.llm_list),
    "llm_list_by_provider": Entry(llms.llm_list_by_provider),
    "usage_list": Entry(llms.usage_list),
    "user_limits_set": Entry(llms.user_limits_set, user_field="user_id"),
    "user_limits_get": Entry(llms.user_limits_get, user_field="user_id", recorded=False),
}


def entry_of(instruction: orchestrator_pb2.Instruction) -> Entry | None:
    """The catalog row of the instruction's type; None when it sets none (or one unknown here)."""
    return CATALOG.get(instruction.WhichOneof("instruction") or "")


def chat_id_of(instruction: orchestrator_pb2.Instruction) -> str:
    """The chat the instruction acts on; '' when it names none."""
    entry = entry_of(instruction)
    if entry is None or not entry.chat_field:
        return ""
    return getattr(_request_of(instruction), entry.chat_field)


def user_ids_of(instruction: orchestrator_pb2.Instruction) -> list[str]:
    """The ids of the users the instruction names, each once, in order; [] when it names none."""
    entry = entry_of(instruction)
    if entry is None or not entry.user_field:
        return []
    value = getattr(_request_of(instruction), entry.user_field)
    ids = [value] if isinstance(value, str) else list(value)
    return list(dict.fromkeys(user_id for user_id in ids if user_id))


def _request_of(instruction: orchestrator_pb2.Instruction):
    return getattr(instruction, instruction.WhichOneof("instruction"))


def missing_from_catalog() -> set[str]:
    """Instruction types of the proto contract that have no row here (none, when the catalog is whole)."""
    oneof = orchestrator_pb2.Instruction.DESCRIPTOR.oneofs_by_name["instruction"]
    return {field.name for field in oneof.fields} - CATALOG.keys()
