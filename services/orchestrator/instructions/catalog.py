"""The instruction catalog: one row per instruction type, saying everything the orchestrator needs to know of it.

A row gives the handler, the request field naming the chat it acts on (so a chat's instructions
run in order), the field naming the users it concerns (for their instruction records), whether it
is recorded, whether it only reads (then its result is not kept in the ledger), what it changes
that this process keeps (models, users' recording flags), and which callers may run it (access:
the roles of instructions/access.py).
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


class Access(enum.Enum):
    """Which keys may run an instruction; admin keys (and callers on an unauthenticated suite) may run all."""

    # Admin keys only: changes to providers and models.
    ADMIN = enum.auto()
    # Admin and app keys: reading providers and models, creating users.
    APP = enum.auto()
    # Admin and app keys, and a user key when what the row names is its own: every user of
    # user_field is its user, and the chat of chat_field (if any) has its user as a member.
    OWN = enum.auto()
    # As OWN; a user key may also name its own username (USER_GET by username).
    OWN_OR_USERNAME = enum.auto()
    # As OWN, for the chat of the message the request names (REGENERATE): its user_id must be
    # the user key's user.
    OWN_MESSAGE = enum.auto()
    # Admin and app keys get the whole list; a user key gets its own things (the row's own_handler).
    OWN_LIST = enum.auto()


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
    # Only reads: running it again has no effect to protect, so its result is not kept in the
    # ledger and a repeated id reads again (what it reads may have changed meanwhile).
    reads_only: bool = False
    # Changes models or providers: the models this process keeps are read afresh after it,
    # whether or not it went through (a timed-out call may have).
    changes_models: bool = False
    user_change: UserChange = UserChange.NONE
    access: Access = Access.OWN
    # What a user key gets instead of the whole list (Access.OWN_LIST).
    own_handler: Handler | None = None


# Keyed by the Instruction oneof field ("user_create"); the JSON type name is its upper case.
CATALOG: dict[str, Entry] = {
    "user_create": Entry(users.user_create, access=Access.APP),
    "user_update": Entry(users.user_update, user_field="user_id", user_change=UserChange.UPDATES),
    "user_delete": Entry(users.user_delete, user_field="user_id", user_change=UserChange.DELETES),
    "user_list": Entry(users.user_list, access=Access.OWN_LIST, own_handler=users.own_user_list, reads_only=True),
    "user_get": Entry(users.user_get, user_field="user_id", access=Access.OWN_OR_USERNAME, reads_only=True),
    "user_instruction_recording_enable": Entry(users.recording_enable, user_field="user_id",
                                               user_change=UserChange.UPDATES),
    "user_instruction_recording_disable": Entry(users.recording_disable, user_field="user_id",
                                                user_change=UserChange.UPDATES),
    "user_instruction_records_delete": Entry(users.records_delete, user_field="user_id", recorded=False),
    "user_instruction_records_list": Entry(users.records_list, user_field="user_id", recorded=False,
                                           reads_only=True),
    "chat_create": Entry(chats.chat_create, user_field="user_ids"),
    "chat_update": Entry(chats.chat_update, chat_field="chat_id"),
    "chat_delete": Entry(chats.chat_delete, chat_field="chat_id"),
    "chat_load": Entry(chats.chat_load, chat_field="chat_id", reads_only=True),
    "chat_list": Entry(chats.chat_list, access=Access.OWN_LIST, own_handler=chats.own_chat_list, reads_only=True),
    "chat_list_by_user": Entry(chats.chat_list_by_user, user_field="user_id", reads_only=True),
    "llm_response_generate": Entry(generate.generate, chat_field="chat_id", user_field="user_id"),
    "llm_response_regenerate": Entry(generate.regenerate, access=Access.OWN_MESSAGE),
    "llm_provider_add": Entry(llms.provider_add, access=Access.ADMIN),
    "llm_provider_update": Entry(llms.provider_update, changes_models=True, access=Access.ADMIN),
    "llm_provider_delete": Entry(llms.provider_delete, changes_models=True, access=Access.ADMIN),
    "llm_provider_list": Entry(llms.provider_list, access=Access.APP, reads_only=True),
    "llm_add": Entry(llms.llm_add, access=Access.ADMIN),
    "llm_update": Entry(llms.llm_update, changes_models=True, access=Access.ADMIN),
    "llm_delete": Entry(llms.llm_delete, changes_models=True, access=Access.ADMIN),
    "llm_list": Entry(llms.llm_list, access=Access.APP, reads_only=True),
    "llm_list_by_provider": Entry(llms.llm_list_by_provider, access=Access.APP, reads_only=True),
    # Usage across users is for the operator and the app; limits are set by the operator, and a
    # user key may read its own.
    "usage_list": Entry(llms.usage_list, access=Access.APP, reads_only=True),
    "user_limits_set": Entry(llms.user_limits_set, user_field="user_id", access=Access.ADMIN),
    "user_limits_get": Entry(llms.user_limits_get, user_field="user_id", recorded=False, reads_only=True),
}


# Handlers that read first and call `run.before_effects()` before their first effect: the cycle
# looks their instruction up in the ledger alongside those reads instead of before them (the
# generations, whose time to first token the lookup would otherwise add to).
LOOKED_UP_ALONGSIDE = frozenset({"llm_response_generate", "llm_response_regenerate"})


def looked_up_alongside(instruction: orchestrator_pb2.Instruction) -> bool:
    return instruction.WhichOneof("instruction") in LOOKED_UP_ALONGSIDE


def entry_of(instruction: orchestrator_pb2.Instruction) -> Entry | None:
    """The catalog row of the instruction's type; None when it sets none (or one unknown here)."""
    return CATALOG.get(instruction.WhichOneof("instruction") or "")


def reads_only(instruction: orchestrator_pb2.Instruction) -> bool:
    """Whether the instruction only reads (an unknown type does not: its refusal is kept)."""
    entry = entry_of(instruction)
    return entry is not None and entry.reads_only


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
